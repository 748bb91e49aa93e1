/*
 * A real kubelet on a lab node: the kubelet of scripts/kubelet-binaries.sh (same Kubernetes modules as the
 * lab's apiserver) runs INSIDE the node's mount and PID namespaces (nsenter into the node's PID 1), talks
 * CRI to the node's own containerd over /run/containerd/containerd.sock, and registers a Node named after
 * the lab node. Pods are host-network only: the node's one CNI network is the loopback plugin
 * (LAB_CNI_CONFIG), so the Node goes Ready while a pod-network pod fails without touching the host.
 *
 * Inside the node's namespaces, the kubelet and containerd see the same files: the node's trust store and
 * /etc/containerd/certs.d (what decides whether a pull verifies), /run, and the kubelet's volume mounts.
 * The kubelet's files live in the node's directory (--root-dir), its pod logs in the node's private
 * /var/log, its cgroups under a per-node cgroupRoot on this machine's hybrid cgroup v1 hierarchy
 * (failCgroupV1: false, cgroupDriver cgroupfs); see lab/node-files/kubelet-start.sh and docs/kubelet.md.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { parse as parseToml } from "smol-toml";
import YAML from "yaml";
import { pinnedVersions } from "./apiserver";
import { freePort } from "./daemon";
import { nodeK8sBinaries, running, spawnLogged, stopProc, tailOf, type ApiServerFiles, type Proc } from "./control-plane";
import { buildBusyboxImage, buildPauseImage, layoutArchive } from "./kubelet-images";
import type { LabNode } from "./node";
import { childPids, runOk, waitUntil } from "./proc";

/**
 * The busybox image every kubelet node has in its containerd before it joins, as if baked into the node
 * image: never pulled (imagePullPolicy IfNotPresent finds it), so a node that trusts no private registry
 * can still run it. The DaemonSet option's image in the lab.
 */
export const NODE_BUSYBOX_IMAGE = "lab.local/library/busybox:1.35.0";

const NODE_FILES = path.join(__dirname, "node-files");
const CGROUP_FS = "/sys/fs/cgroup";

export interface KubeletOptions {
  api: ApiServerFiles;
  node: LabNode;
  /** Extra node labels. */
  labels?: Record<string, string>;
  /** Overall start deadline (default 120 s: the first start on 2 busy cores is slow). */
  timeoutMs?: number;
}

export interface LabKubelet {
  /** The Node's name (the lab node's name). */
  nodeName: string;
  /** The kubelet's state directory on the host (its --root-dir and files). */
  dir: string;
  log: string;
  /** Host PID of the kubelet. */
  pid: number;
  /** Cgroup parent of every pod, in each v1 hierarchy (removed on stop). */
  cgroupRoot: string;
  stop(): Promise<void>;
}

/** The PID (on the host) of a lab node's PID 1, whose namespaces the kubelet enters. */
function nodeInitPid(node: LabNode): number {
  const init = childPids(node.pid)[0];
  if (init === undefined) throw new Error(`lab: ${node.name} is not running (no PID 1 under ${node.pid})`);
  return init;
}

/** The node runtime's sandbox image and snapshotter, from its CRI status (crictl info). */
async function runtimeInfo(node: LabNode): Promise<{ sandboxImage: string; snapshotter: string }> {
  const r = await node.exec("crictl --runtime-endpoint unix:///run/containerd/containerd.sock info");
  if (r.code !== 0) throw new Error(`lab: crictl info on ${node.name} exited ${r.code}: ${r.stderr.trim()}`);
  const cfg = (JSON.parse(r.stdout) as { config?: Record<string, any> }).config ?? {};
  const sandboxImage: unknown = cfg.sandboxImage ?? cfg.pinnedImages?.sandbox;
  const snapshotter: unknown = cfg.containerd?.snapshotter;
  if (typeof sandboxImage !== "string" || typeof snapshotter !== "string") {
    throw new Error(`lab: crictl info on ${node.name} names no sandbox image or snapshotter`);
  }
  return { sandboxImage, snapshotter };
}

/**
 * This machine withholds CAP_SYS_RESOURCE even from root, so no process may lower an oom_score_adj below
 * its own: runc fails every pod sandbox ("failed to update /proc/self/oom_score_adj: Permission denied",
 * surfacing as "can't get final child's PID from pipe: EOF") because containerd asks for -998 for the
 * sandbox and the kubelet -997 for critical pods. containerd's CRI option restrict_oom_score_adj (meant for
 * such environments: rootless, unprivileged containers) clamps every request to containerd's own score.
 * Set in the node's own /etc/containerd/config.toml — the file its containerd runs with — as node
 * provisioning would, with one restart of containerd before the kubelet joins.
 */
