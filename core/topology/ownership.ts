import { KcpObject } from "../kcp/api";
import { kcpError, KcpError } from "../kcp/errors";

/*
 * Whether a direct write to a Cluster API object would be undone or would break the topology reconcile.
 * On a Cluster with spec.topology the topology controller owns the KubeadmControlPlane, the
 * MachineDeployments and their KubeadmConfigTemplates through server-side apply (field manager
 * `capi-topology`, forced): an edit of the KCP's atomic `files` list is reverted on its next reconcile, and
 * a MachineDeployment repointed to a template without `topology.cluster.x-k8s.io/owned` stops the whole
 * topology reconcile ("… is not topology owned"). Decided from the object as read — its labels and
 * managedFields — so the check needs no other read and runs in preview as well as before a write.
 */

export const TOPOLOGY_OWNED_LABEL = "topology.cluster.x-k8s.io/owned";
/** The field manager of Cluster API's topology controller (core/reconcilers/topology/cluster/structuredmerge). */
export const TOPOLOGY_MANAGER = "capi-topology";

export type DirectKind = "KubeadmControlPlane" | "MachineDeployment" | "KubeadmConfigTemplate";

/** The field a direct write of registry-trust changes, as a managedFields (FieldsV1) path. */
const OUR_FIELD: Record<DirectKind, { path: string[]; shown: string }> = {
  KubeadmControlPlane: { path: ["f:spec", "f:kubeadmConfigSpec", "f:files"], shown: "spec.kubeadmConfigSpec.files" },
  MachineDeployment: { path: ["f:spec", "f:template", "f:spec", "f:bootstrap", "f:configRef"], shown: "spec.template.spec.bootstrap.configRef" },
  KubeadmConfigTemplate: { path: ["f:spec", "f:template", "f:spec", "f:files"], shown: "spec.template.spec.files" },
};

interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  subresource?: string;
  fieldsV1?: Record<string, unknown>;
}

export interface TopologyOwner {
  /** "KubeadmControlPlane default/tc-d59t8". */
  readonly object: string;
  /** The field manager that would undo our write. */
  readonly manager: string;
  /** The field it owns, or the label that marks the object. */
  readonly field: string;
  readonly why: string;
}

function owns(fields: Record<string, unknown> | undefined, path: string[]): boolean {
  let node: unknown = fields;
  for (const key of path) {
    if (typeof node !== "object" || node === null || !(key in node)) return false;
    node = (node as Record<string, unknown>)[key];
  }
  return true;
}

/**
 * The owner that would revert or refuse a direct write to `object` (a `kind` as read from the apiserver),
 * or undefined when a direct write is safe. `ourManagers` are the field managers of registry-trust's own
 * writes. Only server-side-apply owners (operation Apply) count: they re-apply their intent and take the
 * field back, while an Update owner (kubectl edit, another client's read-modify-write) does not.
 */
export function topologyOwner(kind: DirectKind, object: KcpObject, ourManagers: readonly string[] = []): TopologyOwner | undefined {
  const what = `${kind} ${object.metadata.namespace}/${object.metadata.name}`;
  const field = OUR_FIELD[kind];
  const managed = (object.metadata.managedFields ?? []) as ManagedFieldsEntry[];
  const applier = managed.find((m) => m.operation === "Apply" && !m.subresource && m.manager && !ourManagers.includes(m.manager) && owns(m.fieldsV1, field.path));
  if (applier) {
    return { object: what, manager: applier.manager!, field: field.shown, why: `${applier.manager} owns ${field.shown} by server-side apply and re-applies its own value` };
  }
  if (object.metadata.labels?.[TOPOLOGY_OWNED_LABEL] !== undefined) {
    // Owned by a topology even where managedFields were stripped (a restore from backup, a move).
    return { object: what, manager: TOPOLOGY_MANAGER, field: `label ${TOPOLOGY_OWNED_LABEL}`, why: `it belongs to a ClusterClass-managed Cluster (label ${TOPOLOGY_OWNED_LABEL})` };
  }
  return undefined;
}

/** A Cluster with spec.topology: its KCP and MachineDeployments are the topology controller's. */
export function clusterTopologyOwner(cluster: KcpObject): TopologyOwner | undefined {
  const topology = cluster.spec?.topology as { classRef?: { name?: string } } | undefined;
  if (!topology) return undefined;
  const what = `Cluster ${cluster.metadata.namespace}/${cluster.metadata.name}`;
  return { object: what, manager: TOPOLOGY_MANAGER, field: "spec.topology", why: `it is managed by ClusterClass ${topology.classRef?.name ?? "(unnamed)"} (spec.topology is set)` };
}

/**
 * The refusal for a direct write to a topology-owned object: names the object, the owner and the fix (the
 * ClusterClass variable route, TopologyTrust with `variable` and `shape`).
 */
export function topologyRefusal(owner: TopologyOwner): KcpError {
  return kcpError("TOPOLOGY_OWNED", `refusing to write ${owner.object} directly: ${owner.why}, so a direct write would be reverted on its next ` +
    `reconcile or stop the Cluster's topology reconcile. Deliver the bundle through a ClusterClass variable instead: use TopologyTrust ` +
    `(components/topology-trust.ts) with \`variable\` and \`shape\` (files, pems, tkg-trust or caren-registries) naming the variable the ` +
    `class patches into the machines; docs/rotation.md "ClusterClass-managed clusters" says what the class must provide when it has none.`);
}

/** Throws the refusal when `object` is topology-owned; the one call the direct write paths make before writing. */
export function refuseTopologyOwned(kind: DirectKind, object: KcpObject, ourManagers: readonly string[] = []): void {
  const owner = topologyOwner(kind, object, ourManagers);
  if (owner) throw topologyRefusal(owner);
}

/**
 * The check for preview: reads the object and refuses it when topology-owned. An object that does not exist
 * (yet) or cannot be read is left to the write, which reports it with the whole context.
 */
export async function probeTopologyOwned(kind: DirectKind, read: () => Promise<KcpObject>): Promise<void> {
  let object: KcpObject;
  try {
    object = await read();
  } catch {
    return;
  }
  refuseTopologyOwned(kind, object);
}
