import { setTimeout as sleep } from "node:timers/promises";
import { ObjectRef, pickVersion } from "../kcp/api";
import { httpStatus, kcpError, refuseForbidden } from "../kcp/errors";
import { acquireLease, HeldLease, LeaseOptions, releaseLease } from "../kcp/lease";
import { checkFence, FenceView, readRecord, RecordRef } from "../kcp/fence";
import { describeOwners } from "../kcp/managed-fields";
import { canonicalJson, Desired, desiredEntries, FileEntry, NOTHING, Ownership, readOwnership, TrustSpec, verifyEntries } from "../kcp/plan";
import { Attempt, ConflictPolicy, retryOnConflict } from "../kcp/retry";
import { waitForRollout } from "../kcp/rollout";
import { ensureSecret } from "../kcp/secret";
import { Phase, revertedField, SequencerOptions } from "../kcp/sequencer";
import { CapiVersion, KubeObject, MD_GROUP, WorkerApi } from "./api";
import { bootstrapTemplateOf, machineDeploymentRolloutState, oldSetsAwaitingCleanup } from "./rollout";
import { BASE_ANNOTATION, configRefName, disambiguated, isOurs, labelSelector, ownershipRecords, planTemplate, repointed, templateLabels } from "./template";
import { refuseTopologyOwned } from "../topology/ownership";

/*
 * Puts our trust entries into the bootstrap template of one MachineDeployment, so that every machine it
 * creates from now on (rollouts, the cluster autoscaler) trusts the registry: lease on the MachineDeployment
 * → read it and the KubeadmConfigTemplate it names → create a copy with our entries (content-addressed
 * name) → repoint configRef.name with the resourceVersion read, 409s retried like the KCP sequencer's →
 * read back → wait for the rollout → delete our templates no MachineDeployment names any more, and our
 * Secrets no template of ours names. A bundle too large for a file's inline content goes to a Secret
 * (contentFrom), as for a KCP (core/kcp/plan.ts decides), owned by the MachineDeployment.
 */

export interface WorkerTarget extends ObjectRef {
  /** Cluster API version to use. @default v1beta2 when served, else v1beta1 */
  readonly apiVersion?: CapiVersion;
}

export type WorkerPhase = Phase | "template-created" | "pruned";

export interface WorkerEvent {
  /** Epoch ms. */
  readonly at: number;
  readonly holder: string;
  readonly phase: WorkerPhase;
  readonly message: string;
}

export interface WorkerOptions {
  /** Lease holder identity: stack + run id. */
  readonly holder: string;
  /** Whose entries these are (project/stack): other owners' entries in the template are kept. @default the unnamed owner */
  readonly owner?: string;
  /** The stack's rotation record, re-read by the fence once the Lease is held (core/kcp/fence.ts). @default none read */
  readonly record?: RecordRef;
  /** Take over files at our paths that registry-trust did not write. @default false */
  readonly adopt?: boolean;
  readonly lease?: Omit<LeaseOptions, "holder" | "onWait">;
  readonly conflict?: ConflictPolicy;
  /** As the KCP sequencer's; our unreferenced templates are deleted only once the rollout was awaited. */
  readonly rollout?: SequencerOptions["rollout"];
  readonly onEvent?: (e: WorkerEvent) => void;
}

export interface WorkerResult {
  readonly version: CapiVersion;
  /** The template the MachineDeployment names now, and the one it named before. */
  readonly template: string;
  readonly previousTemplate: string;
  /** metadata.generation of the MachineDeployment naming `template`. */
  readonly generation: number;
  /** False when the MachineDeployment already named the right template. */
  readonly written: boolean;
  readonly attempts: number;
  readonly conflicts: number;
  /** Our templates deleted because no MachineDeployment names them. */
  readonly pruned: string[];
  readonly ownership: Ownership;
}

/** The permissions named in FORBIDDEN errors. */
export const WORKER_GRANTS = "get/list/update on machinedeployments.cluster.x-k8s.io, list on machinesets and machines.cluster.x-k8s.io, " +
  "get/list/create/delete on kubeadmconfigtemplates.bootstrap.cluster.x-k8s.io, get/create/update/delete on leases.coordination.k8s.io, " +
  "get/list/create/delete on secrets and get on configmaps";

