// Cluster API objects on the lab's real apiserver: a KubeadmControlPlane, KubeadmConfigTemplates and
// MachineDeployments as a platform team would have them (other writers' files included), and the clients
// to them. Used by the lab cluster, the KCP benchmark and the Kubernetes tests.
import * as k8s from "@kubernetes/client-node";
import { clientNodeKcpApi, KcpApi, KcpObject, KcpVersion } from "../core/kcp/api";
import { rolloutState } from "../core/kcp/rollout";
import { machineDeploymentRolloutState } from "../core/workers/rollout";
import { FileEntry } from "../core/kcp/plan";
import { CapiVersion, clientNodeWorkerApi, KubeObject, MD_GROUP, MD_PLURAL, TEMPLATE_GROUP, TEMPLATE_KIND, TEMPLATE_PLURAL, WorkerApi } from "../core/workers/api";
import { ApiServer } from "./apiserver";
import { SimCapiController, SimCapiControllerOptions } from "./sim-capi-controller";

export const NAMESPACE = "default";
export const GROUP = "controlplane.cluster.x-k8s.io";
export const PLURAL = "kubeadmcontrolplanes";

/** Files other writers put into the KCP; the sequencer must keep them byte for byte. */
export const OTHERS_FILES: FileEntry[] = [
  { path: "/etc/kubernetes/admission.yaml", owner: "root:root", permissions: "0600", content: "apiVersion: v1\nkind: Config\n# keep   spacing\t\n" },
  { path: "/etc/platform/motd", encoding: "base64", content: "aGVsbG8K", append: true },
  { path: "/etc/platform/token", contentFrom: { secret: { name: "platform-token", key: "token" } }, permissions: "0400" },
];

export function kcpBody(version: KcpVersion, name: string, files: FileEntry[] = OTHERS_FILES, extra: Record<string, unknown> = {}): KcpObject {
  const machineTemplate =
    version === "v1beta2"
      ? { spec: { infrastructureRef: { apiGroup: "infrastructure.cluster.x-k8s.io", kind: "DockerMachineTemplate", name: "cp" } } }
      : { infrastructureRef: { apiVersion: "infrastructure.cluster.x-k8s.io/v1beta1", kind: "DockerMachineTemplate", name: "cp" } };
  return {
    apiVersion: `${GROUP}/${version}`,
    kind: "KubeadmControlPlane",
    metadata: { name, namespace: NAMESPACE },
    spec: { replicas: 3, version: "v1.37.2", machineTemplate, kubeadmConfigSpec: { files, preKubeadmCommands: ["echo platform-first"], ...extra } },
  };
}

export async function createKcp(env: ApiServer, version: KcpVersion, name: string, files: FileEntry[] = OTHERS_FILES): Promise<KcpObject> {
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  return (await custom.createNamespacedCustomObject({ group: GROUP, version, namespace: NAMESPACE, plural: PLURAL, body: kcpBody(version, name, files) })) as KcpObject;
}

export function realApi(env: ApiServer): KcpApi {
  return clientNodeKcpApi(k8s, env.kubeConfig);
}

export function startSim(env: ApiServer, name: string, version: KcpVersion, opts: Partial<SimCapiControllerOptions> = {}): SimCapiController {
  const sim = new SimCapiController({ kubeConfig: env.kubeConfig, namespace: NAMESPACE, name, version, observeDelayMs: 30, rolloutDelayMs: 250, ...opts });
  sim.start();
  return sim;
}

export function workerApi(env: ApiServer): WorkerApi {
  return clientNodeWorkerApi(k8s, env.kubeConfig);
}

export async function createTemplate(env: ApiServer, version: CapiVersion, name: string, files: FileEntry[] = OTHERS_FILES): Promise<KubeObject> {
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  return (await custom.createNamespacedCustomObject({ group: TEMPLATE_GROUP, version, namespace: NAMESPACE, plural: TEMPLATE_PLURAL, body: {
    apiVersion: `${TEMPLATE_GROUP}/${version}`, kind: TEMPLATE_KIND,
    metadata: { name, namespace: NAMESPACE, labels: { "cluster.x-k8s.io/cluster-name": "c1" } },
    spec: { template: { spec: { files, preKubeadmCommands: ["echo platform-first"] } } },
  } })) as KubeObject;
}

