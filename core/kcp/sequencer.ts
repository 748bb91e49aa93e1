import { KcpApi, KcpObject, KcpVersion, ObjectRef, pickVersion } from "./api";
import { httpStatus, kcpError, refuseForbidden } from "./errors";
import { acquireLease, HeldLease, LeaseOptions, releaseLease } from "./lease";
import { Desired, desiredEntries, NOTHING, Ownership, planMerge, readOwnership, secretLabels, TrustSpec, verifyEntries } from "./plan";
import { ensureSecret } from "./secret";
import { Attempt, ConflictPolicy, retryOnConflict } from "./retry";
import { rolloutState, waitForRollout } from "./rollout";
import { refuseTopologyOwned } from "../topology/ownership";

/*
 * Writes our trust entries into one KubeadmControlPlane so that no update can be lost (the first incident):
 * lease → read → plan → full update with the resourceVersion read (never server-side apply, never a forced
 * patch: `files` is an atomic list other writers share) → on 409 re-read and re-plan with bounded, jittered
 * exponential backoff under an overall deadline → read back and compare → wait for the rollout while
 * renewing the lease → release.
 */

export interface Target extends ObjectRef {
  /** API version to read and write the KCP in. @default v1beta2 when served, else v1beta1 */
  readonly apiVersion?: KcpVersion;
}

export type Phase =
  | "lease-wait" | "lease-acquired" | "conflict" | "written" | "unchanged" | "verified"
  | "rollout" | "rollout-done" | "released";

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

  let lease: HeldLease;
  try {
    lease = await acquireLease(api, target, { ...opts.lease, holder: opts.holder, onWait: (m) => emit("lease-wait", m) });
  } catch (e) {
    throw refuseForbidden(e, `take the Lease for ${what}`);
  }
  emit("lease-acquired", `Lease ${lease.ref.namespace}/${lease.ref.name} acquired`);
  try {
    if (desired.secret) await ensureSecret(api, first, desired.secret, secretLabels(target.name));
    const write = await writeWithRetry(api, target, version, desired, opts, lease, emit);
    const rollout = opts.rollout ?? {};
    if (rollout.wait ?? true) {
      await waitForRollout(() => readKcp(api, target, version), (kcp) => rolloutState(kcp, version, write.generation), write.generation, {
        timeoutMs: rollout.timeoutMs ?? 1_800_000,
        pollMs: rollout.pollMs ?? 2_000,
        what,
        check: () => lease.check(),
        onProgress: (s) => emit("rollout", s),
      });
      emit("rollout-done", `${what} rolled out generation ${write.generation}`);
      // Only now no machine can still be bootstrapping from an older Secret.
      await pruneSecrets(api, target, desired.secret?.name);
    }
    return { version, ...write, ownership: desired.ownership };
  } finally {
    emit("released", await releaseLease(lease));
  }
}

async function writeWithRetry(
  api: KcpApi, target: Target, version: KcpVersion, desired: Desired, opts: SequencerOptions, lease: HeldLease,
  emit: (phase: Phase, message: string) => void,
): Promise<{ generation: number; written: boolean; attempts: number; conflicts: number }> {
  const what = `KubeadmControlPlane ${target.namespace}/${target.name}`;
  let written = false;
  const r = await retryOnConflict(what, opts.conflict ?? {}, async (attempt): Promise<Attempt<number>> => {
    const kcp = await readKcp(api, target, version);
    const plan = planMerge(kcp, desired, { version, adopt: opts.adopt, rolloutAfter: opts.rolloutAfter });
    let generation = kcp.metadata.generation ?? 0;
    if (plan.update) {
      generation = (await api.replaceKcp(target, version, plan.update)).metadata.generation ?? 0;
      written = true;
      emit("written", `${what} updated to generation ${generation} (attempt ${attempt})`);
    } else {
      emit("unchanged", `${what} already carries exactly our entries`);
    }
    const mismatch = verifyEntries(await readKcp(api, target, version), desired, readOwnership(kcp));
    if (mismatch) return { conflict: `read back after the write: ${mismatch} (another writer changed them)` };
    emit("verified", `read back ${what}: our entries are exactly what was written`);
    return { done: generation };
  }, { check: () => lease.check(), onConflict: (m) => emit("conflict", m) });
  return { generation: r.value, written, attempts: r.attempts, conflicts: r.conflicts };
}

async function pruneSecrets(api: KcpApi, target: Target, keep: string | undefined): Promise<void> {
  try {
    const selector = Object.entries(secretLabels(target.name)).map(([k, v]) => `${k}=${v}`).join(",");
    for (const s of await api.listSecrets(target.namespace, selector)) {
      if (s.metadata.name && s.metadata.name !== keep) await api.deleteSecret({ namespace: target.namespace, name: s.metadata.name });
    }
  } catch (e) {
    throw refuseForbidden(e, `delete old registry-trust Secrets of ${target.namespace}/${target.name}`);
  }
}