/**
 * Writes the bundle (and hosts.toml per endpoint) into the MachineDeployment's bootstrap template. The
 * bundle must have been validated (core/kcp/apply.ts refuseInvalidBundle; kept out of here for the same
 * serialization reason as the KCP sequencer).
 */
export function writeWorkerTrust(api: WorkerApi, target: WorkerTarget, trust: TrustSpec, opts: WorkerOptions): Promise<WorkerResult> {
  return sequence(api, target, desiredEntries(target.name, trust, "md-ca"), opts);
}

/**
 * Reads the MachineDeployment and the template it names and compares our entries there with what `trust`
 * plans, without writing (the dynamic provider's read and diff): repointed elsewhere, or a file removed.
 */
export async function inspectWorkerTrust(api: WorkerApi, target: WorkerTarget, trust: TrustSpec, owner?: string): Promise<{ version: CapiVersion; template: string; ownership: Ownership; drift?: string }> {
  const version = pickVersion(await api.servedVersions(MD_GROUP), target.apiVersion, `${MD_GROUP} (MachineDeployment)`);
  const md = await readMd(api, target, version);
  const template = configRefName(md);
  const t = await readTemplate(api, { namespace: target.namespace, name: template }, version);
  const what = `MachineDeployment ${target.namespace}/${target.name} (KubeadmConfigTemplate ${template})`;
  if (!t) return { version, template, ownership: NOTHING.ownership, drift: `${what}: the template does not exist` };
  const drift = verifyEntries(t, desiredEntries(target.name, trust, "md-ca"), NOTHING.ownership, owner);
  return { version, template, ownership: readOwnership(t, owner), ...(drift ? { drift: `${what}: ${drift}` } : {}) };
}

/** Points the MachineDeployment back at a template without our entries (its base when unchanged). */
export function removeWorkerTrust(api: WorkerApi, target: WorkerTarget, opts: WorkerOptions): Promise<WorkerResult> {
  return sequence(api, target, NOTHING, opts);
}

function refuse(e: unknown, attempted: string): unknown {
  return refuseForbidden(e, attempted, WORKER_GRANTS);
}

async function readMd(api: WorkerApi, target: WorkerTarget, version: CapiVersion): Promise<KubeObject> {
  try {
    return await api.getMachineDeployment(target, version);
  } catch (e) {
    if (httpStatus(e) === 404) {
      throw kcpError("MACHINE_DEPLOYMENT_NOT_FOUND", `MachineDeployment ${target.namespace}/${target.name} not found (${version}); check the name, namespace and kubeconfig context`);
    }
    throw refuse(e, `read MachineDeployment ${target.namespace}/${target.name}`);
  }
}

async function readTemplate(api: WorkerApi, ref: ObjectRef, version: CapiVersion): Promise<KubeObject | undefined> {
  try {
    return await api.getTemplate(ref, version);
  } catch (e) {
    throw refuse(e, `read KubeadmConfigTemplate ${ref.namespace}/${ref.name}`);
  }
}

/**
 * Creates the template unless it exists; an existing one must have the content its name stands for. One
 * with that content but other owners recorded (another stack made the very same template) is "taken": the
 * caller picks another name, or our ownership would go unrecorded.
 */
async function ensureTemplate(api: WorkerApi, body: KubeObject, version: CapiVersion): Promise<boolean | "taken"> {
  const ref = { namespace: body.metadata.namespace ?? "", name: body.metadata.name ?? "" };
  const what = `KubeadmConfigTemplate ${ref.namespace}/${ref.name}`;
  const same = (t: KubeObject) => canonicalJson(t.spec) === canonicalJson(body.spec);
  const existing = await readTemplate(api, ref, version);
  if (existing && same(existing) && canonicalJson(ownershipRecords(existing)) !== canonicalJson(ownershipRecords(body))) return "taken";
  if (!existing) {
    try {
      await api.createTemplate(body, version);
    } catch (e) {
      // A concurrent create of the same name is checked like an existing one below; a 409 must not reach the retry loop as a conflict.
      if (httpStatus(e) !== 409) throw refuse(e, `create ${what}`);
    }
  }
  const now = await readTemplate(api, ref, version);
  if (!now) throw new Error(`${what} was created but cannot be read back`);
  if (!same(now)) {
    throw kcpError("TEMPLATE_CONFLICT", `${what} exists with other content than registry-trust derives for this name; ` +
      "registry-trust names its templates after their content and never rewrites them: delete it if it was made by hand");
  }
  return !existing;
}

