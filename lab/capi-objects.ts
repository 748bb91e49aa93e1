// Cluster API objects on the lab's real apiserver: a KubeadmControlPlane, KubeadmConfigTemplates and
// MachineDeployments as a platform team would have them (other writers' files included), and the clients
// to them. Used by the lab cluster, the KCP benchmark and the Kubernetes tests.
import * as k8s from "@kubernetes/client-node";
import { clientNodeKcpApi, KcpApi, KcpObject, KcpVersion } from "../core/kcp/api";
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
