import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stopDaemon, freePort, type Daemon } from "./daemon";
import { checkMountPoints, launchNode, LabNode, prepareNode, type NodeDescription } from "./node";
import { writeOciImage } from "./oci-image";
import { createCa, issueServerCert } from "./pki";
import { runOk } from "./proc";
import { pushOciLayout, serveCertificate, startRegistry } from "./registry";
import { CONTAINERD_FLAVORS, nodeBinaries, type ContainerdFlavor } from "./runtime";

export const REGISTRY_HOST = "registry.test";
const REPOSITORY = "lab/demo";
const TAG = "1";

export interface LabOptions {
  /** Number of SSH nodes (default 1, at most 200). */
  nodes?: number;
  /** Directory the lab owns and removes on stop; must not exist or be empty. Default: a new temp dir. */
  dir?: string;
  /**
   * Which containerd the nodes run: one flavour for all, or one per node (lab/runtime.ts). "2" is
   * containerd 2.x from scripts/node-binaries.sh with its own default config. Default "1.6" (Debian's).
   */
  containerd?: ContainerdFlavor | readonly ContainerdFlavor[];
}

export interface RegistryDescription {
  /** The name nodes use; it resolves to `address` only inside the nodes (their /etc/hosts). */
  host: typeof REGISTRY_HOST;
  address: string;
  port: number;
  caPem: string;
  caPath: string;
  /** A pullable image reference, e.g. registry.test:PORT/lab/demo:1. */
  image: string;
  imageDigest: string;
  /** The registry's supervisor, which restarts docker-registry on reload. */
  pid: number;
  /** The certificate the registry serves (PEM); replace it, then run `reloadCommand`. */
  certPath: string;
  /** Its private key (PEM, mode 0600). */
  keyPath: string;
  /** Executable (absolute path) that restarts the registry on the current files and returns once they are served; runs on the host or on a lab node. */
  reloadCommand: string;
}

export interface LabRegistry extends RegistryDescription {
  /** Writes the serving certificate and key atomically and reloads the registry onto them. */
  serve(certPem: string, keyPem: string): Promise<void>;
}

/** The content of DIR/lab.json. */
export interface LabDescription {
  version: 1;
  dir: string;
  registry: RegistryDescription;
  nodes: NodeDescription[];
}

export interface Lab {
  dir: string;
  registry: LabRegistry;
  nodes: LabNode[];
  describe(): LabDescription;
  stop(): Promise<void>;
}

const LAB_JSON = "lab.json";

/**
 * Starts a lab of real parts: a TLS registry holding one image, and `nodes` SSH nodes that each have
 * their own mount and PID namespaces, trust store and containerd. Writes DIR/lab.json. On failure,
 * everything started so far is stopped again.
 */
export async function startLab(opts: LabOptions = {}): Promise<Lab> {
  const count = opts.nodes ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 200) throw new Error(`lab: nodes must be 1..200, got ${count}`);
  const flavors = nodeFlavors(opts.containerd, count);
  checkMountPoints();
  const binaries = nodeBinaries();
  const dir = claimDir(opts.dir);
  const daemons: Array<{ d: Daemon; stop: () => Promise<void> }> = [];
  try {
    const sshDir = path.join(dir, "ssh");
    fs.mkdirSync(sshDir);
    const privateKeyPath = path.join(sshDir, "id_ed25519");
    const authorizedKeysPath = path.join(sshDir, "authorized_keys");
    const knownHostsPath = path.join(sshDir, "known_hosts");

    const pki = (async () => {
      const ca = await createCa(path.join(dir, "pki"), "registry-trust lab CA");
      const cert = await issueServerCert(ca, path.join(dir, "pki"), [REGISTRY_HOST, "localhost"], ["127.0.0.1"]);
      return { ca, cert };
    })();
    const clientKey = runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "registry-trust-lab", "-f", privateKeyPath]).then(() =>
      fs.copyFileSync(`${privateKeyPath}.pub`, authorizedKeysPath),
    );
    const specs = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const host = `127.0.0.${11 + i}`;
        return { name: `node-${i + 1}`, host, port: await freePort(host), dir: path.join(dir, "nodes", `node-${i + 1}`), containerd: flavors[i] };
      }),
    );
    const hostKeys = await Promise.all(
      specs.map((s) =>
        prepareNode({ ...s, privateKeyPath, authorizedKeysPath, knownHostsPath, hostsEntries: [`127.0.0.1 ${REGISTRY_HOST}`], binaries }),
      ),
    );
    fs.writeFileSync(knownHostsPath, specs.map((s, i) => `[${s.host}]:${s.port} ${hostKeys[i]}\n`).join(""));
    await clientKey;

    const nodes = specs.map((s, i) => {
      const d = launchNode(s.dir);
      const node = new LabNode(
        {
          ...s,
          privateKeyPath,
          knownHostsPath,
          hostKey: hostKeys[i],
          containerdSocket: path.join(s.dir, "run", "containerd", "containerd.sock"),
          pid: d.pid,
        },
        d,
      );
      daemons.push({ d, stop: () => node.stop() });
      return node;
    });

    const { ca, cert } = await pki;
    const registry = await startRegistry(path.join(dir, "registry"), cert, ca);
    daemons.push({ d: registry.daemon, stop: () => stopDaemon(registry.daemon, dir) });
    const layout = writeOciImage(path.join(dir, "image"), TAG);
    await Promise.all([
      pushOciLayout(layout.dir, TAG, registry, ca, path.join(dir, "registry"), REPOSITORY),
      ...nodes.map((n) => n.waitReady()),
    ]);

    const description: LabDescription = {
      version: 1,
      dir,
      registry: {
        host: REGISTRY_HOST,
        address: registry.address,
        port: registry.port,
        caPem: ca.pem,
        caPath: ca.certPath,
        image: `${REGISTRY_HOST}:${registry.port}/${REPOSITORY}:${TAG}`,
        imageDigest: layout.manifestDigest,
        pid: registry.daemon.pid,
        certPath: registry.certPath,
        keyPath: registry.keyPath,
        reloadCommand: registry.reloadCommand,
      },
      nodes: nodes.map(describeNode),
    };
    fs.writeFileSync(path.join(dir, LAB_JSON), JSON.stringify(description, null, 2) + "\n");
    return makeLab(description, nodes, () => stopAll(daemons.map((x) => x.stop), dir));
  } catch (e) {
    await stopAll(daemons.map((x) => x.stop), dir).catch(() => undefined);
    throw e;
  }
}