/**
 * Our templates of this MachineDeployment that nothing creates machines from: no MachineDeployment names
 * them and no MachineSet does. A MachineSet still naming one (an old revision scaling down, a rollback
 * through an older MachineSet, a MachineSet made by hand from a copy) needs it for every machine it still
 * creates; deleting it would leave those machines without bootstrap data.
 */
export function unreferencedTemplates(ours: readonly KubeObject[], machineDeployments: readonly KubeObject[], machineSets: readonly KubeObject[], mdName: string): KubeObject[] {
  const referenced = new Set<string>();
  for (const md of machineDeployments) {
    try {
      referenced.add(configRefName(md));
    } catch {
      // A MachineDeployment bootstrapping otherwise names none of ours.
    }
  }
  for (const set of machineSets) {
    const name = bootstrapTemplateOf(set);
    if (name) referenced.add(name);
  }
  return ours.filter((t) => !referenced.has(t.metadata.name ?? "") && isOurs(t, mdName));
}

async function prune(api: WorkerApi, target: WorkerTarget, version: CapiVersion): Promise<string[]> {
  try {
    const mds = await api.listMachineDeployments(target.namespace, version);
    const sets = await api.listMachineSets(target.namespace, version, "");
    const ours = await api.listTemplates(target.namespace, version, labelSelector(templateLabels(target.name)));
    const pruned: string[] = [];
    for (const t of unreferencedTemplates(ours, mds, sets, target.name)) {
      const name = t.metadata.name ?? "";
      try {
        await api.deleteTemplate({ namespace: target.namespace, name }, version, t.metadata.resourceVersion ?? "");
        pruned.push(name);
      } catch (e) {
        // Changed since listed: someone else uses it now, leave it.
        if (httpStatus(e) !== 409) throw e;
      }
    }
    return pruned;
  } catch (e) {
    throw refuse(e, `delete unreferenced registry-trust KubeadmConfigTemplates of ${target.namespace}/${target.name}`);
  }
}

/** How long, after the rollout, to wait for the controller to delete the old MachineSets it scaled to zero. */
const CLEANUP_WAIT_MS = 60_000;

/**
 * Waits, bounded, until the MachineDeployment controller has deleted the old MachineSets it scaled to
 * zero (rollout.ts, oldSetsAwaitingCleanup): until then they name the old template, which prune must keep.
 * A Cluster API that retains them for rollbacks never deletes them; the run then goes on, keeps that
 * template, and a later run prunes it once the MachineSet is gone.
 */
async function awaitCleanup(api: WorkerApi, target: WorkerTarget, version: CapiVersion, template: string, selector: string,
  pollMs: number, emit: (phase: WorkerPhase, message: string) => void, check: () => void): Promise<void> {
  const deadline = Date.now() + CLEANUP_WAIT_MS;
  let last = "";
  for (;;) {
    check();
    const waiting = oldSetsAwaitingCleanup(await api.listMachineSets(target.namespace, version, selector), template).map((s) => s.metadata.name).sort().join(", ");
    if (!waiting) return;
    if (waiting !== last) emit("rollout", `waiting for the controller to delete old MachineSets scaled to zero: ${waiting}`);
    last = waiting;
    if (Date.now() >= deadline) {
      emit("rollout", `old MachineSets ${waiting} still exist after ${CLEANUP_WAIT_MS / 1000} s (kept for rollback?); the templates they name are kept until they are gone`);
      return;
    }
    await sleep(Math.min(pollMs, Math.max(deadline - Date.now(), 0)));
  }
}

/** Deletes our Secrets of this MachineDeployment that none of our remaining templates takes content from. */
async function pruneSecrets(api: WorkerApi, target: WorkerTarget, version: CapiVersion): Promise<string[]> {
  const selector = labelSelector(templateLabels(target.name));
  try {
    const named = new Set<string>();
    for (const t of await api.listTemplates(target.namespace, version, selector)) {
      const files = ((t.spec?.template as { spec?: { files?: FileEntry[] } } | undefined)?.spec?.files ?? []);
      for (const f of files) if (f.contentFrom) named.add(f.contentFrom.secret.name);
    }
    const pruned: string[] = [];
    for (const s of await api.listSecrets(target.namespace, selector)) {
      const name = s.metadata.name ?? "";
      if (named.has(name)) continue;
      await api.deleteSecret({ namespace: target.namespace, name });
      pruned.push(name);
    }
    return pruned;
  } catch (e) {
    throw refuse(e, `delete unreferenced registry-trust Secrets of ${target.namespace}/${target.name}`);
  }
}

