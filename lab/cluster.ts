/*
 * The lab's Cluster API management cluster: the real etcd + kube-apiserver and the real Cluster API
 * v1.14 managers (lab/capi.ts: core, KubeadmControlPlane, kubeadm bootstrap, CAPD's in-memory backend),
 * with one workload cluster: a Cluster, a KubeadmControlPlane of 3 machines and a MachineDeployment of 2,
 * on fake in-memory machines (no cloud-init runs: that nodes trust the registry is proven by the lab's SSH
 * nodes; this cluster proves the Cluster API object side — rollouts, KubeadmConfigs, bootstrap data).
 * Plus the garbage collector's completion of foreground deletes (lab/cluster-gc.ts), as no
 * kube-controller-manager runs.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { MD_GROUP, MD_PLURAL, TEMPLATE_GROUP, TEMPLATE_PLURAL } from "../core/workers/api";
import { startApiServer, type ApiServer } from "./apiserver";
import { startCapiManagers, type CapiManagers } from "./capi";
import { createManagedCluster, GROUP as KCP_GROUP, listMachines, managedClusterNames, NAMESPACE, PLURAL as KCP_PLURAL, waitForClusterRolledOut } from "./capi-objects";
import { SimGarbageCollector } from "./cluster-gc";
import { signal, stopDaemon } from "./daemon";
import { cleanEnv, waitUntil } from "./proc";

const VERSION = "v1beta2";

/** What DIR/cluster/cluster.json holds: where the cluster is and which objects the lab stack targets. */
export interface ClusterDescription {
  version: 2;
  /** Kubeconfig of the cluster-admin user (a copy kept in the lab dir, mode 0600). */
  kubeconfig: string;
  server: string;
  /** Cluster API version the objects were created in (the CRDs' storage version). */
  apiVersion: typeof VERSION;
  /** The controllers that reconcile the objects, e.g. cluster-api-v1.14.2. */
  controllers: string;
  namespace: string;
  cluster: string;
  controlPlane: string;
  machineDeployment: string;
  /** The KubeadmConfigTemplate the MachineDeployment names before registry-trust touches it. */
  bootstrapTemplate: string;
  /** The process that keeps the apiserver and the Cluster API managers running (lab/cluster-daemon.ts). */
  pid: number;
}

export interface LabCluster {
  description: ClusterDescription;
  api: ApiServer;
  capi: CapiManagers;
  stop(): Promise<void>;
}

/**
 * Starts the management cluster in this process and writes `dir`/cluster.json once the KubeadmControlPlane
 * and the MachineDeployment report every machine up to date and ready.
 */
export async function startCluster(dir: string, timeoutMs = 600_000): Promise<LabCluster> {
  fs.mkdirSync(dir, { recursive: true });
  const api = await startApiServer({ installCapiCrds: false });
  const stops: Array<() => Promise<void>> = [() => api.stop()];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const capi = await startCapiManagers(api);
    stops.push(() => capi.stop());
    const gc = new SimGarbageCollector(api.kubeConfig);
    stops.push(() => gc.stop());
    const names = managedClusterNames("lab");
    await createManagedCluster(api, names);
    await waitForClusterRolledOut(api, names, timeoutMs);

    const kubeconfig = path.join(dir, "kubeconfig");
    fs.copyFileSync(api.kubeconfigPath, kubeconfig);
    fs.chmodSync(kubeconfig, 0o600);
    const description: ClusterDescription = {
      version: 2, kubeconfig, server: api.server, apiVersion: VERSION, controllers: `cluster-api-${capi.version}`,
      namespace: NAMESPACE, ...names, pid: process.pid,
    };
    fs.writeFileSync(path.join(dir, "cluster.json"), JSON.stringify(description, null, 2) + "\n");
    return { description, api, capi, stop };
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
    /** The Machines the real controllers created for the cluster (control plane and workers). */
    machines: () => listMachines({ kubeConfig: kc }, description.cluster),
    /** A Machine's bootstrap data (the cloud-config the kubeadm bootstrap provider rendered), or undefined before it exists. */
    bootstrapData: async (secretName: string | undefined) => {
      if (!secretName) return undefined;
      const secret = await kc.makeApiClient(k8s.CoreV1Api).readNamespacedSecret({ namespace, name: secretName });
      return secret.data?.value ? Buffer.from(secret.data.value, "base64").toString() : undefined;
    },
  };
}

/** Variables the daemon keeps from the caller: where the k8s binaries, the Cluster API managers and their module source are. */
const PASSED_ENV = ["HOME", "GOPATH", "GOMODCACHE", "REGISTRY_TRUST_CACHE", "KUBEBUILDER_ASSETS", "KUBE_APISERVER_BIN", "ETCD_BIN", "K8S_VERSION", "CAPI_VERSION"];

/**
 * Starts lab/cluster-daemon.ts detached (own session, output in `dir`/daemon.log) and returns once it
 * wrote cluster.json; if it exits first, throws with the end of its log.
 */
export async function launchCluster(dir: string, timeoutMs = 660_000): Promise<ClusterDescription> {
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
    await waitUntil("the lab cluster (kube-apiserver, Cluster API managers, 3 control-plane and 2 worker machines rolled out)", () => {
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
