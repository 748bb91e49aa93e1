import { KcpApi, KcpObject, KcpVersion, ObjectRef, pickVersion } from "./api";
import { httpStatus, kcpError, refuseForbidden } from "./errors";
import { checkFence, FenceView, readRecord, RecordRef } from "./fence";
import { acquireLease, HeldLease, LeaseOptions, releaseLease } from "./lease";
import { describeOwners } from "./managed-fields";
import { allOwnerships, Desired, desiredEntries, NOTHING, Ownership, ownershipKey, planMerge, readOwnership, secretLabels, TrustSpec, verifyEntries } from "./plan";
import { ensureSecret } from "./secret";
import { Attempt, ConflictPolicy, retryOnConflict } from "./retry";
import { rolloutState, waitForRollout } from "./rollout";
import { refuseTopologyOwned } from "../topology/ownership";

/*
 * Writes our trust entries into one KubeadmControlPlane so that no update can be lost (the first incident):
 * lease → fence (core/kcp/fence.ts: nothing newer became live while we waited) → read → plan → full update
 * with the resourceVersion read (never server-side apply, never a forced patch: `files` is an atomic list
 * other writers share) → on 409 re-read and re-plan with bounded, jittered exponential backoff under an
 * overall deadline → read back and compare → wait for the rollout while renewing the lease → read again and
 * verify our entries survived it (a revert names the field manager that owns the field now) → release.
 */

export interface Target extends ObjectRef {
  /** API version to read and write the KCP in. @default v1beta2 when served, else v1beta1 */
  readonly apiVersion?: KcpVersion;
}

export type Phase =
  | "lease-wait" | "lease-acquired" | "conflict" | "written" | "unchanged" | "verified"
  | "rollout" | "rollout-done" | "released";

/** The field paths (managedFields) of our entries on a KCP or KubeadmConfigTemplate, by what verifyEntries found differing. */
export function revertedField(mismatch: string, configPath: readonly string[], owner?: string): string[] {
  if (mismatch.startsWith("preKubeadmCommands")) return [...configPath, "f:preKubeadmCommands"];
  if (mismatch.startsWith("annotation")) return ["f:metadata", "f:annotations", `f:${ownershipKey(owner)}`];
  return [...configPath, "f:files"];
}

export interface SequencerEvent {
  /** Epoch ms. */
  readonly at: number;
  readonly holder: string;
  readonly phase: Phase;
  readonly message: string;
}

export interface SequencerOptions {
  /** Lease holder identity: stack + run id. */
  readonly holder: string;
  /** Whose entries these are (project/stack): other owners' entries on the object are kept. @default the unnamed owner */
  readonly owner?: string;
  /** The stack's rotation record, re-read by the fence once the Lease is held. @default none read */
  readonly record?: RecordRef;
  /** Take over files at our paths that registry-trust did not write. @default false */
  readonly adopt?: boolean;
  /** RFC 3339 time: force a rollout of machines created before it. @default none */
  readonly rolloutAfter?: string;
  readonly lease?: Omit<LeaseOptions, "holder" | "onWait">;
  readonly conflict?: ConflictPolicy;
  readonly rollout?: {
    /** Wait until the control plane has rolled out our change. @default true */
    readonly wait?: boolean;
    /** @default 1800000 (30 min) */
    readonly timeoutMs?: number;
    /** @default 2000 */
    readonly pollMs?: number;
  };
  /** Timeline and progress messages. */
  readonly onEvent?: (e: SequencerEvent) => void;
}

export interface SequencerResult {
  readonly version: KcpVersion;
  /** metadata.generation the rollout was awaited for. */
  readonly generation: number;
  /** False when our entries were already exactly as desired. */
  readonly written: boolean;
  readonly attempts: number;
  readonly conflicts: number;
  readonly ownership: Ownership;
}


/**
 * Writes the bundle (and hosts.toml per endpoint) into the KCP and waits for the rollout. The bundle must
 * have been validated (refuseInvalidBundle, core/kcp/apply.ts). This module stays free of the x509 parser
 * because the dynamic provider serializes it: Pulumi's closure serializer reaches pvtsutils' Convert class
 * through the parser and calls its static toString() (meant for buffers) as if it were Function#toString.
 */
