import { createHash } from "node:crypto";
import { KcpApi, LeaseObject, ObjectRef } from "./api";
import { apiMessage, httpStatus, kcpError, KcpError } from "./errors";

/*
 * One writer per target (a KubeadmControlPlane, or a MachineDeployment for core/workers) at a time: a coordination.k8s.io/v1 Lease, as leader election uses.
 * Expiry is judged like client-go's leader election: by how long *we* have seen the record unchanged, not
 * by comparing its renewTime with our clock, so clock skew between writers cannot cause an early takeover.
 * The price: a lease left by a crashed run is taken over one lease duration after we first see it.
 */

export interface LeaseOptions {
  /** Identity written as holderIdentity: stack + run id. */
  readonly holder: string;
  /** @default 30 */
  readonly durationSeconds?: number;
  /** How long to wait for a live holder before giving up. @default 1,800,000 (30 min: a control-plane rollout) */
  readonly waitTimeoutMs?: number;
  /** Pause between attempts while another holder is live. @default 1000 */
  readonly retryMs?: number;
  readonly onWait?: (message: string) => void;
}

/** The Lease calls only, so that core/workers can hold Leases through its own API. */
export type LeaseApi = Pick<KcpApi, "getLease" | "createLease" | "replaceLease" | "deleteLease">;

/** Kinds we take Leases for, with the prefix of their Lease names: a KCP and a MachineDeployment may share a name. */
const LEASE_PREFIX = { KubeadmControlPlane: "registry-trust-kcp-", MachineDeployment: "registry-trust-md-" } as const;
export type LeaseTargetKind = keyof typeof LEASE_PREFIX;

export interface HeldLease {
  readonly ref: ObjectRef;
  /** How long the Lease stays ours without renewal; another holder takes it over after that. */
  readonly durationSeconds: number;
  /** Throws LEASE_LOST once a renewal found the lease taken or expired. */
  check(): void;
  /** Stops renewing and deletes the lease (only our version of it). */
  release(): Promise<void>;
}

/** The Lease guarding one target: in its namespace, named after it. */
export function leaseRef(target: ObjectRef, kind: LeaseTargetKind = "KubeadmControlPlane"): ObjectRef {
  const name = `${LEASE_PREFIX[kind]}${target.name}`;
  if (name.length <= 253) return { namespace: target.namespace, name };
  return { namespace: target.namespace, name: `${LEASE_PREFIX[kind]}${createHash("sha256").update(target.name).digest("hex").slice(0, 32)}` };
}

/** MicroTime as the apiserver parses it: RFC 3339 with exactly six fractional digits. */
export function microTime(ms = Date.now()): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function describeHolder(l: LeaseObject): string {
  const s = l.spec;
  return `"${s.holderIdentity}" (since ${s.acquireTime ?? "unknown"}, last renewed ${s.renewTime ?? "never"}, lease ${s.leaseDurationSeconds ?? "?"} s)`;
}

/**
 * The skew-safe expiry rule, shared with the rotation preflight: a Lease is judged by when *we* first saw
 * its current record (holder, renewTime, resourceVersion), never by its renewTime against our clock.
 */
export interface LeaseSighting {
  readonly key: string;
  /** Epoch ms, our clock, when this record was first seen. */
  readonly at: number;
}

/** The sighting after reading `current`: unchanged record, same sighting; otherwise a new one from now. */
export function sighting(seen: LeaseSighting | undefined, current: LeaseObject, now = Date.now()): LeaseSighting {
  const s = current.spec;
  const key = `${s.holderIdentity}|${s.renewTime}|${current.metadata.resourceVersion}`;
  return seen?.key === key ? seen : { key, at: now };
}

/** Whether the record seen has gone unrenewed for its duration (`fallbackSeconds` when it names none). */
export function unrenewedFor(seen: LeaseSighting, current: LeaseObject, fallbackSeconds: number, now = Date.now()): boolean {
  return now - seen.at >= (current.spec.leaseDurationSeconds ?? fallbackSeconds) * 1000;
}

export type LeaseLiveness = "free" | "live" | "expired";

/**
 * Watches a Lease with the same rule as acquireLease, without taking it: "free" once it is gone or has no
 * holder, "live" as soon as its holder renews it while we watch, "expired" once it has gone unrenewed for
 * its duration as seen by us (a run that died). A live holder renews every third of its duration, so a
 * live answer comes within that; an expired one takes the whole duration, as a takeover would.
 */
export async function leaseLiveness(read: () => Promise<LeaseObject | undefined>, opts: { readonly retryMs?: number } = {}): Promise<{ readonly liveness: LeaseLiveness; readonly lease?: LeaseObject }> {
  let seen: LeaseSighting | undefined;
  for (;;) {
    const current = await read();
    if (!current || !current.spec.holderIdentity) return { liveness: "free", lease: current };
    const next = sighting(seen, current);
    if (seen && next !== seen) return { liveness: "live", lease: current };
    seen = next;
    if (unrenewedFor(seen, current, 30)) return { liveness: "expired", lease: current };
    await sleep(opts.retryMs ?? 1_000);
  }
}

