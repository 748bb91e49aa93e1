import type * as K8s from "@kubernetes/client-node";
import { clientNodeKcpApi, KcpApi, KcpObject, ObjectRef, orUndefined } from "../kcp/api";

/** One RFC 6902 operation. */
export interface JsonPatchOp {
  readonly op: "test" | "add" | "replace" | "remove";
  readonly path: string;
  readonly value?: unknown;
}

/** The calls the topology route makes; the Lease and Secret calls are the KCP sequencer's. */
export interface TopologyApi extends Pick<KcpApi, "getLease" | "createLease" | "replaceLease" | "deleteLease" | "getSecret" | "createSecret" | "listSecrets" | "deleteSecret" | "getKcp"> {
  getCluster(ref: ObjectRef): Promise<KcpObject>;
  /** RFC 6902 patch of the Cluster (v1beta2); a failed `test` is answered 422 by the apiserver. */
  patchCluster(ref: ObjectRef, ops: readonly JsonPatchOp[]): Promise<KcpObject>;
  getClusterClass(ref: ObjectRef): Promise<KcpObject | undefined>;
  /** The Cluster's MachineDeployments (label cluster.x-k8s.io/cluster-name). */
  listMachineDeployments(namespace: string, cluster: string): Promise<KcpObject[]>;
  getTemplate(ref: ObjectRef): Promise<KcpObject | undefined>;
  /** JSON merge patch of a Secret's data (base64 values; null deletes a key). */
  patchSecretData(ref: ObjectRef, data: Record<string, string | null>): Promise<void>;
}

/** The TopologyApi over @kubernetes/client-node 1.x; `k8s` is the module, passed in rather than imported. */
export function clientNodeTopologyApi(k8s: typeof K8s, kubeConfig: K8s.KubeConfig): TopologyApi {
  const kcp = clientNodeKcpApi(k8s, kubeConfig);
  const custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
  const cluster = (ref: ObjectRef) => ({ group: "cluster.x-k8s.io", version: "v1beta2", plural: "clusters", namespace: ref.namespace, name: ref.name });
  return {
    getLease: kcp.getLease, createLease: kcp.createLease, replaceLease: kcp.replaceLease, deleteLease: kcp.deleteLease,
    getSecret: kcp.getSecret, createSecret: kcp.createSecret, listSecrets: kcp.listSecrets, deleteSecret: kcp.deleteSecret,
    getKcp: kcp.getKcp,
    getCluster: async (ref) => (await custom.getNamespacedCustomObject(cluster(ref))) as KcpObject,
    async patchCluster(ref, ops) {
      return (await custom.patchNamespacedCustomObject({ ...cluster(ref), body: ops }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch))) as KcpObject;
    },
    getClusterClass: (ref) => orUndefined(custom.getNamespacedCustomObject({ group: "cluster.x-k8s.io", version: "v1beta2", plural: "clusterclasses", namespace: ref.namespace, name: ref.name }) as Promise<KcpObject>),
    async listMachineDeployments(namespace, name) {
      const list = (await custom.listNamespacedCustomObject({ group: "cluster.x-k8s.io", version: "v1beta2", plural: "machinedeployments", namespace, labelSelector: `cluster.x-k8s.io/cluster-name=${name}` })) as { items: KcpObject[] };
      return list.items;
    },
    getTemplate: (ref) => orUndefined(custom.getNamespacedCustomObject({ group: "bootstrap.cluster.x-k8s.io", version: "v1beta2", plural: "kubeadmconfigtemplates", namespace: ref.namespace, name: ref.name }) as Promise<KcpObject>),
    async patchSecretData(ref, data) {
      await core.patchNamespacedSecret({ ...ref, body: { data } }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
    },
  };
}