export function writeControlPlaneTrust(api: KcpApi, target: Target, trust: TrustSpec, opts: SequencerOptions): Promise<SequencerResult> {
  return sequence(api, target, desiredEntries(target.name, trust), opts);
}

/** Removes every entry registry-trust owns from the KCP (and its Secrets), keeping everyone else's. */
export function removeControlPlaneTrust(api: KcpApi, target: Target, opts: SequencerOptions): Promise<SequencerResult> {
  return sequence(api, target, NOTHING, opts);
}

/** What is live on the KCP for `owner`, and how it differs from `trust` (undefined when exactly as desired). */
export interface LiveTrust {
  readonly version: KcpVersion;
  readonly ownership: Ownership;
  readonly drift?: string;
}

/**
 * Reads the KCP and compares our entries with what `trust` plans, without writing: a file someone removed
 * or changed, a command gone, our record edited. The dynamic provider's read and diff use it, so that
 * `pulumi refresh` and `pulumi preview` show what changed behind the stack's back.
 */
export async function inspectControlPlaneTrust(api: KcpApi, target: Target, trust: TrustSpec, owner?: string): Promise<LiveTrust> {
  const version = await resolveVersion(api, target);
  const kcp = await readKcp(api, target, version);
  const drift = verifyEntries(kcp, desiredEntries(target.name, trust), NOTHING.ownership, owner);
  return { version, ownership: readOwnership(kcp, owner), ...(drift ? { drift: `KubeadmControlPlane ${target.namespace}/${target.name}: ${drift}` } : {}) };
}

async function resolveVersion(api: KcpApi, target: Target): Promise<KcpVersion> {
  const served = await api.servedKcpVersions().catch((e) => {
    throw refuseForbidden(e, "discover the served API versions");
  });
  return pickVersion(served, target.apiVersion, "controlplane.cluster.x-k8s.io (KubeadmControlPlane)");
}

async function readKcp(api: KcpApi, target: Target, version: KcpVersion): Promise<KcpObject> {
  try {
    return await api.getKcp(target, version);
  } catch (e) {
    if (httpStatus(e) === 404) {
      throw kcpError("KCP_NOT_FOUND", `KubeadmControlPlane ${target.namespace}/${target.name} not found (${version}); check the name, namespace and kubeconfig context`);
    }
    throw refuseForbidden(e, `read KubeadmControlPlane ${target.namespace}/${target.name}`);
  }
}

