/*
 * Starting and stopping lab/kubelet-daemon.ts from the lab CLI (`lab:start --kubelet`, `lab:stop`).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { signal, stopDaemon } from "./daemon";
import { cleanEnv, waitUntil } from "./proc";

export const KUBE_JSON = "kube.json";

/** What LABDIR/kube/kube.json holds. */
export interface KubeDescription {
  version: 1;
  server: string;
  /** cluster-admin kubeconfig (mode 0600). */
  kubeconfig: string;
  /** The daemon that keeps the control plane and kubelets running. */
  pid: number;
  nodes: Array<{ name: string; kubeletPid: number; log: string; cgroupRoot: string }>;
}

/** Variables the daemon keeps from the caller: where the Kubernetes binaries are. */
const PASSED_ENV = ["HOME", "REGISTRY_TRUST_CACHE", "KUBEBUILDER_ASSETS", "KUBE_APISERVER_BIN", "ETCD_BIN", "K8S_VERSION",
  "KUBELET_BIN", "KUBE_CONTROLLER_MANAGER_BIN", "KUBE_SCHEDULER_BIN", "GOPATH", "GOMODCACHE", "GOFLAGS", "GOPROXY"];

export function readKubeDescription(labDir: string): KubeDescription | undefined {
  const file = path.join(labDir, "kube", KUBE_JSON);
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as KubeDescription) : undefined;
}

/** Starts lab/kubelet-daemon.ts detached for the lab in `labDir`; returns once kube.json is written. */
export async function launchKubelets(labDir: string, timeoutMs = 300_000): Promise<KubeDescription> {
  const dir = path.join(labDir, "kube");
  fs.mkdirSync(dir, { recursive: true });
  const logPath = path.join(dir, "daemon.log");
  const log = fs.openSync(logPath, "a");
  // go (for the pause.c source in the module cache) lives outside the system PATH on some machines.
  const env = cleanEnv(Object.fromEntries(PASSED_ENV.flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : []))));
  env.PATH = `${env.PATH}:${path.dirname(process.execPath)}:/usr/local/go/bin`;
  const child = spawn(process.execPath, [require.resolve("tsx/cli"), path.join(__dirname, "kubelet-daemon.ts"), labDir], { env, detached: true, stdio: ["ignore", log, log] });
  fs.closeSync(log);
  let exited: number | string | undefined;
  child.once("exit", (code, sig) => (exited = code ?? sig ?? "?"));
  child.unref();
  try {
    await waitUntil("the lab's kubelets (apiserver, controller-manager, scheduler, one kubelet per node)", () => {
      if (exited !== undefined) throw new Error(`the kubelet daemon exited (${exited})`);
      return readKubeDescription(labDir) !== undefined;
    }, timeoutMs, 250);
  } catch (e) {
    if (exited === undefined && child.pid) signal(child.pid, "SIGTERM");
    const tail = fs.readFileSync(logPath, "utf8").trimEnd().split("\n").slice(-20).join("\n");
    throw new Error(`lab: ${(e as Error).message}; ${logPath}:\n${tail}`);
  }
  return readKubeDescription(labDir)!;
}

/** Stops what launchKubelets started (from any process) and waits until its daemon is gone. */
export async function stopKubelets(labDir: string): Promise<void> {
  const d = readKubeDescription(labDir);
  if (!d) return;
  await stopDaemon({ pid: d.pid }, "kubelet-daemon", 60_000);
  fs.rmSync(path.join(labDir, "kube", KUBE_JSON), { force: true });
}
