import type * as K8s from "@kubernetes/client-node";
import { clientNodeKcpApi, FIELD_MANAGER, KcpApi, KcpObject, KcpVersion, ObjectRef, orUndefined, servedVersions } from "../kcp/api";
import { LeaseApi } from "../kcp/lease";
import { SecretApi } from "../kcp/secret";

/*
 * The Kubernetes calls of the worker sequencer, behind an interface like core/kcp's KcpApi (same reasons:
 * the module is passed in, never imported, so that the dynamic provider can require() it in its methods).
 * Leases and Secrets (for a bundle too large to be inline) are core/kcp's own calls.
 */

export const MD_GROUP = "cluster.x-k8s.io";
export const MD_PLURAL = "machinedeployments";
export const TEMPLATE_GROUP = "bootstrap.cluster.x-k8s.io";
export const TEMPLATE_KIND = "KubeadmConfigTemplate";
export const TEMPLATE_PLURAL = "kubeadmconfigtemplates";
/** Cluster API versions: MachineDeployments and KubeadmConfigTemplates of one CAPI release serve the same ones. */
export type CapiVersion = KcpVersion;

/** Any Kubernetes object as JSON; the KCP shape is the general one plan.ts merges into. */
export type KubeObject = KcpObject;

export interface WorkerApi extends LeaseApi, SecretApi, Pick<KcpApi, "getConfigMap"> {
  /** Versions of an API group the apiserver serves; empty when it is not installed. */
  servedVersions(group: string): Promise<string[]>;
  /** Throws the API's 404 when it does not exist. */
  getMachineDeployment(ref: ObjectRef, version: CapiVersion): Promise<KubeObject>;
  /** Full update; the body's metadata.resourceVersion is the precondition (409 when stale). */
  replaceMachineDeployment(ref: ObjectRef, version: CapiVersion, body: KubeObject): Promise<KubeObject>;
  listMachineDeployments(namespace: string, version: CapiVersion): Promise<KubeObject[]>;
  /** undefined when it does not exist. */
  getTemplate(ref: ObjectRef, version: CapiVersion): Promise<KubeObject | undefined>;
  createTemplate(body: KubeObject, version: CapiVersion): Promise<KubeObject>;
  listTemplates(namespace: string, version: CapiVersion, labelSelector: string): Promise<KubeObject[]>;
  /** Deletes only the version given (precondition); gone already is fine. */
  deleteTemplate(ref: ObjectRef, version: CapiVersion, resourceVersion: string): Promise<void>;
  /**
   * MachineSets and Machines matching `labelSelector` (cluster.x-k8s.io/deployment-name=<md>): the rollout wait
   * checks which template the machines really come from, as the MachineDeployment's own counts lag behind.
   */
  listMachineSets(namespace: string, version: CapiVersion, labelSelector: string): Promise<KubeObject[]>;
  listMachines(namespace: string, version: CapiVersion, labelSelector: string): Promise<KubeObject[]>;
}

/** The WorkerApi over @kubernetes/client-node 1.x; `k8s` is the module, passed in rather than imported. */
export function clientNodeWorkerApi(k8s: typeof K8s, kubeConfig: K8s.KubeConfig): WorkerApi {
  const custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const apis = kubeConfig.makeApiClient(k8s.ApisApi);
  const { getLease, createLease, replaceLease, deleteLease, getSecret, createSecret, listSecrets, deleteSecret, getConfigMap } = clientNodeKcpApi(k8s, kubeConfig);
  const md = (namespace: string, version: CapiVersion) => ({ group: MD_GROUP, version, plural: MD_PLURAL, namespace });
  const tpl = (namespace: string, version: CapiVersion) => ({ group: TEMPLATE_GROUP, version, plural: TEMPLATE_PLURAL, namespace });
  return {
    getLease, createLease, replaceLease, deleteLease, getSecret, createSecret, listSecrets, deleteSecret, getConfigMap,
    servedVersions: (group) => servedVersions(apis, group),
    async getMachineDeployment(ref, version) {
      return (await custom.getNamespacedCustomObject({ ...md(ref.namespace, version), name: ref.name })) as KubeObject;
    },
    async replaceMachineDeployment(ref, version, body) {
      return (await custom.replaceNamespacedCustomObject({ ...md(ref.namespace, version), name: ref.name, body, fieldManager: FIELD_MANAGER })) as KubeObject;
    },
    async listMachineDeployments(namespace, version) {
      return ((await custom.listNamespacedCustomObject(md(namespace, version))) as { items: KubeObject[] }).items;
    },
    getTemplate: (ref, version) => orUndefined(custom.getNamespacedCustomObject({ ...tpl(ref.namespace, version), name: ref.name }) as Promise<KubeObject>),
    async createTemplate(body, version) {
      return (await custom.createNamespacedCustomObject({ ...tpl(body.metadata.namespace ?? "", version), body, fieldManager: FIELD_MANAGER })) as KubeObject;
    },
    async listTemplates(namespace, version, labelSelector) {
      return ((await custom.listNamespacedCustomObject({ ...tpl(namespace, version), labelSelector })) as { items: KubeObject[] }).items;
    },
    async deleteTemplate(ref, version, resourceVersion) {
      await orUndefined(custom.deleteNamespacedCustomObject({ ...tpl(ref.namespace, version), name: ref.name, body: { preconditions: { resourceVersion } } }));
    },
    async listMachineSets(namespace, version, labelSelector) {
      return ((await custom.listNamespacedCustomObject({ group: MD_GROUP, version, plural: "machinesets", namespace, labelSelector })) as { items: KubeObject[] }).items;
    },
    async listMachines(namespace, version, labelSelector) {
      return ((await custom.listNamespacedCustomObject({ group: MD_GROUP, version, plural: "machines", namespace, labelSelector })) as { items: KubeObject[] }).items;
    },
  };
}
