import type * as K8s from "@kubernetes/client-node";
import { httpStatus, kcpError } from "./errors";

/*
 * The few Kubernetes calls the sequencer makes, behind an interface so that the sequencer itself never
 * imports @kubernetes/client-node: callers pass the module in (a Pulumi dynamic provider must require() it
 * inside its methods, see docs/kubernetes-client.md). Custom resources and Leases go through
 * CustomObjectsApi, which sends bodies as they are (the typed APIs re-serialize them from model names and
 * would reformat the Lease's MicroTime fields).
 */

export const KCP_GROUP = "controlplane.cluster.x-k8s.io";
export const KCP_PLURAL = "kubeadmcontrolplanes";
export const KCP_VERSIONS = ["v1beta1", "v1beta2"] as const;
/** Our field manager on every write, so that managedFields tell our writes from everyone else's. */
export const FIELD_MANAGER = "registry-trust";
export type KcpVersion = (typeof KCP_VERSIONS)[number];

export interface ObjectRef {
  readonly namespace: string;
  readonly name: string;
}

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  [field: string]: unknown;
}

/** A KubeadmControlPlane as JSON; only the fields the sequencer reads are typed. */
export interface KcpObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: Record<string, unknown> & { replicas?: number; kubeadmConfigSpec?: Record<string, unknown> };
  status?: Record<string, unknown>;
}

export interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

export interface SecretObject {
  metadata: ObjectMeta & { ownerReferences?: unknown[] };
  type?: string;
  /** base64 values, as on the wire. */
  data?: Record<string, string>;
}

export interface KcpApi {
  /** Versions of the KCP API group the apiserver serves; empty when Cluster API is not installed. */
  servedKcpVersions(): Promise<string[]>;
  getKcp(ref: ObjectRef, version: KcpVersion): Promise<KcpObject>;
  /** Full update; the body's metadata.resourceVersion is the precondition (409 when stale). */
  replaceKcp(ref: ObjectRef, version: KcpVersion, body: KcpObject): Promise<KcpObject>;
  /** undefined when it does not exist. */
  getLease(ref: ObjectRef): Promise<LeaseObject | undefined>;
  createLease(body: LeaseObject): Promise<LeaseObject>;
  replaceLease(body: LeaseObject): Promise<LeaseObject>;
  /** Deletes only the version given (precondition). */
  deleteLease(ref: ObjectRef, resourceVersion: string): Promise<void>;
  getSecret(ref: ObjectRef): Promise<SecretObject | undefined>;
  createSecret(body: SecretObject): Promise<void>;
  listSecrets(namespace: string, labelSelector: string): Promise<SecretObject[]>;
  deleteSecret(ref: ObjectRef): Promise<void>;
  /** undefined when it does not exist (the rotation record, core/rotation/record.ts). */
  getConfigMap(ref: ObjectRef): Promise<{ data?: Record<string, string> } | undefined>;
}

type ClientNode = typeof K8s;

/** The call's result, or undefined when the object does not exist (404). */
export async function orUndefined<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (e) {
    if (httpStatus(e) === 404) return undefined;
    throw e;
  }
}

/** Versions of an API group the apiserver serves; empty when the group is not installed. */
export async function servedVersions(apis: K8s.ApisApi, groupName: string): Promise<string[]> {
  const groups = await apis.getAPIVersions();
  const group = groups.groups.find((g) => g.name === groupName);
  return group ? group.versions.map((v) => v.version) : [];
}

/**
 * The Cluster API version to use: the one requested if served, else the newest we support. `what` names
 * the group and kind in refusals.
 */