/** A lab started by another process (e.g. `npm run lab:start`), from its DIR/lab.json. */
export function attachLab(dir: string): Lab {
  const description = JSON.parse(fs.readFileSync(path.join(dir, LAB_JSON), "utf8")) as LabDescription;
  const nodes = description.nodes.map((n) => new LabNode(n));
  const registry: Daemon = { pid: description.registry.pid };
  return makeLab(description, nodes, () =>
    stopAll([...nodes.map((n) => () => n.stop()), () => stopDaemon(registry, description.dir)], description.dir),
  );
}

function makeLab(description: LabDescription, nodes: LabNode[], stop: () => Promise<void>): Lab {
  let stopping: Promise<void> | undefined;
  return {
    dir: description.dir,
    registry: { ...description.registry, serve: (certPem, keyPem) => serveCertificate(description.registry, certPem, keyPem) },
    nodes,
    describe: () => description,
    stop: () => (stopping ??= stop()),
  };
}

function describeNode(n: LabNode): NodeDescription {
  return {
    name: n.name,
    host: n.host,
    port: n.port,
    user: n.user,
    privateKeyPath: n.privateKeyPath,
    knownHostsPath: n.knownHostsPath,
    hostKey: n.hostKey,
    containerdSocket: n.containerdSocket,
    containerd: n.containerd,
    dir: n.dir,
    pid: n.pid,
  };
}

async function stopAll(stops: Array<() => Promise<void>>, dir: string): Promise<void> {
  const results = await Promise.allSettled(stops.map((s) => s()));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  // Keep the directory (logs, pids) when something refused to die, so it can be inspected and retried.
  if (failed.length > 0) throw new Error(`lab: stop failed: ${failed.map((f) => String(f.reason)).join("; ")}`);
  fs.rmSync(dir, { recursive: true, force: true });
}

function nodeFlavors(opt: LabOptions["containerd"], count: number): ContainerdFlavor[] {
  const list = opt === undefined ? Array<ContainerdFlavor>(count).fill("1.6") : typeof opt === "string" ? Array<ContainerdFlavor>(count).fill(opt) : [...opt];
  if (list.length !== count) throw new Error(`lab: containerd lists ${list.length} flavours for ${count} nodes; give one per node or a single one for all`);
  const bad = list.find((f) => !CONTAINERD_FLAVORS.includes(f));
  if (bad !== undefined) throw new Error(`lab: containerd "${String(bad)}" is not one of ${CONTAINERD_FLAVORS.map((f) => `"${f}"`).join(", ")}`);
  return list;
}

function claimDir(dir: string | undefined): string {
  if (dir === undefined) return fs.mkdtempSync(path.join(os.tmpdir(), "registry-trust-lab-"));
  const abs = path.resolve(dir);
  fs.mkdirSync(abs, { recursive: true });
  if (fs.readdirSync(abs).length > 0) {
    throw new Error(`lab: ${abs} is not empty${fs.existsSync(path.join(abs, LAB_JSON)) ? " (a lab is running there: stop it first)" : ""}`);
  }
  return abs;
}