async function sequence(api: KcpApi, target: Target, desired: Desired, opts: SequencerOptions): Promise<SequencerResult> {
  const emit = (phase: Phase, message: string) => opts.onEvent?.({ at: Date.now(), holder: opts.holder, phase, message });
  const what = `KubeadmControlPlane ${target.namespace}/${target.name}`;
  const version = await resolveVersion(api, target);
  const first = await readKcp(api, target, version);
  if (desired !== NOTHING) refuseTopologyOwned("KubeadmControlPlane", first);
  const before: FenceView = { live: readOwnership(first, opts.owner), record: await readRecord(api, opts.record) };

  let lease: HeldLease;
  let waited = false;
  try {
    lease = await acquireLease(api, target, { ...opts.lease, holder: opts.holder, onWait: (m) => {
      waited = true;
      emit("lease-wait", m);
    } });
  } catch (e) {
    throw refuseForbidden(e, `take the Lease for ${what}`);
  }
  emit("lease-acquired", `Lease ${lease.ref.namespace}/${lease.ref.name} acquired`);
  try {
    const held = await readKcp(api, target, version);
    checkFence(what, before, { live: readOwnership(held, opts.owner), record: await readRecord(api, opts.record) }, desired.ownership, { waited, recordRef: opts.record });
    if (desired.secret) await ensureSecret(api, first, desired.secret, secretLabels(target.name));
    const write = await writeWithRetry(api, target, version, desired, opts, lease, emit);
    const rollout = opts.rollout ?? {};
    if (rollout.wait ?? true) {
      // What rolls out may no longer be what we wrote: another writer (GitOps, a platform controller, the
      // topology controller) can put the KCP back while machines roll, and machines made from then on lack
      // the CA. Checked on every poll (a revert stops the wait at once) and on a read after it.
      const refuseReverted = (kcp: KcpObject, when: string) => {
        const reverted = verifyEntries(kcp, desired, write.previous, opts.owner);
        if (!reverted) return;
        throw kcpError("ENTRIES_REVERTED", `${what}: ${when} of generation ${write.generation} our entries are no longer what was written (${reverted}); ` +
          `${describeOwners(kcp, revertedField(reverted, ["f:spec", "f:kubeadmConfigSpec"], opts.owner))}. New control-plane machines will not trust the registry. ` +
          "Stop that writer from reverting the entries (a Cluster with spec.topology: use the ClusterClass variable route, docs/cluster-api.md), then run again.");
      };
      const poll = async () => {
        const kcp = await readKcp(api, target, version);
        refuseReverted(kcp, "during the rollout");
        return kcp;
      };
      await waitForRollout(poll, (kcp) => rolloutState(kcp, version, write.generation), write.generation, {
        timeoutMs: rollout.timeoutMs ?? 1_800_000,
        pollMs: rollout.pollMs ?? 2_000,
        what,
        check: () => lease.check(),
        onProgress: (s) => emit("rollout", s),
      });
      emit("rollout-done", `${what} rolled out generation ${write.generation}`);
      const final = await readKcp(api, target, version);
      refuseReverted(final, "after the rollout");
      // Only now no machine can still be bootstrapping from an older Secret; every owner's current Secret stays.
      await pruneSecrets(api, target, [...allOwnerships(final).values()].map((o) => o.secret).filter((s): s is string => !!s));
    }
    const { previous: _, ...counts } = write;
    return { version, ...counts, ownership: desired.ownership };
  } finally {
    emit("released", await releaseLease(lease));
  }
}

async function writeWithRetry(
  api: KcpApi, target: Target, version: KcpVersion, desired: Desired, opts: SequencerOptions, lease: HeldLease,
  emit: (phase: Phase, message: string) => void,
): Promise<{ generation: number; written: boolean; attempts: number; conflicts: number; previous: Ownership }> {
  const what = `KubeadmControlPlane ${target.namespace}/${target.name}`;
  let written = false;
  let previous: Ownership = NOTHING.ownership;
  const r = await retryOnConflict(what, opts.conflict ?? {}, async (attempt): Promise<Attempt<number>> => {
    const kcp = await readKcp(api, target, version);
    const plan = planMerge(kcp, desired, { version, adopt: opts.adopt, rolloutAfter: opts.rolloutAfter, owner: opts.owner });
    let generation = kcp.metadata.generation ?? 0;
    if (plan.update) {
      generation = (await api.replaceKcp(target, version, plan.update)).metadata.generation ?? 0;
      written = true;
      emit("written", `${what} updated to generation ${generation} (attempt ${attempt})`);
    } else {
      emit("unchanged", `${what} already carries exactly our entries`);
    }
    previous = allOwnerships(kcp).get(ownershipKey(opts.owner)) ?? NOTHING.ownership;
    const mismatch = verifyEntries(await readKcp(api, target, version), desired, previous, opts.owner);
    if (mismatch) return { conflict: `read back after the write: ${mismatch} (another writer changed them)` };
    emit("verified", `read back ${what}: our entries are exactly what was written`);
    return { done: generation };
  }, { check: () => lease.check(), onConflict: (m) => emit("conflict", m) });
  return { generation: r.value, written, attempts: r.attempts, conflicts: r.conflicts, previous };
}

async function pruneSecrets(api: KcpApi, target: Target, keep: readonly string[]): Promise<void> {
  try {
    const selector = Object.entries(secretLabels(target.name)).map(([k, v]) => `${k}=${v}`).join(",");
    for (const s of await api.listSecrets(target.namespace, selector)) {
      if (s.metadata.name && !keep.includes(s.metadata.name)) await api.deleteSecret({ namespace: target.namespace, name: s.metadata.name });
    }
  } catch (e) {
    throw refuseForbidden(e, `delete old registry-trust Secrets of ${target.namespace}/${target.name}`);
  }
}
