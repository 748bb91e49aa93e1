import { KcpObject, ObjectRef } from "../kcp/api";
import { httpStatus, kcpError, refuseForbidden } from "../kcp/errors";
import { acquireLease, HeldLease, releaseLease } from "../kcp/lease";
import { canonicalJson, FileEntry } from "../kcp/plan";
import { Attempt, retryOnConflict } from "../kcp/retry";
import { rolloutState, RolloutState, waitForRollout } from "../kcp/rollout";
import { ensureSecret } from "../kcp/secret";
import { Phase, SequencerOptions } from "../kcp/sequencer";
import { machineDeploymentRolloutState } from "../workers/rollout";
import { JsonPatchOp, TopologyApi } from "./api";
import { clusterTopologyOwner } from "./ownership";
import { planVariable, secretLabelsOf, TKG_KEY_PREFIX, TOPOLOGY_OWNERSHIP_ANNOTATION, TopologyOwnership, validateVariableSpec, VariablePlan, VariableTrustSpec, withoutOurs } from "./shapes";

/*
 * The topology route: the bundle reaches a ClusterClass-managed cluster through a variable the class patches
 * into the KCP and the workers' bootstrap templates. Under the KCP's Lease (the same one the direct KCP path
 * takes, so the two routes never interleave on one control plane): Secret for the bundle → JSON patch of the
 * Cluster that `test`s the variable's current value and replaces it with others' entries plus ours (per
 * MachineDeployment overrides of the variable too) → on 409 or a failed test (422) re-read and re-plan with
 * the KCP path's bounded backoff → wait until the topology controller reconciled that generation and the KCP
 * and every MachineDeployment rolled out → verify (files shape) → prune our older Secrets.
 */

export interface TopologyTarget {
  /** The Cluster (spec.topology set). */
  readonly cluster: ObjectRef;
}

export type TopologyPhase = Phase | "secret" | "topology-reconciled";

export interface TopologyEvent {
  readonly at: number;
  readonly holder: string;
  readonly phase: TopologyPhase;
  readonly message: string;
}

export interface TopologyOptions extends Omit<SequencerOptions, "onEvent" | "adopt" | "rolloutAfter"> {
  readonly onEvent?: (e: TopologyEvent) => void;
}

export interface TopologyResult {
  readonly generation: number;
  readonly written: boolean;
  readonly attempts: number;
  readonly conflicts: number;
  readonly ownership: TopologyOwnership;
  /** Secrets (or, tkg-trust, keys) removed after the rollout. */
  readonly pruned: string[];
}

interface Variable { name: string; value: unknown }
interface MdTopology { name: string; variables?: { overrides?: Variable[] } }
interface Topology { classRef?: { name: string; namespace?: string }; variables?: Variable[]; workers?: { machineDeployments?: MdTopology[] } }

const topologyOf = (c: KcpObject) => c.spec?.topology as Topology | undefined;
/**
 * A JSON pointer token (RFC 6901). Not named `escape`: Pulumi's closure serializer resolves a free name
 * that is also a global to the global, so the serialized provider called the legacy global escape(),
 * which leaves "/" alone, and every patch of the annotation failed on the real apiserver
 * (test/unit/provider-globals.test.ts now refuses such names).
 */
