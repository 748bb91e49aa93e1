import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseToml } from "smol-toml";
import { runOk } from "./proc";

/**
 * The container runtime a lab node runs: Debian's containerd 1.6 (/usr/bin/containerd) with a config the
 * lab writes, or containerd 2.x built from Go modules by scripts/node-binaries.sh with the config its own
 * `containerd config default` writes, changed only where a node must not share the host's paths.
 */
export type ContainerdFlavor = "1.6" | "2";
export const CONTAINERD_FLAVORS: readonly ContainerdFlavor[] = ["1.6", "2"];

const SCRIPT = path.join(path.dirname(__dirname), "scripts", "node-binaries.sh");

/** Binaries scripts/node-binaries.sh builds: the real crictl (every node) and containerd 2.x with its ctr. */
export interface NodeBinaries {
  readonly dir: string;
  readonly crictl: string;
  readonly containerd: string;
  readonly ctr: string;
}

/** Finds the built node binaries (it builds nothing: that is scripts/node-binaries.sh's job, run by test-prereqs). */
export function nodeBinaries(): NodeBinaries {
  const dir = execFileSync("bash", [SCRIPT, "--print-bin"], { encoding: "utf8" }).trim();
  const b = { dir, crictl: path.join(dir, "crictl"), containerd: path.join(dir, "containerd"), ctr: path.join(dir, "ctr") };
  const missing = [b.crictl, b.containerd, b.ctr].filter((p) => !isExecutable(p));
  if (missing.length > 0) {
    throw new Error(`lab: missing ${missing.join(", ")}: build them with scripts/node-binaries.sh (scripts/test-prereqs.sh runs it)`);
  }
  return b;
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The /etc/containerd/config.toml a node of this flavour runs with. */
export async function containerdConfig(flavor: ContainerdFlavor, nodeDir: string, bin: NodeBinaries): Promise<string> {
  return flavor === "2" ? containerd2Config(nodeDir, (await runOk(bin.containerd, ["config", "default"])).stdout) : containerd16Config(nodeDir);
}

/** Debian's containerd 1.6, configured by the lab: native snapshotter, config_path set. */
function containerd16Config(nodeDir: string): string {
  const root = path.join(nodeDir, "containerd");
  return `version = 2
root = "${root}/root"
state = "/run/containerd"
# Snapshotters that probe kernel features or block devices only slow the start down here.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.overlayfs"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "${root}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "native"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
`;
}

/**
 * Edits of containerd 2.x's own default config, each a single line replaced in place (everything else is
 * byte for byte what the binary wrote). A node shares the host's filesystem apart from the lab's private
 * mounts, so paths that would land on the host move into the node's directory; /run is already private
 * per node, so state and the socket stay as written.
 */
export function containerd2Edits(nodeDir: string): ReadonlyArray<{ readonly key: readonly string[]; readonly from: string; readonly to: string; readonly why: string }> {
  const root = path.join(nodeDir, "containerd");
  return [
    { key: ["root"], from: "/var/lib/containerd", to: `${root}/root`, why: "the host's /var/lib/containerd is shared by every node" },
    // plugins/services/opt/service.go creates <path>/bin and <path>/lib at start.
    { key: ["plugins", "io.containerd.internal.v1.opt", "path"], from: "/opt/containerd", to: `${root}/opt`, why: "containerd creates /opt/containerd/{bin,lib} on the host" },
  ];
}

/** Applies containerd2Edits to `defaults` and proves with a TOML parser that only those keys changed. */
export function containerd2Config(nodeDir: string, defaults: string): string {
  let out = defaults;
  for (const e of containerd2Edits(nodeDir)) {
    const name = e.key[e.key.length - 1];
    const line = new RegExp(`^([ \\t]*${name}[ \\t]*=[ \\t]*)'${e.from.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}'[ \\t]*$`, "m");
    const at = out.match(new RegExp(line.source, "gm")) ?? [];
    if (at.length !== 1) throw new Error(`lab: containerd config default: expected one line ${name} = '${e.from}', found ${at.length}`);
    out = out.replace(line, `$1'${e.to}'`);
  }
  const before = parseToml(defaults);
  const after = parseToml(out);
  for (const e of containerd2Edits(nodeDir)) {
    if (valueAt(after, e.key) !== e.to) throw new Error(`lab: editing ${e.key.join(".")} in containerd's default config did not take`);
    setAt(before, e.key, e.to);
  }
  if (JSON.stringify(before) !== JSON.stringify(after)) throw new Error("lab: editing containerd's default config changed more than the intended keys");
  return out;
}

function valueAt(doc: Record<string, unknown>, key: readonly string[]): unknown {
  return key.reduce<unknown>((o, k) => (o && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined), doc);
}

function setAt(doc: Record<string, unknown>, key: readonly string[], value: unknown): void {
  const parent = valueAt(doc, key.slice(0, -1)) as Record<string, unknown>;
  parent[key[key.length - 1]] = value;
}
