import { KCP_VERSIONS, KcpApi, KcpObject, KcpVersion, ObjectRef } from "./api";
import { apiMessage, httpStatus, kcpError, refuseForbidden } from "./errors";
import { acquireLease, HeldLease, LeaseOptions } from "./lease";
import { Desired, desiredEntries, NOTHING, Ownership, planMerge, readOwnership, secretLabels, SecretPlan, TrustSpec, verifyEntries } from "./plan";
import { waitForRollout } from "./rollout";

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
  readonly conflict?: {
    /** Give up retrying 409s after this long. @default 60000 */
    readonly deadlineMs?: number;
    /** @default 50 */
    readonly baseDelayMs?: number;
    /** @default 1000 */
    readonly maxDelayMs?: number;
  };
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  const what = `controlplane.cluster.x-k8s.io (KubeadmControlPlane)`;
  if (served.length === 0) {
    throw kcpError("VERSION_NOT_SERVED", `the apiserver does not serve ${what}: Cluster API is not installed in this cluster (check kubeconfig and context)`);
  }
  if (target.apiVersion) {
    if (!served.includes(target.apiVersion)) {
      throw kcpError("VERSION_NOT_SERVED", `${what} ${target.apiVersion} is not served by this apiserver (served: ${served.join(", ")}); set apiVersion to one of those`);
    }
    return target.apiVersion;
  }
  const supported = [...KCP_VERSIONS].reverse().find((v) => served.includes(v));
  if (!supported) {
    throw kcpError("VERSION_NOT_SERVED", `this apiserver serves ${what} only as ${served.join(", ")}; registry-trust supports ${KCP_VERSIONS.join(", ")}`);
  }
  return supported;
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

  let lease: HeldLease;
  try {
    lease = await acquireLease(api, target, { ...opts.lease, holder: opts.holder, onWait: (m) => emit("lease-wait", m) });
  } catch (e) {
    throw refuseForbidden(e, `take the Lease for ${what}`);
  }
  emit("lease-acquired", `Lease ${lease.ref.namespace}/${lease.ref.name} acquired`);
  try {
    if (desired.secret) await ensureSecret(api, first, desired.secret);
    const write = await writeWithRetry(api, target, version, desired, opts, lease, emit);
    const rollout = opts.rollout ?? {};
    if (rollout.wait ?? true) {
      await waitForRollout(() => readKcp(api, target, version), version, write.generation, {
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
    await lease.release();
    emit("released", `Lease ${lease.ref.namespace}/${lease.ref.name} released`);
  }
}

async function writeWithRetry(
  api: KcpApi, target: Target, version: KcpVersion, desired: Desired, opts: SequencerOptions, lease: HeldLease,
  emit: (phase: Phase, message: string) => void,
): Promise<{ generation: number; written: boolean; attempts: number; conflicts: number }> {
  const what = `KubeadmControlPlane ${target.namespace}/${target.name}`;
  const deadlineMs = opts.conflict?.deadlineMs ?? 60_000;
  const base = opts.conflict?.baseDelayMs ?? 50;
  const max = opts.conflict?.maxDelayMs ?? 1_000;
  const started = Date.now();
  let attempts = 0;
  let conflicts = 0;
  let written = false;
  for (;;) {
    lease.check();
    attempts++;
    const kcp = await readKcp(api, target, version);
    const plan = planMerge(kcp, desired, { version, adopt: opts.adopt, rolloutAfter: opts.rolloutAfter });
    let problem: string;
    try {
      let generation = kcp.metadata.generation ?? 0;
      if (plan.update) {
        generation = (await api.replaceKcp(target, version, plan.update)).metadata.generation ?? 0;
        written = true;
        emit("written", `${what} updated to generation ${generation} (attempt ${attempts})`);
      } else {
        emit("unchanged", `${what} already carries exactly our entries`);
      }
      const mismatch = verifyEntries(await readKcp(api, target, version), desired, readOwnership(kcp));
      if (!mismatch) {
        emit("verified", `read back ${what}: our entries are exactly what was written`);
        return { generation, written, attempts, conflicts };
      }
      problem = `read back after the write: ${mismatch} (another writer changed them)`;
    } catch (e) {
      const status = httpStatus(e);
      if (status === 403) throw refuseForbidden(e, `update ${what}`);
      if (status !== 409) throw status ? new Error(`the apiserver refused the update of ${what} (HTTP ${status}): ${apiMessage(e)}`) : e;
      problem = apiMessage(e);
    }
    conflicts++;
    const delay = Math.min(max, base * 2 ** Math.min(conflicts - 1, 20)) * (0.5 + Math.random() / 2);
    emit("conflict", `attempt ${attempts}: ${problem}; retrying in ${Math.round(delay)} ms`);
    if (Date.now() + delay - started > deadlineMs) {
      throw kcpError("CONFLICT_DEADLINE", `gave up writing registry-trust entries to ${what} after ${attempts} attempts in ` +
        `${((Date.now() - started) / 1000).toFixed(1)} s (deadline ${deadlineMs / 1000} s); last conflict: ${problem}`);
    }
    await sleep(delay);
  }
}

function secretKey(s: SecretPlan): string {
  return `${s.name}/${s.key}`;
}

/** Creates the content-addressed Secret, owned by the KCP (deleted with it); an existing one must match. */
async function ensureSecret(api: KcpApi, kcp: KcpObject, secret: SecretPlan): Promise<void> {
  const namespace = kcp.metadata.namespace ?? "";
  const ref = { namespace, name: secret.name };
  const encoded = Buffer.from(secret.data, "utf8").toString("base64");
  const check = async () => {
    const existing = await api.getSecret(ref);
    if (existing && existing.data?.[secret.key] !== encoded) {
      throw kcpError("SECRET_CONFLICT", `Secret ${namespace}/${secretKey(secret)} exists with other content; registry-trust names its Secrets ` +
        "after the bundle's hash and never rewrites them: delete that Secret if it was made by hand");
    }
    return existing !== undefined;
  };
  try {
    if (await check()) return;
    await api.createSecret({
      metadata: {
        name: secret.name, namespace, labels: secretLabels(kcp.metadata.name ?? ""),
        ownerReferences: [{ apiVersion: kcp.apiVersion, kind: "KubeadmControlPlane", name: kcp.metadata.name, uid: kcp.metadata.uid }],
      },
      type: "Opaque",
      data: { [secret.key]: encoded },
    }).catch((e) => {
      if (httpStatus(e) !== 409) throw e;
    });
    if (!(await check())) throw new Error(`Secret ${namespace}/${secret.name} was created but cannot be read back`);
  } catch (e) {
    throw refuseForbidden(e, `create Secret ${namespace}/${secret.name}`);
  }
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