export async function createMachineDeployment(env: ApiServer, version: CapiVersion, name: string, configRef: Record<string, string>): Promise<KubeObject> {
  const infrastructureRef = version === "v1beta2"
    ? { apiGroup: "infrastructure.cluster.x-k8s.io", kind: "DockerMachineTemplate", name: "workers" }
    : { apiVersion: "infrastructure.cluster.x-k8s.io/v1beta1", kind: "DockerMachineTemplate", name: "workers" };
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  return (await custom.createNamespacedCustomObject({ group: MD_GROUP, version, namespace: NAMESPACE, plural: MD_PLURAL, body: {
    apiVersion: `${MD_GROUP}/${version}`, kind: "MachineDeployment",
    metadata: { name, namespace: NAMESPACE },
    spec: {
      clusterName: "c1", replicas: 2, selector: { matchLabels: { pool: name } },
      template: { metadata: { labels: { pool: name } }, spec: { clusterName: "c1", version: "v1.37.2", bootstrap: { configRef }, infrastructureRef } },
    },
  } })) as KubeObject;
}

/** The configRef of `version` naming a KubeadmConfigTemplate. */
export function templateRef(version: CapiVersion, name: string): Record<string, string> {
  return version === "v1beta2"
    ? { apiGroup: TEMPLATE_GROUP, kind: TEMPLATE_KIND, name }
    : { apiVersion: `${TEMPLATE_GROUP}/${version}`, kind: TEMPLATE_KIND, name };
}

const INFRA_GROUP = "infrastructure.cluster.x-k8s.io";
const CLUSTER_GROUP = "cluster.x-k8s.io";

/** How long each fake part of an in-memory machine takes to "boot" (VM, kubelet/Node, apiserver, etcd pods). */
export interface InMemoryPace {
  vm: string;
  parts: string;
}

/** Fast enough for tests on two busy cores, slow enough that a rollout has visible intermediate states. */
export const FAST_PACE: InMemoryPace = { vm: "1s", parts: "500ms" };

function inMemoryMachine(pace: InMemoryPace) {
  const provisioning = (d: string) => ({ provisioning: { startupDuration: d, startupJitter: "0.2" } });
  return { backend: { inMemory: { vm: provisioning(pace.vm), node: provisioning(pace.parts), apiServer: provisioning(pace.parts), etcd: provisioning(pace.parts) } } };
}

export interface ManagedClusterNames {
  cluster: string;
  controlPlane: string;
  machineDeployment: string;
  /** The KubeadmConfigTemplate the MachineDeployment names before registry-trust touches it. */
  bootstrapTemplate: string;
}

export function managedClusterNames(cluster: string): ManagedClusterNames {
  return { cluster, controlPlane: `${cluster}-control-plane`, machineDeployment: `${cluster}-md-0`, bootstrapTemplate: `${cluster}-md-0-bootstrap` };
}

/**
 * A workload cluster for the real Cluster API managers (lab/capi.ts) on CAPD's in-memory backend: a Cluster,
 * its DevCluster, a KubeadmControlPlane of `controlPlaneReplicas` and a MachineDeployment of
 * `workerReplicas`, both carrying OTHERS_FILES (the Secret the `contentFrom` entry names is created too, or
 * the bootstrap provider could never render the machines' bootstrap data). Not ClusterClass-managed:
 * registry-trust edits the KCP and repoints the MachineDeployment directly.
 */