export async function acquireLease(api: LeaseApi, target: ObjectRef, opts: LeaseOptions, kind: LeaseTargetKind = "KubeadmControlPlane"): Promise<HeldLease> {
  const ref = leaseRef(target, kind);
  const duration = opts.durationSeconds ?? 30;
  const deadline = Date.now() + (opts.waitTimeoutMs ?? 1_800_000);
  const retryMs = opts.retryMs ?? 1_000;
  const ours = (l: Pick<LeaseObject, "metadata">, transitions: number): LeaseObject => {
    const now = microTime();
    return {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { ...l.metadata, name: ref.name, namespace: ref.namespace },
      spec: { holderIdentity: opts.holder, leaseDurationSeconds: duration, acquireTime: now, renewTime: now, leaseTransitions: transitions },
    };
  };

  let seen: LeaseSighting | undefined;
  let lease: LeaseObject | undefined;
  while (!lease) {
    const current = await api.getLease(ref);
    try {
      if (!current) {
        lease = await api.createLease(ours({ metadata: {} }, 0));
        break;
      }
      const s = current.spec;
      seen = sighting(seen, current);
      const free = !s.holderIdentity || s.holderIdentity === opts.holder;
      if (free || unrenewedFor(seen, current, duration)) {
        const transitions = (s.leaseTransitions ?? 0) + (s.holderIdentity === opts.holder ? 0 : 1);
        lease = await api.replaceLease(ours({ metadata: current.metadata }, transitions));
        break;
      }
      if (Date.now() >= deadline) {
        throw kcpError("LEASE_HELD", `${kind} ${target.namespace}/${target.name} is being changed by ${describeHolder(current)}: ` +
          `waited ${Math.round((opts.waitTimeoutMs ?? 1_800_000) / 1000)} s for Lease ${ref.namespace}/${ref.name}. ` +
          "Let that run finish; if it died, its lease is taken over once it has not been renewed for its duration.");
      }
      opts.onWait?.(`waiting for Lease ${ref.namespace}/${ref.name} held by ${describeHolder(current)}`);
    } catch (e) {
      // Someone else created or took the lease between our read and write: look again.
      if (httpStatus(e) !== 409) throw e;
    }
    await sleep(Math.min(retryMs, Math.max(deadline - Date.now(), 0)));
  }

  let held: LeaseObject = lease;
  let lost: KcpError | undefined;
  let stopped = false;
  const renewEveryMs = (duration * 1000) / 3;
  let lastRenewed = Date.now();
  const renew = async () => {
    try {
      held = await api.replaceLease({ ...held, spec: { ...held.spec, renewTime: microTime() } });
      lastRenewed = Date.now();
    } catch (e) {
      const now = await api.getLease(ref).catch(() => undefined);
      if (now && now.spec.holderIdentity !== opts.holder) {
        lost = kcpError("LEASE_LOST", `Lease ${ref.namespace}/${ref.name} was taken over by ${describeHolder(now)} while we held it`);
      } else if (now) {
        held = now;
      } else if (httpStatus(e) === 404 || Date.now() - lastRenewed >= duration * 1000) {
        lost = kcpError("LEASE_LOST", `could not renew Lease ${ref.namespace}/${ref.name} within its ${duration} s: ${apiMessage(e)}. ` +
          "Stopped before another writer could take over; rerun once the apiserver answers (the Lease frees itself when unrenewed for its duration)");
      }
    }
  };
  let wake = () => {};
  const loop = (async () => {
    while (!stopped && !lost) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, renewEveryMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (!stopped) await renew();
    }
  })();

  return {
    ref,
    durationSeconds: duration,
    check() {
      if (lost) throw lost;
    },
    async release() {
      stopped = true;
      wake();
      await loop;
      if (lost) return;
      try {
        await api.deleteLease(ref, held.metadata.resourceVersion ?? "");
      } catch (e) {
        // Already gone or changed under us: either way it is no longer ours to delete.
        if (httpStatus(e) !== 404 && httpStatus(e) !== 409) throw e;
      }
    },
  };
}

/**
 * Releases the lease and says how that went. A failed release (e.g. the apiserver unreachable) is reported,
 * never thrown: it must not replace the run's own outcome, and the Lease frees itself once unrenewed for
 * its duration.
 */
export async function releaseLease(lease: HeldLease): Promise<string> {
  const name = `Lease ${lease.ref.namespace}/${lease.ref.name}`;
  try {
    lease.check();
  } catch {
    await lease.release();
    return `${name} was lost while held and is left as it is; it frees itself once unrenewed for ${lease.durationSeconds} s`;
  }
  try {
    await lease.release();
    return `${name} released`;
  } catch (e) {
    return `${name} could not be deleted (${apiMessage(e)}); another run takes it over once it has gone unrenewed for ${lease.durationSeconds} s`;
  }
}