export function withRestrictOomScoreAdj(config: string): string {
  const off = /^([ \t]*)restrict_oom_score_adj[ \t]*=[ \t]*false[ \t]*$/m;
  let out: string;
  if (off.test(config)) out = config.replace(off, "$1restrict_oom_score_adj = true");
  else if (/^[ \t]*restrict_oom_score_adj[ \t]*=[ \t]*true[ \t]*$/m.test(config)) return config;
  else {
    const header = /^([ \t]*)\[plugins\."io\.containerd\.grpc\.v1\.cri"\][ \t]*$/m;
    if (!header.test(config)) throw new Error("lab: the node's containerd config has neither restrict_oom_score_adj nor a [plugins.\"io.containerd.grpc.v1.cri\"] table to put it in");
    out = config.replace(header, (h, indent: string) => `${h}\n${indent}  restrict_oom_score_adj = true`);
  }
  const doc = parseToml(out) as Record<string, any>;
  const value = doc.plugins?.["io.containerd.grpc.v1.cri"]?.restrict_oom_score_adj ?? doc.plugins?.["io.containerd.cri.v1.runtime"]?.restrict_oom_score_adj;
  if (value !== true) throw new Error("lab: setting restrict_oom_score_adj in the node's containerd config did not take");
  return out;
}

/**
 * The node's only CNI network: the loopback plugin (Debian's containernetworking-plugins). The node's
 * /etc/cni/net.d is a copy of the host's, which may hold podman's bridge config: containerd would wire
 * pod-network pods into a bridge, iptables rules and IPAM state on the host every node shares. With this
 * config containerd reports its network ready (the Node goes Ready, as a node with a CNI does) and a
 * pod-network pod fails at CNI ADD (loopback has no eth0 to bring up) without touching the host;
 * host-network pods never call CNI.
 */
export const LAB_CNI_CONFIG = { cniVersion: "0.4.0", name: "registry-trust-lab-host-network-only", plugins: [{ type: "loopback" }] };

async function prepareRuntime(node: LabNode): Promise<void> {
  const cni = path.join(node.dir, "fs", "etc", "cni", "net.d");
  const ours = JSON.stringify(LAB_CNI_CONFIG, null, 2) + "\n";
  const entries = fs.readdirSync(cni);
  const cniChanged = !(entries.length === 1 && entries[0] === "10-lab.conflist" && fs.readFileSync(path.join(cni, entries[0]), "utf8") === ours);
  if (cniChanged) {
    for (const f of entries) fs.rmSync(path.join(cni, f), { recursive: true, force: true });
    fs.writeFileSync(path.join(cni, "10-lab.conflist"), ours);
  }
  const file = path.join(node.dir, "fs", "etc", "containerd", "config.toml");
  const before = fs.readFileSync(file, "utf8");
  const after = withRestrictOomScoreAdj(before);
  if (after === before && !cniChanged) return;
  fs.writeFileSync(file, after);
  const r = await node.exec("systemctl restart containerd");
  if (r.code !== 0) throw new Error(`lab: restarting containerd on ${node.name} exited ${r.code}: ${r.stderr.trim()}`);
}

/** Puts the sandbox image and the busybox image into the node's containerd (namespace k8s.io), as a node image would have them. */
export async function seedNodeImages(node: LabNode, dir: string): Promise<void> {
  const { sandboxImage, snapshotter } = await runtimeInfo(node);
  const pauseSource = path.join(goModuleDir(`k8s.io/kubernetes@${pinnedVersions().k8sVersion}`), "build", "pause", "linux", "pause.c");
  const images = await Promise.all([
    buildPauseImage(path.join(dir, "pause"), sandboxImage, pauseSource),
    buildBusyboxImage(path.join(dir, "busybox"), NODE_BUSYBOX_IMAGE),
  ]);
  for (const image of images) {
    const archive = await layoutArchive(image, `${image.dir}.tar`);
    // The node's own ctr (Debian's 1.6 or the 2.x one, first on its PATH), unpacked for the CRI's snapshotter.
    const r = await node.exec(`ctr -n k8s.io images import --snapshotter '${snapshotter}' '${archive}'`, { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`lab: importing ${image.ref} into ${node.name}'s containerd exited ${r.code}: ${r.stderr.trim()}`);
  }
}

function goModuleDir(moduleAtVersion: string): string {
  // The module was downloaded by scripts/k8s-binaries.sh; -json prints its directory in the module cache.
  const out = execFileSync("go", ["mod", "download", "-json", moduleAtVersion], { encoding: "utf8" });
  const dir = (JSON.parse(out) as { Dir?: string }).Dir;
  if (!dir) throw new Error(`lab: go mod download ${moduleAtVersion} gave no directory`);
  return dir;
}

async function issueNodeCertificate(api: ApiServerFiles, nodeName: string, pki: string): Promise<void> {
  fs.mkdirSync(pki, { recursive: true, mode: 0o700 });
  // The identity the Node authorizer recognises: system:node:<name> in group system:nodes.
  await runOk("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-CA", path.join(api.dir, "ca.crt"), "-CAkey", path.join(api.dir, "ca.key"),
    "-keyout", path.join(pki, "kubelet-client.key"), "-out", path.join(pki, "kubelet-client.crt"),
    "-subj", `/O=system:nodes/CN=system:node:${nodeName}`,
    "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=clientAuth",
  ]);
  fs.copyFileSync(path.join(api.dir, "ca.crt"), path.join(pki, "ca.crt"));
}