export async function createManagedCluster(env: ApiServer, names: ManagedClusterNames, opts: { controlPlaneReplicas?: number; workerReplicas?: number; pace?: InMemoryPace } = {}): Promise<void> {
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const core = env.kubeConfig.makeApiClient(k8s.CoreV1Api);
  const pace = opts.pace ?? FAST_PACE;
  const v = "v1beta2";
  const create = (group: string, plural: string, kind: string, name: string, spec: Record<string, unknown>, annotations?: Record<string, string>) =>
    custom.createNamespacedCustomObject({ group, version: v, namespace: NAMESPACE, plural, body: { apiVersion: `${group}/${v}`, kind, metadata: { name, namespace: NAMESPACE, annotations }, spec } });
  const cpTemplate = `${names.cluster}-control-plane`;
  const workerTemplate = `${names.cluster}-workers`;
  await core.createNamespacedSecret({ namespace: NAMESPACE, body: { metadata: { name: "platform-token", namespace: NAMESPACE }, stringData: { token: "platform-token-value" } } })
    .catch((e: { code?: number }) => { if (e.code !== 409) throw e; });
  // CAPD v1.14.2's in-memory DevCluster reconciler writes an annotation into metadata.annotations without
  // creating the map first (inmemorycluster_backend.go:67) and panics on a DevCluster that has none; a
  // ClusterClass always gives it some. docs/cluster-api.md lists this weak spot.
  await create(INFRA_GROUP, "devclusters", "DevCluster", names.cluster, { backend: { inMemory: {} } }, { "registry-trust.lab/created-by": "lab/capi-objects.ts" });
  await create(INFRA_GROUP, "devmachinetemplates", "DevMachineTemplate", cpTemplate, { template: { spec: inMemoryMachine(pace) } });
  await create(INFRA_GROUP, "devmachinetemplates", "DevMachineTemplate", workerTemplate, { template: { spec: inMemoryMachine(pace) } });
  await create(GROUP, PLURAL, "KubeadmControlPlane", names.controlPlane, {
    replicas: opts.controlPlaneReplicas ?? 3,
    version: "v1.37.2",
    machineTemplate: { spec: { infrastructureRef: { apiGroup: INFRA_GROUP, kind: "DevMachineTemplate", name: cpTemplate } } },
    kubeadmConfigSpec: { files: OTHERS_FILES, preKubeadmCommands: ["echo platform-first"] },
  });
  await createWorkerPool(env, names.cluster, names.machineDeployment, names.bootstrapTemplate, opts.workerReplicas ?? 2);
  // The Cluster last: its controllers start reconciling the rest the moment it exists.
  await create(CLUSTER_GROUP, "clusters", "Cluster", names.cluster, {
    clusterNetwork: { pods: { cidrBlocks: ["192.168.0.0/16"] }, services: { cidrBlocks: ["10.128.0.0/12"] }, serviceDomain: "cluster.local" },
    controlPlaneRef: { apiGroup: GROUP, kind: "KubeadmControlPlane", name: names.controlPlane },
    infrastructureRef: { apiGroup: INFRA_GROUP, kind: "DevCluster", name: names.cluster },
  });
}

export interface MachineObject {
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string>; creationTimestamp?: string; deletionTimestamp?: string; ownerReferences?: Array<{ kind: string; name: string }> };
  spec: { clusterName: string; bootstrap: { configRef?: { name: string }; dataSecretName?: string }; infrastructureRef: { name: string } };
  status?: { phase?: string; conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
}

/**
 * A MachineDeployment of `replicas` in-memory workers for a cluster made by createManagedCluster, with its
 * own KubeadmConfigTemplate `bootstrapTemplate` carrying OTHERS_FILES; created in `version`'s shape
 * (v1beta1 through the real conversion webhook).
 */
export async function createWorkerPool(env: ApiServer, cluster: string, name: string, bootstrapTemplate: string, replicas: number, version: CapiVersion = "v1beta2"): Promise<void> {
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const labels = { "cluster.x-k8s.io/cluster-name": cluster };
  await custom.createNamespacedCustomObject({ group: TEMPLATE_GROUP, version, namespace: NAMESPACE, plural: TEMPLATE_PLURAL, body: {
    apiVersion: `${TEMPLATE_GROUP}/${version}`, kind: TEMPLATE_KIND, metadata: { name: bootstrapTemplate, namespace: NAMESPACE, labels },
    spec: { template: { spec: { files: OTHERS_FILES, preKubeadmCommands: ["echo platform-first"] } } },
  } });
  const infrastructureRef = version === "v1beta2"
    ? { apiGroup: INFRA_GROUP, kind: "DevMachineTemplate", name: `${cluster}-workers` }
    : { apiVersion: `${INFRA_GROUP}/v1beta1`, kind: "DevMachineTemplate", name: `${cluster}-workers` };
  await custom.createNamespacedCustomObject({ group: MD_GROUP, version, namespace: NAMESPACE, plural: MD_PLURAL, body: {
    apiVersion: `${MD_GROUP}/${version}`, kind: "MachineDeployment", metadata: { name, namespace: NAMESPACE, labels },
    spec: {
      clusterName: cluster, replicas,
      ...(version === "v1beta1" ? { selector: { matchLabels: { pool: name } } } : {}),
      template: {
        ...(version === "v1beta1" ? { metadata: { labels: { pool: name } } } : {}),
        spec: { clusterName: cluster, version: "v1.37.2", bootstrap: { configRef: templateRef(version, bootstrapTemplate) }, infrastructureRef },
      },
    },
  } });
}

