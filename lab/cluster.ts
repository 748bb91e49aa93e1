/*
 * The lab's Cluster API management cluster: the real etcd + kube-apiserver with the real Cluster API CRDs
 * (test/k8s/apiserver.ts, binaries from `npm run k8s:binaries`), one KubeadmControlPlane, one
 * MachineDeployment with its KubeadmConfigTemplate, and simulated CAPI controllers that report rollouts
 * and keep writing those objects like busy controllers do (so resourceVersion preconditions meet real
 * 409s), plus the garbage collector's completion of foreground deletes (lab/cluster-gc.ts). No kubelet, no
 * controller-manager and no machines: "rolled out" is what the simulated controllers report.
 *
 * The apiserver helpers and the simulated controllers are the ones the k8s tests use; they are plain
 * TypeScript that runs under tsx as well as under jest, so the lab imports them rather than copying them.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { MD_GROUP, MD_PLURAL, TEMPLATE_GROUP, TEMPLATE_PLURAL } from "../core/workers/api";
import { startApiServer, type ApiServer } from "./apiserver";
import { createKcp, GROUP as KCP_GROUP, NAMESPACE, PLURAL as KCP_PLURAL, createMachineDeployment, createTemplate, templateRef } from "./capi-objects";
import { SimCapiController } from "./sim-capi-controller";
import { SimMachineDeploymentController } from "./sim-md-controller";
import { SimGarbageCollector } from "./cluster-gc";
import { signal, stopDaemon } from "./daemon";
import { cleanEnv, waitUntil } from "./proc";

const VERSION = "v1beta2";

/** What DIR/cluster/cluster.json holds: where the cluster is and which objects the lab stack targets. */
export interface ClusterDescription {
  version: 1;
  /** Kubeconfig of the cluster-admin user (a copy kept in the lab dir, mode 0600). */
  kubeconfig: string;
  server: string;
  /** Cluster API version the objects were created in (the CRDs' storage version). */
  apiVersion: typeof VERSION;
  namespace: string;
  controlPlane: string;
  machineDeployment: string;
  /** The KubeadmConfigTemplate the MachineDeployment names before registry-trust touches it. */
  bootstrapTemplate: string;
  /** The process that keeps the apiserver and the simulated controllers running (lab/cluster-daemon.ts). */
  pid: number;
}

const CLUSTER_NAMES = {
  // The namespace the k8s test helpers create their objects in.
  namespace: NAMESPACE,
  controlPlane: "lab-control-plane",
  machineDeployment: "lab-md-0",
  bootstrapTemplate: "lab-md-0-bootstrap",
} as const;

export interface LabCluster {
  description: ClusterDescription;
  api: ApiServer;
  stop(): Promise<void>;
}

/**
 * Starts the cluster in this process and writes `dir`/cluster.json once every object exists and both
 * simulated controllers run. Controller pace: writes every 50–250 ms, slower than the k8s tests' 5–50 ms,
 * because the lab runs for as long as someone uses it on a shared machine; still far inside the window
 * between a client's read and its write.
 */