/** Creates the per-node cgroupRoot in every cgroup hierarchy (the kubelet requires it to exist). */
function makeCgroupRoot(root: string): void {
  for (const h of cgroupHierarchies()) fs.mkdirSync(path.join(CGROUP_FS, h, root), { recursive: true });
}

function cgroupHierarchies(): string[] {
  // Mounted cgroup v1 hierarchies and the hybrid layout's cgroup2 ("unified"), where the kubelet's
  // libcontainer mirrors the pod cgroups too.
  return fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")
    .filter((l) => / - cgroup2? /.test(l))
    .map((l) => l.split(" ")[4])
    .filter((m) => m.startsWith(`${CGROUP_FS}/`))
    .map((m) => m.slice(CGROUP_FS.length + 1))
    .filter((h, i, a) => a.indexOf(h) === i);
}

/** Removes a cgroup tree, deepest first; a cgroup still holding a process stays (rmdir fails: EBUSY). */
function removeCgroupTree(root: string): string[] {
  const left: string[] = [];
  for (const h of cgroupHierarchies()) {
    const top = path.join(CGROUP_FS, h, root);
    if (!fs.existsSync(top)) continue;
    const dirs: string[] = [];
    const walk = (d: string) => {
      dirs.push(d);
      for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
    };
    walk(top);
    for (const d of dirs.reverse()) {
      try {
        fs.rmdirSync(d);
      } catch {
        left.push(d);
      }
    }
  }
  return left;
}

/**
 * Starts a kubelet on `node` against `api` and returns once its Node is registered. The node first gets
 * the pause and busybox images (seedNodeImages).
 */