/**
 * After the rollout: the MachineDeployment must still name our template and the template still carry our
 * entries. Another writer (GitOps, a platform controller, the topology controller) may have put either back
 * while machines rolled; the error names the field manager that owns the field now.
 */
const REVERT_ADVICE = "New worker machines will not trust the registry. Stop that writer from reverting it (a Cluster with spec.topology: use the ClusterClass variable route, docs/cluster-api.md), then run again.";

/** `md`, unless it no longer names `template`: then ENTRIES_REVERTED naming who owns configRef now. */
function refuseRepointed(md: KubeObject, template: string, generation: number, when: string): KubeObject {
  const named = configRefName(md);
  if (named === template) return md;
  throw kcpError("ENTRIES_REVERTED", `MachineDeployment ${md.metadata.namespace}/${md.metadata.name}: ${when} of generation ${generation} it names KubeadmConfigTemplate ${named}, ` +
    `not ${template} which carries our entries; ${describeOwners(md, ["f:spec", "f:template", "f:spec", "f:bootstrap", "f:configRef", "f:name"])}. ${REVERT_ADVICE}`);
}

async function verifyAfterRollout(api: WorkerApi, target: WorkerTarget, version: CapiVersion, md: KubeObject, template: string, generation: number, desired: Desired, owner?: string): Promise<void> {
  const what = `MachineDeployment ${target.namespace}/${target.name}`;
  const advice = REVERT_ADVICE;
  refuseRepointed(md, template, generation, "after the rollout");
  const t = await readTemplate(api, { namespace: target.namespace, name: template }, version);
  const mismatch = t ? verifyEntries(t, desired, NOTHING.ownership, owner) : "it is gone";
  if (mismatch) {
    throw kcpError("ENTRIES_REVERTED", `${what}: after the rollout of generation ${generation} KubeadmConfigTemplate ${target.namespace}/${template} no longer carries what was written (${mismatch}); ` +
      `${t ? describeOwners(t, revertedField(mismatch, ["f:spec", "f:template", "f:spec"], owner)) : "it was deleted"}. ${advice}`);
  }
}