/** The cluster's Machines; `owner` narrows them to the control plane (KCP) or one MachineDeployment. */
export async function listMachines(env: { kubeConfig: k8s.KubeConfig }, cluster: string, owner?: { controlPlane: true } | { machineDeployment: string }): Promise<MachineObject[]> {
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const selector = [`cluster.x-k8s.io/cluster-name=${cluster}`];
  if (owner && "controlPlane" in owner) selector.push("cluster.x-k8s.io/control-plane");
  if (owner && "machineDeployment" in owner) selector.push(`cluster.x-k8s.io/deployment-name=${owner.machineDeployment}`);
  const list = (await custom.listNamespacedCustomObject({ group: CLUSTER_GROUP, version: "v1beta2", namespace: NAMESPACE, plural: "machines", labelSelector: selector.join(",") })) as { items: MachineObject[] };
  return list.items;
}

/**
 * The bootstrap templates a MachineDeployment's Machines were made from (their KubeadmConfigs'
 * cluster.x-k8s.io/cloned-from-name), distinct and sorted; "(deleting)" while any Machine is being deleted.
 */
export async function machineTemplates(env: { kubeConfig: k8s.KubeConfig }, cluster: string, machineDeployment: string): Promise<string[]> {
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const machines = await listMachines(env, cluster, { machineDeployment });
  const names = await Promise.all(machines.map(async (m) => {
    if (m.metadata.deletionTimestamp || !m.spec.bootstrap.configRef) return "(deleting)";
    const config = (await custom.getNamespacedCustomObject({ group: TEMPLATE_GROUP, version: "v1beta2", namespace: NAMESPACE, plural: "kubeadmconfigs", name: m.spec.bootstrap.configRef.name })) as KubeObject;
    return config.metadata.annotations?.["cluster.x-k8s.io/cloned-from-name"] ?? "(none)";
  }));
  return [...new Set(names)].sort();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the real controllers report the KCP and the MachineDeployment rolled out at their current
 * generation (core/kcp/rollout.ts, core/workers/rollout.ts) with no Machine left over or being deleted.
 */
export async function waitForClusterRolledOut(env: ApiServer, names: ManagedClusterNames, timeoutMs: number): Promise<void> {
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const get = (group: string, plural: string, name: string) => custom.getNamespacedCustomObject({ group, version: "v1beta2", namespace: NAMESPACE, plural, name }) as Promise<KcpObject>;
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    const kcp = await get(GROUP, PLURAL, names.controlPlane);
    const md = await get(MD_GROUP, MD_PLURAL, names.machineDeployment);
    const cp = rolloutState(kcp, "v1beta2", kcp.metadata.generation ?? 0);
    const workers = machineDeploymentRolloutState(md as KubeObject, "v1beta2", md.metadata.generation ?? 0);
    const machines = await listMachines(env, names.cluster);
    const settled = machines.length === (kcp.spec?.replicas ?? 0) + ((md.spec?.replicas as number | undefined) ?? 0) && machines.every((m) => !m.metadata.deletionTimestamp);
    if (cp.done && workers.done && settled) return;
    last = `control plane: ${cp.summary}; workers: ${workers.summary}; ${machines.length} Machines`;
    if (Date.now() > deadline) throw new Error(`cluster ${names.cluster} not rolled out after ${Math.round(timeoutMs / 1000)} s: ${last}`);
    await sleep(500);
  }
}