const pointerToken = (s: string) => s.replace(/~/g, "~0").replace(/\//g, "~1");

function readOwnershipOf(cluster: KcpObject): TopologyOwnership | undefined {
  const text = cluster.metadata.annotations?.[TOPOLOGY_OWNERSHIP_ANNOTATION];
  if (!text) return undefined;
  try {
    return JSON.parse(text) as TopologyOwnership;
  } catch {
    throw kcpError("INVALID_OWNERSHIP", `annotation ${TOPOLOGY_OWNERSHIP_ANNOTATION} on Cluster ${cluster.metadata.namespace}/${cluster.metadata.name} is not JSON; remove it and rerun`);
  }
}

async function readCluster(api: TopologyApi, ref: ObjectRef): Promise<KcpObject> {
  try {
    return await api.getCluster(ref);
  } catch (e) {
    if (httpStatus(e) === 404) throw kcpError("KCP_NOT_FOUND", `Cluster ${ref.namespace}/${ref.name} not found; check the name, namespace and kubeconfig context`);
    throw refuseForbidden(e, `read Cluster ${ref.namespace}/${ref.name}`);
  }
}

/** Refuses a Cluster without topology, or a class without the variable, naming what the platform owner must add. */
async function checkClass(api: TopologyApi, cluster: KcpObject, variable: string): Promise<void> {
  const what = `Cluster ${cluster.metadata.namespace}/${cluster.metadata.name}`;
  if (!clusterTopologyOwner(cluster)) {
    throw kcpError("TOPOLOGY_VARIABLE", `${what} has no spec.topology (not ClusterClass-managed): use ControlPlaneTrust and WorkerTrust, which write the KCP and MachineDeployments directly`);
  }
  const ref = topologyOf(cluster)!.classRef!;
  const cls = await api.getClusterClass({ namespace: ref.namespace ?? cluster.metadata.namespace ?? "", name: ref.name });
  const defined = [
    ...((cls?.spec?.variables as Array<{ name: string }> | undefined) ?? []),
    ...(((cls?.status as { variables?: Array<{ name: string }> } | undefined)?.variables) ?? []),
  ].map((v) => v.name).filter((v, i, all) => all.indexOf(v) === i);
  if (!defined.includes(variable)) {
    throw kcpError("TOPOLOGY_VARIABLE", `ClusterClass ${ref.namespace ?? cluster.metadata.namespace}/${ref.name} of ${what} defines no variable "${variable}" ` +
      `(it defines: ${defined.join(", ") || "none"}). The platform owner must add it to the class with patches that put its value into the ` +
      "KubeadmControlPlaneTemplate and every KubeadmConfigTemplate (docs/rotation.md, \"ClusterClass-managed clusters\"), or set `variable` to the class's trust variable");
  }
}

/** The patch: test each value we change, replace it, record our ownership. */
function patchOps(cluster: KcpObject, spec: VariableTrustSpec, plan: (current: unknown) => unknown, ownership: TopologyOwnership | undefined): { ops: JsonPatchOp[]; changed: boolean } {
  const topology = topologyOf(cluster)!;
  const ops: JsonPatchOp[] = [];
  let changed = false;
  const vars = topology.variables;
  const i = vars?.findIndex((v) => v.name === spec.variable) ?? -1;
  if (vars && i >= 0) {
    const value = plan(vars[i].value);
    if (canonicalJson(value) !== canonicalJson(vars[i].value)) {
      ops.push({ op: "test", path: `/spec/topology/variables/${i}`, value: vars[i] }, { op: "replace", path: `/spec/topology/variables/${i}/value`, value });
      changed = true;
    }
  } else {
    // No value to test: the list (or its absence) is guarded by the resourceVersion instead.
    ops.push({ op: "test", path: "/metadata/resourceVersion", value: cluster.metadata.resourceVersion });
    ops.push(vars ? { op: "add", path: "/spec/topology/variables/-", value: { name: spec.variable, value: plan(undefined) } } : { op: "add", path: "/spec/topology/variables", value: [{ name: spec.variable, value: plan(undefined) }] });
    changed = true;
  }
  // A MachineDeployment that overrides the variable gets our part merged into its own value.
  (topology.workers?.machineDeployments ?? []).forEach((md, m) => {
    const overrides = md.variables?.overrides ?? [];
    const j = overrides.findIndex((v) => v.name === spec.variable);
    if (j < 0) return;
    const value = plan(overrides[j].value);
    if (canonicalJson(value) === canonicalJson(overrides[j].value)) return;
    const at = `/spec/topology/workers/machineDeployments/${m}/variables/overrides/${j}`;
    ops.push({ op: "test", path: at, value: overrides[j] }, { op: "replace", path: `${at}/value`, value });
    changed = true;
  });
  const annotation = ownership ? JSON.stringify(ownership) : undefined;
  const annotations = cluster.metadata.annotations;
  if (annotation !== annotations?.[TOPOLOGY_OWNERSHIP_ANNOTATION]) {
    if (!annotations) ops.push({ op: "add", path: "/metadata/annotations", value: annotation ? { [TOPOLOGY_OWNERSHIP_ANNOTATION]: annotation } : {} });
    else if (annotation) ops.push({ op: "add", path: `/metadata/annotations/${pointerToken(TOPOLOGY_OWNERSHIP_ANNOTATION)}`, value: annotation });
    else ops.push({ op: "remove", path: `/metadata/annotations/${pointerToken(TOPOLOGY_OWNERSHIP_ANNOTATION)}` });
    changed = true;
  }
  return { ops, changed };
}

/**
 * A patch that no longer applies: a failed `test` (another writer changed the value since we read it) or a
 * path gone (the list shifted). Measured on kube-apiserver 1.37: 422, reason Invalid, the generic message
 * and no details at all — json-patch's own sentence is dropped — whereas a validation or webhook refusal
 * names the object and carries causes. Returns a description, or undefined for any other error.
 */
function patchNoLongerApplies(e: unknown): string | undefined {
  if (httpStatus(e) !== 422) return undefined;
  const body = (e as { body?: unknown }).body;
  try {
    const status = (typeof body === "string" ? JSON.parse(body) : body) as { reason?: string; message?: string; details?: { causes?: unknown[]; name?: string } };
    const bare = status.reason === "Invalid" && !status.details?.name && !(status.details?.causes?.length);
    return bare ? `the JSON patch's test failed (HTTP 422: ${status.message})` : undefined;
  } catch {
    return undefined;
  }
}

/** Puts the bundle into the variable and waits until the topology controller has rolled it out everywhere. */
export function writeTopologyTrust(api: TopologyApi, target: TopologyTarget, spec: VariableTrustSpec, opts: TopologyOptions): Promise<TopologyResult> {
  validateVariableSpec(spec);
  return sequence(api, target, spec, opts, "write");
}

/** Removes our part of the variable (and our Secrets) per the ownership recorded on the Cluster. */
export function removeTopologyTrust(api: TopologyApi, target: TopologyTarget, spec: VariableTrustSpec, opts: TopologyOptions): Promise<TopologyResult> {
  validateVariableSpec(spec);
  return sequence(api, target, spec, opts, "remove");
}

async function sequence(api: TopologyApi, target: TopologyTarget, spec: VariableTrustSpec, opts: TopologyOptions, action: "write" | "remove"): Promise<TopologyResult> {
  const emit = (phase: TopologyPhase, message: string) => opts.onEvent?.({ at: Date.now(), holder: opts.holder, phase, message });
  const ref = target.cluster;
  const what = `Cluster ${ref.namespace}/${ref.name}`;
  const first = await readCluster(api, ref);
  await checkClass(api, first, spec.variable);
  // Planned once before the Lease: a value not of the shape is refused before anything is touched.
  const current = topologyOf(first)!.variables?.find((v) => v.name === spec.variable)?.value;
  const previous = readOwnershipOf(first);
  let planned: VariablePlan | undefined = action === "write" ? planVariable(ref.name, current, spec, previous) : undefined;
  const ourPaths = (p: TopologyOwnership | undefined) => (p?.shape === "files" ? planVariable(ref.name, [], { ...spec, shape: "files" }, p).value as FileEntry[] : []).map((f) => f.path);
  const controlPlane = (first.spec?.controlPlaneRef as { name?: string } | undefined)?.name;
  if (!controlPlane) throw kcpError("TOPOLOGY_VARIABLE", `${what} has no spec.controlPlaneRef yet: the topology controller has not created its control plane; rerun once it has`);
  const kcpRef = { namespace: ref.namespace, name: controlPlane };

  let lease: HeldLease;
  try {
    lease = await acquireLease(api, kcpRef, { ...opts.lease, holder: opts.holder, onWait: (m) => emit("lease-wait", m) });
  } catch (e) {
    throw refuseForbidden(e, `take the Lease for KubeadmControlPlane ${kcpRef.namespace}/${kcpRef.name}`);
  }
  emit("lease-acquired", `Lease ${lease.ref.namespace}/${lease.ref.name} acquired`);
  try {
    if (planned?.secret) await putSecret(api, first, planned.secret, emit);
    let written = false;
    const r = await retryOnConflict(what, opts.conflict ?? {}, async (attempt): Promise<Attempt<number>> => {
      const cluster = await readCluster(api, ref);
      const prev = readOwnershipOf(cluster);
      const plan = (value: unknown) => {
        if (action === "remove") return prev ? withoutOurs(value, prev, ourPaths(prev)) : value;
        planned = planVariable(ref.name, value, spec, prev);
        return planned.value;
      };
      const { ops, changed } = patchOps(cluster, spec, plan, action === "write" ? planned?.ownership : undefined);
      if (!changed) {
        emit("unchanged", `${what}: variable ${spec.variable} already carries exactly our part`);
        return { done: cluster.metadata.generation ?? 0 };
      }
      try {
        const after = await api.patchCluster(ref, ops);
        written = true;
        emit("written", `${what}: variable ${spec.variable} updated, generation ${after.metadata.generation} (attempt ${attempt})`);
        return { done: after.metadata.generation ?? 0 };
      } catch (e) {
        const failed = patchNoLongerApplies(e);
        if (failed) return { conflict: `another writer changed the Cluster since we read it: ${failed}` };
        throw e;
      }
    }, { check: () => lease.check(), onConflict: (m) => emit("conflict", m) });

    const rollout = opts.rollout ?? {};
    let pruned: string[] = [];
    if (rollout.wait ?? true) {
      const timeoutMs = rollout.timeoutMs ?? 1_800_000;
      const pollMs = rollout.pollMs ?? 2_000;
      const wait = <T>(read: () => Promise<T>, state: (o: T) => RolloutState, generation: number, of: string) =>
        waitForRollout(read, state, generation, { timeoutMs, pollMs, what: of, check: () => lease.check(), onProgress: (s) => emit("rollout", s) });
      await wait(() => readCluster(api, ref), (c) => topologyReconciled(c, r.value), r.value, what);
      emit("topology-reconciled", `${what}: the topology controller reconciled generation ${r.value}`);
      const kcp = await wait(() => api.getKcp(kcpRef, "v1beta2"), (k) => rolloutState(k, "v1beta2", k.metadata.generation ?? 0), 0, `KubeadmControlPlane ${kcpRef.namespace}/${kcpRef.name}`);
      const mds = await api.listMachineDeployments(ref.namespace, ref.name);
      const rolled: KcpObject[] = [];
      for (const md of mds) {
        const mdRef = { namespace: ref.namespace, name: md.metadata.name ?? "" };
        rolled.push(await wait(async () => (await api.listMachineDeployments(ref.namespace, ref.name)).find((m) => m.metadata.name === mdRef.name) ?? md,
          (m) => machineDeploymentRolloutState(m, "v1beta2", m.metadata.generation ?? 0), 0, `MachineDeployment ${mdRef.namespace}/${mdRef.name}`));
      }
      emit("rollout-done", `${what}: KubeadmControlPlane and ${mds.length} MachineDeployment(s) rolled out`);
      if (spec.shape === "files" && planned) await verifyFiles(api, kcp, rolled, planned);
      emit("verified", `${what}: the KCP and every MachineDeployment's bootstrap template carry our entries`);
      // Only now no machine can still be bootstrapping from an older Secret.
      pruned = await prune(api, first, action === "write" ? planned : undefined);
    }
    const ownership = planned?.ownership ?? previous ?? { variable: spec.variable, shape: spec.shape, bundleHash: "" };
    return { generation: r.value, written, attempts: r.attempts, conflicts: r.conflicts, ownership, pruned };
  } finally {
    emit("released", await releaseLease(lease));
  }
}

/** Done once TopologyReconciled is True for `generation` of the Cluster. */
function topologyReconciled(cluster: KcpObject, generation: number): RolloutState {
  const conditions = ((cluster.status as { conditions?: Array<{ type: string; status: string; reason?: string; message?: string; observedGeneration?: number }> } | undefined)?.conditions) ?? [];
  const c = conditions.find((x) => x.type === "TopologyReconciled");
  if (!c) return { done: false, summary: "TopologyReconciled not reported yet" };
  const observed = c.observedGeneration ?? 0;
  if (observed < generation) return { done: false, summary: `TopologyReconciled observed generation ${observed} < ${generation}` };
  return { done: c.status === "True", summary: `TopologyReconciled ${c.status} (${c.reason ?? ""}): ${c.message ?? ""}`.trim() };
}

async function putSecret(api: TopologyApi, cluster: KcpObject, secret: NonNullable<VariablePlan["secret"]>, emit: (p: TopologyPhase, m: string) => void): Promise<void> {
  const ref = { namespace: cluster.metadata.namespace ?? "", name: secret.name };
  if (!secret.shared) {
    await ensureSecret(api, cluster, { name: secret.name, key: secret.key, data: secret.data }, secretLabelsOf(cluster.metadata.name ?? ""));
    emit("secret", `Secret ${ref.namespace}/${ref.name} holds the bundle`);
    return;
  }
  const encoded = Buffer.from(secret.data, "utf8").toString("base64");
  try {
    const existing = await api.getSecret(ref);
    if (!existing) {
      await api.createSecret({ metadata: { name: secret.name, namespace: ref.namespace }, type: "Opaque", data: { [secret.key]: encoded } });
    } else if (existing.data?.[secret.key] !== encoded) {
      // A merge patch of one key: the other keys of the shared Secret are someone else's.
      await api.patchSecretData(ref, { [secret.key]: encoded });
    }
  } catch (e) {
    throw refuseForbidden(e, `put key ${secret.key} into Secret ${ref.namespace}/${ref.name}`, "get/create/patch on secrets and get/patch on clusters.cluster.x-k8s.io");
  }
  emit("secret", `Secret ${ref.namespace}/${ref.name} key ${secret.key} holds the bundle`);
}

/** After the rollout: our entries must be in the KCP and in the bootstrap template of every MachineDeployment. */
async function verifyFiles(api: TopologyApi, kcp: KcpObject, mds: KcpObject[], planned: VariablePlan): Promise<void> {
  const ours = (planned.value as FileEntry[]).filter((f) => f.contentFrom?.secret.name === planned.ownership.secret || f.path.endsWith("/hosts.toml"));
  const missing = (files: FileEntry[] | undefined) => ours.filter((o) => !(files ?? []).some((f) => canonicalJson(f) === canonicalJson(o))).map((o) => o.path);
  const problems: string[] = [];
  const onKcp = missing(kcp.spec?.kubeadmConfigSpec?.files as FileEntry[] | undefined);
  if (onKcp.length) problems.push(`KubeadmControlPlane ${kcp.metadata.name} lacks ${onKcp.join(", ")}`);
  for (const md of mds) {
    const name = ((md.spec?.template as { spec?: { bootstrap?: { configRef?: { name?: string } } } } | undefined)?.spec?.bootstrap?.configRef?.name) ?? "";
    const t = await api.getTemplate({ namespace: md.metadata.namespace ?? "", name });
    const lacks = missing((t?.spec?.template as { spec?: { files?: FileEntry[] } } | undefined)?.spec?.files);
    if (lacks.length) problems.push(`KubeadmConfigTemplate ${name} of MachineDeployment ${md.metadata.name} lacks ${lacks.join(", ")}`);
  }
  if (problems.length) {
    throw kcpError("TOPOLOGY_VARIABLE", `after the rollout ${problems.join("; ")}: the class does not patch variable ${planned.ownership.variable} into every template; ` +
      "the platform owner must add the missing patch (docs/rotation.md, \"ClusterClass-managed clusters\")");
  }
}

async function prune(api: TopologyApi, cluster: KcpObject, keep: VariablePlan | undefined): Promise<string[]> {
  const namespace = cluster.metadata.namespace ?? "";
  const name = cluster.metadata.name ?? "";
  const pruned: string[] = [];
  try {
    const selector = Object.entries(secretLabelsOf(name)).map(([k, v]) => `${k}=${v}`).join(",");
    for (const s of await api.listSecrets(namespace, selector)) {
      if (s.metadata.name && s.metadata.name !== keep?.secret?.name) {
        await api.deleteSecret({ namespace, name: s.metadata.name });
        pruned.push(s.metadata.name);
      }
    }
    const shared = keep?.secret?.shared ? keep.secret.name : undefined;
    const tkg = shared ? await api.getSecret({ namespace, name: shared }) : undefined;
    const stale = Object.keys(tkg?.data ?? {}).filter((k) => k.startsWith(TKG_KEY_PREFIX) && k !== keep?.secret?.key);
    if (shared && stale.length) {
      await api.patchSecretData({ namespace, name: shared }, Object.fromEntries(stale.map((k) => [k, null])));
      pruned.push(...stale.map((k) => `${shared}/${k}`));
    }
  } catch (e) {
    throw refuseForbidden(e, `delete old registry-trust Secrets of Cluster ${namespace}/${name}`);
  }
  return pruned;
}