async function sequence(api: WorkerApi, target: WorkerTarget, desired: Desired, opts: WorkerOptions): Promise<WorkerResult> {
  const emit = (phase: WorkerPhase, message: string) => opts.onEvent?.({ at: Date.now(), holder: opts.holder, phase, message });
  const what = `MachineDeployment ${target.namespace}/${target.name}`;
  const served = await api.servedVersions(MD_GROUP).catch((e) => {
    throw refuse(e, "discover the served API versions");
  });
  const version = pickVersion(served, target.apiVersion, `${MD_GROUP} (MachineDeployment)`);
  // Refused before a Lease is created for something that does not exist.
  const first = await readMd(api, target, version);
  if (desired !== NOTHING) refuseTopologyOwned("MachineDeployment", first);
  const fenceView = async (md: KubeObject): Promise<FenceView> => {
    const t = await readTemplate(api, { namespace: target.namespace, name: configRefName(md) }, version);
    return { live: t ? readOwnership(t, opts.owner) : NOTHING.ownership, record: await readRecord(api, opts.record) };
  };
  const before = await fenceView(first);

  let lease: HeldLease;
  let waited = false;
  try {
    lease = await acquireLease(api, target, { ...opts.lease, holder: opts.holder, onWait: (m) => {
      waited = true;
      emit("lease-wait", m);
    } }, "MachineDeployment");
  } catch (e) {
    throw refuse(e, `take the Lease for ${what}`);
  }
  emit("lease-acquired", `Lease ${lease.ref.namespace}/${lease.ref.name} acquired`);
  try {
    checkFence(what, before, await fenceView(await readMd(api, target, version)), desired.ownership, { waited, recordRef: opts.record });
    // Before any template names it: a machine created from the template must find it.
    if (desired.secret) await ensureSecret(api, first, desired.secret, templateLabels(target.name), WORKER_GRANTS);
    let previous: string | undefined;
    let written = false;
    const r = await retryOnConflict(what, opts.conflict ?? {}, async (attempt): Promise<Attempt<{ generation: number; template: string }>> => {
      const md = await readMd(api, target, version);
      const currentName = configRefName(md);
      previous ??= currentName;
      const current = await readTemplate(api, { namespace: target.namespace, name: currentName }, version);
      if (!current) {
        throw kcpError("TEMPLATE_NOT_FOUND", `${what} names KubeadmConfigTemplate ${target.namespace}/${currentName}, which does not exist; ` +
          "fix spec.template.spec.bootstrap.configRef first");
      }
      const baseName = isOurs(current, target.name) ? current.metadata.annotations?.[BASE_ANNOTATION] : undefined;
      const base = baseName ? await readTemplate(api, { namespace: target.namespace, name: baseName }, version) : undefined;
      let plan = planTemplate(current, base, target.name, desired, { version, adopt: opts.adopt, owner: opts.owner });
      let created = plan.create ? await ensureTemplate(api, plan.create, version) : false;
      if (created === "taken" && plan.create) {
        const create = disambiguated(plan.create, plan.base, target.name);
        plan = { ...plan, name: create.metadata.name ?? "", create };
        created = await ensureTemplate(api, create, version);
        if (created === "taken") throw kcpError("TEMPLATE_CONFLICT", `KubeadmConfigTemplate ${target.namespace}/${plan.name} exists with other owners recorded than registry-trust derives for this name: delete it if it was made by hand`);
      }
      if (created) emit("template-created", `KubeadmConfigTemplate ${target.namespace}/${plan.name} created from ${currentName}`);
      const update = repointed(md, plan.name);
      let generation = md.metadata.generation ?? 0;
      if (update) {
        generation = (await api.replaceMachineDeployment(target, version, update)).metadata.generation ?? 0;
        written = true;
        emit("written", `${what} now names ${plan.name} (generation ${generation}, attempt ${attempt})`);
      } else {
        emit("unchanged", `${what} already names ${plan.name}`);
      }
      const named = configRefName(await readMd(api, target, version));
      if (named !== plan.name) return { conflict: `read back after the write: configRef names ${named}, not ${plan.name} (another writer changed it)` };
      emit("verified", `read back ${what}: it names ${plan.name}`);
      return { done: { generation, template: plan.name } };
    }, { check: () => lease.check(), onConflict: (m) => emit("conflict", m), grants: WORKER_GRANTS });

    const { generation, template } = r.value;
    let pruned: string[] = [];
    const rollout = opts.rollout ?? {};
    if (rollout.wait ?? true) {
      const selector = `cluster.x-k8s.io/deployment-name=${target.name}`;
      // Repointed elsewhere while machines roll (GitOps, a platform controller, the topology controller):
      // the wait stops at once rather than wait for machines from our template that will never come.
      const read = async () => ({
        md: refuseRepointed(await readMd(api, target, version), template, generation, "during the rollout"),
        sets: await api.listMachineSets(target.namespace, version, selector),
        machines: await api.listMachines(target.namespace, version, selector),
      });
      await waitForRollout(read, ({ md, sets, machines }) => machineDeploymentRolloutState(md, version, generation, { template, sets, machines }), generation, {
        timeoutMs: rollout.timeoutMs ?? 1_800_000,
        pollMs: rollout.pollMs ?? 2_000,
        what,
        check: () => lease.check(),
        onProgress: (s) => emit("rollout", s),
      });
      emit("rollout-done", `${what} rolled out generation ${generation}`);
      await verifyAfterRollout(api, target, version, await readMd(api, target, version), template, generation, desired, opts.owner);
      // Only now no MachineSet of the MachineDeployment still creates machines from an older template.
      await awaitCleanup(api, target, version, template, selector, rollout.pollMs ?? 2_000, emit, () => lease.check());
      pruned = await prune(api, target, version);
      if (pruned.length > 0) emit("pruned", `deleted KubeadmConfigTemplates no MachineDeployment names: ${pruned.join(", ")}`);
      const secrets = await pruneSecrets(api, target, version);
      if (secrets.length > 0) emit("pruned", `deleted Secrets no registry-trust template takes content from: ${secrets.join(", ")}`);
    }
    return { version, template, previousTemplate: previous ?? template, generation, written, attempts: r.attempts, conflicts: r.conflicts, pruned, ownership: desired.ownership };
  } finally {
    emit("released", await releaseLease(lease));
  }
}
