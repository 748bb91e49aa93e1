/*
 * The control loops a real node needs besides the apiserver: kube-controller-manager (the DaemonSet
 * controller creates the DaemonSet's pods, the node lifecycle controller taints a NotReady node) and
 * kube-scheduler (binds pods to nodes). Both are the real binaries of scripts/kubelet-binaries.sh, built
 * from the same Kubernetes modules as the apiserver of lab/apiserver.ts, and run with the apiserver's
 * cluster-admin kubeconfig (a lab shortcut: a kubeadm cluster gives each its own identity).
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { cacheDir, pinnedVersions, startApiServer, type ApiServer } from "./apiserver";
import { cleanEnv, waitUntil } from "./proc";

/** What the control plane needs from a running apiserver (lab/apiserver.ts ApiServer has it all). */
export interface ApiServerFiles {
  server: string;
  kubeconfigPath: string;
  /** Holds ca.crt/ca.key (cluster CA), sa.key (service-account signing key). */
  dir: string;
}

export interface NodeK8sBinaries {
  kubelet: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  dir: string;
  /** The Kubernetes version the cache directory is keyed by. */
  version: string;
}

const howToFix = "run `bash scripts/kubelet-binaries.sh` once (builds them from the Kubernetes Go modules into the cache; scripts/test-prereqs.sh runs it)";

/** The binaries scripts/kubelet-binaries.sh provides (it builds nothing itself). */
export function nodeK8sBinaries(): NodeK8sBinaries {
  const { k8sVersion } = pinnedVersions();
  const dir = path.join(cacheDir(), "k8s", k8sVersion, "node");
  const b: NodeK8sBinaries = {
    kubelet: process.env.KUBELET_BIN || path.join(dir, "kubelet"),
    kubeControllerManager: process.env.KUBE_CONTROLLER_MANAGER_BIN || path.join(dir, "kube-controller-manager"),
    kubeScheduler: process.env.KUBE_SCHEDULER_BIN || path.join(dir, "kube-scheduler"),
    dir,
    version: k8sVersion,
  };
  const missing = [b.kubelet, b.kubeControllerManager, b.kubeScheduler].filter((f) => {
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) throw new Error(`lab: no executable ${missing.join(", ")}: ${howToFix}`);
  return b;
}

export interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<void>;
}

/** Spawns a daemon with a clean environment (like a systemd unit), output appended to `log`. */
export function spawnLogged(name: string, file: string, args: readonly string[], log: string, detached = false): Proc {
  const fd = fs.openSync(log, "a");
  const child = spawn(file, args, { env: cleanEnv(), stdio: ["ignore", fd, fd], detached });
  fs.closeSync(fd);
  child.on("error", () => undefined);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  const proc = { name, child, log, exited };
  if (!detached) {
    live.add(proc);
    void exited.then(() => live.delete(proc));
  }
  return proc;
}

// Like lab/apiserver.ts: daemons of a process that dies without stopping them are killed on its way out.
const live = new Set<Proc>();
process.once("exit", () => {
  for (const p of live) p.child.kill("SIGKILL");
});

export function running(p: Proc): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

export function tailOf(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

export async function stopProc(p: Proc, graceMs = 10_000): Promise<void> {
  if (!running(p)) return;
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), graceMs);
  await p.exited;
  clearTimeout(timer);
}

export interface ControlPlane {
  controllerManager: Proc;
  scheduler: Proc;
  stop(): Promise<void>;
}

/**
 * Starts kube-controller-manager and kube-scheduler against `api` and returns once both hold a healthy
 * client (the scheduler's and the controller manager's first list of nodes went through: each logs it).
 * Logs go to `dir`.
 */
export async function startControlPlane(api: ApiServerFiles, dir: string, timeoutMs = 120_000): Promise<ControlPlane> {
  const bin = nodeK8sBinaries();
  fs.mkdirSync(dir, { recursive: true });
  const f = (name: string) => path.join(api.dir, name);
  const common = [
    `--kubeconfig=${api.kubeconfigPath}`,
    // Delegated authn/authz of their own /healthz and /metrics: the same admin identity.
    `--authentication-kubeconfig=${api.kubeconfigPath}`,
    `--authorization-kubeconfig=${api.kubeconfigPath}`,
    // One instance each: nothing to elect.
    "--leader-elect=false",
    // No serving port: several labs share this machine's loopback, and nothing here scrapes them.
    "--secure-port=0",
  ];
  const controllerManager = spawnLogged("kube-controller-manager", bin.kubeControllerManager, [
    ...common,
    // The service-account token and root-CA publisher controllers, as kubeadm sets them up.
    `--service-account-private-key-file=${f("sa.key")}`,
    `--root-ca-file=${f("ca.crt")}`,
    // Kubelet serving/client CSRs would be signed by the cluster CA, as in kubeadm.
    `--cluster-signing-cert-file=${f("ca.crt")}`,
    `--cluster-signing-key-file=${f("ca.key")}`,
    "--use-service-account-credentials=false",
    "--v=2",
  ], path.join(dir, "kube-controller-manager.log"));
  const scheduler = spawnLogged("kube-scheduler", bin.kubeScheduler, [...common, "--v=2"], path.join(dir, "kube-scheduler.log"));
  const procs = [controllerManager, scheduler];
  const stop = async () => {
    await Promise.all(procs.map((p) => stopProc(p)));
  };
  try {
    // Without a serving port the logs are the only signal: the controller manager names each controller it
    // starts, and the scheduler logs its node informer's first list.
    const ready: Array<[Proc, RegExp]> = [
      [controllerManager, /"Controller starting\.\.\." controller="daemonset-controller"/],
      [scheduler, /"Caches populated" type="\*v1\.Node"/],
    ];
    await waitUntil("kube-controller-manager and kube-scheduler to start", () => {
      for (const p of procs) if (!running(p)) throw new Error(`${p.name} exited (${p.child.exitCode ?? p.child.signalCode}):\n${tailOf(p.log)}`);
      return ready.every(([p, re]) => re.test(fs.readFileSync(p.log, "utf8")));
    }, timeoutMs, 200);
  } catch (e) {
    await stop();
    throw e;
  }
  return { controllerManager, scheduler, stop };
}

export interface KubeControlPlane {
  api: ApiServer;
  controlPlane: ControlPlane;
  stop(): Promise<void>;
}

/**
 * The real apiserver of lab/apiserver.ts (no Cluster API CRDs) plus kube-controller-manager and
 * kube-scheduler (logs in `dir`). Kubelets authenticate as system:node:<name> in group system:nodes; the
 * apiserver authorizes with RBAC only (lab/apiserver.ts fixes --authorization-mode, and a repeated flag
 * adds to the list rather than replacing it), so the group is bound to the built-in system:node
 * ClusterRole — what kubeadm did before the Node authorizer.
 */
export async function startKubeControlPlane(dir: string): Promise<KubeControlPlane> {
  nodeK8sBinaries();
  // kubeadm allows privileged pods; the apiserver's own default refuses them (the DaemonSet's init container is one).
  const api = await startApiServer({ installCapiCrds: false, apiServerArgs: ["--allow-privileged=true"] });
  try {
    const rbac = api.kubeConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.createClusterRoleBinding({ body: {
      metadata: { name: "registry-trust-lab:nodes" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:node" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "system:nodes" }],
    } });
    const controlPlane = await startControlPlane(api, dir);
    return { api, controlPlane, stop: async () => {
      await controlPlane.stop();
      await api.stop();
    } };
  } catch (e) {
    await api.stop();
    throw e;
  }
}