export async function startCluster(dir: string): Promise<LabCluster> {
  fs.mkdirSync(dir, { recursive: true });
  const api = await startApiServer();
  const stops: Array<() => Promise<void>> = [() => api.stop()];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const { namespace, controlPlane, machineDeployment, bootstrapTemplate } = CLUSTER_NAMES;
    await createKcp(api, VERSION, controlPlane);
    await createTemplate(api, VERSION, bootstrapTemplate);
    await createMachineDeployment(api, VERSION, machineDeployment, templateRef(VERSION, bootstrapTemplate));

    const kcpSim = new SimCapiController({
      kubeConfig: api.kubeConfig, namespace, name: controlPlane, version: VERSION,
      observeDelayMs: 100, rolloutDelayMs: 1500, heartbeatMinMs: 50, heartbeatMaxMs: 250,
    });
    kcpSim.start();
    stops.push(() => kcpSim.stop());
    const mdSim = new SimMachineDeploymentController(api, VERSION, machineDeployment, 1500, [50, 250]);
    stops.push(() => mdSim.stop());
    const gc = new SimGarbageCollector(api.kubeConfig);
    stops.push(() => gc.stop());

    const kubeconfig = path.join(dir, "kubeconfig");
    fs.copyFileSync(api.kubeconfigPath, kubeconfig);
    fs.chmodSync(kubeconfig, 0o600);
    const description: ClusterDescription = {
      version: 1, kubeconfig, server: api.server, apiVersion: VERSION,
      namespace, controlPlane, machineDeployment, bootstrapTemplate, pid: process.pid,
    };
    fs.writeFileSync(path.join(dir, "cluster.json"), JSON.stringify(description, null, 2) + "\n");
    return { description, api, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export function readClusterDescription(dir: string): ClusterDescription | undefined {
  const file = path.join(dir, "cluster.json");
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as ClusterDescription) : undefined;
}

/** A client for the lab cluster's objects, for checks from the host (demo summary, e2e). */
export function clusterObjects(description: ClusterDescription) {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(description.kubeconfig);
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const { apiVersion: version, namespace } = description;
  type Obj = { metadata: Record<string, any>; spec: Record<string, any>; status?: Record<string, any> };
  return {
    controlPlane: async () => (await custom.getNamespacedCustomObject({ group: KCP_GROUP, version, namespace, plural: KCP_PLURAL, name: description.controlPlane })) as Obj,
    machineDeployment: async () => (await custom.getNamespacedCustomObject({ group: MD_GROUP, version, namespace, plural: MD_PLURAL, name: description.machineDeployment })) as Obj,
    template: async (name: string) => (await custom.getNamespacedCustomObject({ group: TEMPLATE_GROUP, version, namespace, plural: TEMPLATE_PLURAL, name })) as Obj,
    templates: async () => ((await custom.listNamespacedCustomObject({ group: TEMPLATE_GROUP, version, namespace, plural: TEMPLATE_PLURAL })) as { items: Obj[] }).items,
  };
}

/** Variables the daemon keeps from the caller: where the k8s binaries are (test/k8s/apiserver.ts findAssets). */
const PASSED_ENV = ["HOME", "REGISTRY_TRUST_CACHE", "KUBEBUILDER_ASSETS", "KUBE_APISERVER_BIN", "ETCD_BIN", "K8S_VERSION", "CAPI_VERSION"];

/**
 * Starts lab/cluster-daemon.ts detached (own session, output in `dir`/daemon.log) and returns once it
 * wrote cluster.json; if it exits first, throws with the end of its log.
 */
export async function launchCluster(dir: string, timeoutMs = 180_000): Promise<ClusterDescription> {
  fs.mkdirSync(dir, { recursive: true });
  const logPath = path.join(dir, "daemon.log");
  const log = fs.openSync(logPath, "a");
  const env = cleanEnv(Object.fromEntries(PASSED_ENV.flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : []))));
  const child = spawn(process.execPath, [require.resolve("tsx/cli"), path.join(__dirname, "cluster-daemon.ts"), dir], {
    env, detached: true, stdio: ["ignore", log, log],
  });
  fs.closeSync(log);
  let exited: number | string | undefined;
  child.once("exit", (code, sig) => (exited = code ?? sig ?? "?"));
  child.unref();
  try {
    await waitUntil("the lab cluster (kube-apiserver, CAPI objects, simulated controllers)", () => {
      if (exited !== undefined) throw new Error(`the cluster daemon exited (${exited})`);
      return readClusterDescription(dir) !== undefined;
    }, timeoutMs, 200);
  } catch (e) {
    if (exited === undefined && child.pid) signal(child.pid, "SIGTERM");
    const tail = fs.readFileSync(logPath, "utf8").trimEnd().split("\n").slice(-20).join("\n");
    throw new Error(`lab: ${(e as Error).message}; ${logPath}:\n${tail}`);
  }
  return readClusterDescription(dir)!;
}

/** Stops a cluster started by launchCluster (from any process) and waits until its daemon is gone. */
export async function stopCluster(dir: string): Promise<void> {
  const description = readClusterDescription(dir);
  if (!description) return;
  await stopDaemon({ pid: description.pid }, "cluster-daemon", 30_000);
  fs.rmSync(path.join(dir, "cluster.json"), { force: true });
}