export function pickVersion(served: string[], requested: KcpVersion | undefined, what: string): KcpVersion {
  if (served.length === 0) {
    throw kcpError("VERSION_NOT_SERVED", `the apiserver does not serve ${what}: Cluster API is not installed in this cluster (check kubeconfig and context)`);
  }
  if (requested) {
    if (!served.includes(requested)) {
      throw kcpError("VERSION_NOT_SERVED", `${what} ${requested} is not served by this apiserver (served: ${served.join(", ")}); set apiVersion to one of those`);
    }
    return requested;
  }
  const supported = [...KCP_VERSIONS].reverse().find((v) => served.includes(v));
  if (!supported) {
    throw kcpError("VERSION_NOT_SERVED", `this apiserver serves ${what} only as ${served.join(", ")}; registry-trust supports ${KCP_VERSIONS.join(", ")}`);
  }
  return supported;
}

/** The KcpApi over @kubernetes/client-node 1.x; `k8s` is the module, passed in rather than imported. */
export function clientNodeKcpApi(k8s: ClientNode, kubeConfig: K8s.KubeConfig): KcpApi {
  const custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
  const apis = kubeConfig.makeApiClient(k8s.ApisApi);
  const kcp = (ref: ObjectRef, version: KcpVersion) => ({ group: KCP_GROUP, version, plural: KCP_PLURAL, namespace: ref.namespace, name: ref.name });
  const lease = (ref: ObjectRef) => ({ group: "coordination.k8s.io", version: "v1", plural: "leases", namespace: ref.namespace, name: ref.name });
  const leaseRef = (body: LeaseObject) => lease({ namespace: body.metadata.namespace ?? "", name: body.metadata.name ?? "" });
  return {
    servedKcpVersions: () => servedVersions(apis, KCP_GROUP),
    async getKcp(ref, version) {
      return (await custom.getNamespacedCustomObject(kcp(ref, version))) as KcpObject;
    },
    async replaceKcp(ref, version, body) {
      return (await custom.replaceNamespacedCustomObject({ ...kcp(ref, version), body, fieldManager: FIELD_MANAGER })) as KcpObject;
    },
    getLease: (ref) => orUndefined(custom.getNamespacedCustomObject(lease(ref)) as Promise<LeaseObject>),
    async createLease(body) {
      const { name: _, ...ref } = leaseRef(body);
      return (await custom.createNamespacedCustomObject({ ...ref, body, fieldManager: FIELD_MANAGER })) as LeaseObject;
    },
    async replaceLease(body) {
      return (await custom.replaceNamespacedCustomObject({ ...leaseRef(body), body, fieldManager: FIELD_MANAGER })) as LeaseObject;
    },
    async deleteLease(ref, resourceVersion) {
      await custom.deleteNamespacedCustomObject({ ...lease(ref), body: { preconditions: { resourceVersion } } });
    },
    getSecret: (ref) => orUndefined(core.readNamespacedSecret(ref) as Promise<SecretObject>),
    async createSecret(body) {
      await core.createNamespacedSecret({ namespace: body.metadata.namespace ?? "", body: body as K8s.V1Secret, fieldManager: FIELD_MANAGER });
    },
    async listSecrets(namespace, labelSelector) {
      return (await core.listNamespacedSecret({ namespace, labelSelector })).items as SecretObject[];
    },
    async deleteSecret(ref) {
      await orUndefined(core.deleteNamespacedSecret(ref));
    },
    getConfigMap: (ref) => orUndefined(core.readNamespacedConfigMap(ref)),
  };
}

/** Loads a kubeconfig given as file content (anything with a newline or starting with "{") or as a path. */
export function loadKubeConfig(k8s: ClientNode, kubeconfig: string, context?: string): K8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (kubeconfig.includes("\n") || kubeconfig.trimStart().startsWith("{")) kc.loadFromString(kubeconfig);
  else kc.loadFromFile(kubeconfig);
  if (context) {
    // client-node would otherwise go on with the current context and write to the wrong cluster.
    if (!kc.getContextObject(context)) {
      throw new Error(`kubeconfig has no context "${context}" (it has: ${kc.getContexts().map((c) => c.name).join(", ") || "none"})`);
    }
    kc.setCurrentContext(context);
  }
  return kc;
}