export async function startKubelet(opts: KubeletOptions): Promise<LabKubelet> {
  const { api, node } = opts;
  const bin = nodeK8sBinaries();
  const dir = path.join(node.dir, "kubelet");
  fs.mkdirSync(dir, { recursive: true });
  const pki = path.join(dir, "pki");
  const log = path.join(node.dir, "logs", "kubelet.log");
  // Unique per lab node: two labs on this machine must never share pod cgroups.
  const cgroupRoot = `/registry-trust-lab-${createHash("sha256").update(node.dir).digest("hex").slice(0, 10)}`;

  await prepareRuntime(node);
  const [port, healthzPort] = await Promise.all([freePort(node.host), freePort("127.0.0.1"), seedNodeImages(node, path.join(dir, "images")), issueNodeCertificate(api, node.name, pki)]);
  const kubeconfig = path.join(dir, "kubelet.conf");
  fs.writeFileSync(kubeconfig, YAML.stringify({
    apiVersion: "v1", kind: "Config",
    clusters: [{ name: "lab", cluster: { server: api.server, "certificate-authority": path.join(pki, "ca.crt") } }],
    users: [{ name: node.name, user: { "client-certificate": path.join(pki, "kubelet-client.crt"), "client-key": path.join(pki, "kubelet-client.key") } }],
    contexts: [{ name: "lab", context: { cluster: "lab", user: node.name } }],
    "current-context": "lab",
  }), { mode: 0o600 });
  const config = path.join(dir, "config.yaml");
  fs.writeFileSync(config, YAML.stringify(kubeletConfiguration({ address: node.host, port, healthzPort, cgroupRoot, clientCaFile: path.join(pki, "ca.crt") })));
  makeCgroupRoot(cgroupRoot);

  const args = [
    "--target", String(nodeInitPid(node)), "--mount", "--pid", "--",
    "bash", path.join(NODE_FILES, "kubelet-start.sh"), dir,
    bin.kubelet, `--config=${config}`, `--kubeconfig=${kubeconfig}`, `--root-dir=${path.join(dir, "root")}`,
    `--hostname-override=${node.name}`,
    ...(opts.labels ? [`--node-labels=${Object.entries(opts.labels).map(([k, v]) => `${k}=${v}`).join(",")}`] : []),
    "--v=2",
  ];
  // nsenter forks the kubelet-start.sh → kubelet process into the node's PID namespace and waits for it.
  const proc: Proc = spawnLogged("kubelet", "nsenter", args, log, true);
  const kubeletPid = (): number | undefined => (proc.child.pid ? childPids(proc.child.pid)[0] : undefined);
  const stop = () => stopKubelet(node, proc, kubeletPid(), cgroupRoot);
  try {
    await waitUntil(`the kubelet on ${node.name} to register its Node and report it Ready`, async () => {
      if (!running(proc)) throw new Error(`kubelet on ${node.name} exited (${proc.child.exitCode ?? proc.child.signalCode}):\n${tailOf(log)}`);
      return (await healthz(healthzPort)) && (await nodeReady(api, node.name));
    }, opts.timeoutMs ?? 120_000, 250);
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
  return { nodeName: node.name, dir, log, pid: kubeletPid() ?? proc.child.pid!, cgroupRoot, stop };
}

/** Whether the Node exists and its Ready condition is True (the kubelet's own report). */
async function nodeReady(api: ApiServerFiles, name: string): Promise<boolean> {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(api.kubeconfigPath);
  try {
    const n = await kc.makeApiClient(k8s.CoreV1Api).readNode({ name });
    return n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
  } catch {
    return false;
  }
}

async function healthz(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
  } catch {
    return false;
  }
}

async function stopKubelet(node: LabNode, proc: Proc, kubeletPid: number | undefined, cgroupRoot: string): Promise<void> {
  // nsenter does not pass signals on: the kubelet itself is signalled, and nsenter exits with it.
  if (kubeletPid !== undefined && running(proc)) {
    try {
      process.kill(kubeletPid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  await stopProc(proc);
  // A stopped kubelet leaves its pods running, as on any node: remove them, then their cgroups.
  if (childPids(node.pid).length > 0) await node.exec("crictl --runtime-endpoint unix:///run/containerd/containerd.sock rmp -fa", { timeoutMs: 60_000 });
  const left = removeCgroupTree(cgroupRoot);
  if (left.length > 0) throw new Error(`lab: cgroups still in use after the kubelet on ${node.name} stopped: ${left.slice(0, 5).join(", ")}`);
}

interface ConfigInput {
  address: string;
  port: number;
  healthzPort: number;
  cgroupRoot: string;
  clientCaFile: string;
}

/** The KubeletConfiguration (kubelet.config.k8s.io/v1beta1) a lab node runs with; every departure from the defaults says why. */
export function kubeletConfiguration(c: ConfigInput): Record<string, unknown> {
  return {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    // This machine has a hybrid cgroup v1 hierarchy; since v1.35 the kubelet refuses v1 unless told otherwise.
    failCgroupV1: false,
    // No systemd in a lab node.
    cgroupDriver: "cgroupfs",
    cgroupRoot: c.cgroupRoot,
    containerRuntimeEndpoint: "unix:///run/containerd/containerd.sock",
    // The machine may have swap on; the lab does not manage it.
    failSwapOn: false,
    // Nodes are loopback aliases on a machine other labs share: the node's own address, a free port.
    address: c.address,
    port: c.port,
    healthzBindAddress: "127.0.0.1",
    healthzPort: c.healthzPort,
    readOnlyPort: 0,
    // Only clients with a certificate of the cluster CA (the apiserver's admin); nothing else dials it.
    authentication: { anonymous: { enabled: false }, webhook: { enabled: false }, x509: { clientCAFile: c.clientCaFile } },
    authorization: { mode: "AlwaysAllow" },
    // The machine's disk and memory are shared and may be fuller than the defaults (nodefs.available<10%,
    // imagefs.available<15%) allow: eviction and image GC would remove the very pods and images under test.
    evictionHard: { "memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%" },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    // Host-network pods only, so there is no cluster DNS to point them at.
    resolvConf: "/etc/resolv.conf",
    // Faster node status than the 10 s default, so tests see conditions change sooner.
    nodeStatusUpdateFrequency: "2s",
  };
}
