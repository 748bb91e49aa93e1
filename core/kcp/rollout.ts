import { KcpObject, KcpVersion } from "./api";
import { apiMessage, httpStatus, isKcpError, kcpError } from "./errors";

/*
 * When is a KubeadmControlPlane rollout of our write finished? The controller must have seen our
 * generation, and every machine must be up to date and ready, with the rollout condition settled:
 *   v1beta1: status.updatedReplicas, readyReplicas, condition MachinesSpecUpToDate=True
 *   v1beta2: status.upToDateReplicas, readyReplicas, condition RollingOut=False
 */

export interface RolloutState {
  readonly done: boolean;
  /** One line for progress messages and timeout errors. */
  readonly summary: string;
}

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
}

const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);

/** Replica counts of a KCP or MachineDeployment once its controller has seen `generation`; undefined before. */
export function replicaCounts(o: KcpObject, version: KcpVersion, generation: number): { observed: number; wanted: number; upToDate: number; ready: number; replicas: number } | undefined {
  const status = o.status ?? {};
  const observed = num(status.observedGeneration);
  if (observed === undefined || observed < generation) return undefined;
  return {
    observed,
    wanted: o.spec?.replicas ?? 1,
    // The same count, renamed in v1beta2.
    upToDate: num(version === "v1beta2" ? status.upToDateReplicas : status.updatedReplicas) ?? 0,
    ready: num(status.readyReplicas) ?? 0,
    replicas: num(status.replicas) ?? 0,
  };
}

export function notObserved(o: KcpObject, generation: number): RolloutState {
  return { done: false, summary: `waiting for the controller to observe generation ${generation} (observed: ${num(o.status?.observedGeneration) ?? "none"})` };
}

export function rolloutState(kcp: KcpObject, version: KcpVersion, generation: number): RolloutState {
  const counts = replicaCounts(kcp, version, generation);
  if (!counts) return notObserved(kcp, generation);
  const { observed, wanted, upToDate, ready, replicas } = counts;
  const status = kcp.status ?? {};
  const [type, settled] = version === "v1beta2" ? ["RollingOut", "False"] : ["MachinesSpecUpToDate", "True"];
  const conditions = (Array.isArray(status.conditions) ? status.conditions : []) as Condition[];
  const condition = conditions.find((c) => c.type === type);
  // v1beta2 conditions carry their own observedGeneration: an older one describes an older spec.
  const conditionCurrent = condition !== undefined && (condition.observedGeneration === undefined || condition.observedGeneration >= generation);
  const conditionOk = conditionCurrent && condition?.status === settled;
  const conditionText = condition ? `${type}=${condition.status}${condition.reason ? ` (${condition.reason})` : ""}` : `${type} not reported`;
  const summary = `generation ${observed}: ${upToDate}/${wanted} up to date, ${ready}/${wanted} ready, ${replicas} machines, ${conditionText}`;
  return { done: upToDate === wanted && ready === wanted && replicas === wanted && conditionOk, summary };
}

export interface WaitOptions {
  readonly timeoutMs: number;
  readonly pollMs: number;
  /** Called with each new summary. */
  readonly onProgress?: (summary: string) => void;
  /** Called before each poll; throws to abort (e.g. the lease was lost). */
  readonly check?: () => void;
  readonly what: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A read that may succeed when repeated: the apiserver unreachable (restarting, a network blip: no HTTP
 * status), overloaded (429) or failing (5xx). Our own refusals (not found, forbidden) are final.
 */
export function isTransient(e: unknown): boolean {
  if (isKcpError(e)) return false;
  const status = httpStatus(e);
  return status === undefined || status === 429 || status >= 500;
}

/**
 * Polls `read` until `state` (rolloutState for a KCP, core/workers' for a MachineDeployment) says done.
 * The write is done by then, so a transient read failure (e.g. the apiserver restarting mid-rollout) is
 * reported through onProgress and retried until the deadline rather than failing the run.
 */
export async function waitForRollout<T>(read: () => Promise<T>, state: (object: T) => RolloutState, generation: number, opts: WaitOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let last = "";
  for (;;) {
    opts.check?.();
    let now: RolloutState;
    let object: T | undefined;
    try {
      object = await read();
      now = state(object);
    } catch (e) {
      if (!isTransient(e)) throw e;
      now = { done: false, summary: `cannot read ${opts.what}: ${apiMessage(e)}; retrying until the rollout deadline` };
    }
    if (now.summary !== last) opts.onProgress?.(now.summary);
    last = now.summary;
    if (now.done) return object as T;
    if (Date.now() >= deadline) {
      throw kcpError("ROLLOUT_TIMEOUT", `rollout of ${opts.what} (generation ${generation}) not finished after ${Math.round(opts.timeoutMs / 1000)} s: ${last}. ` +
        `Check the conditions of ${opts.what} and its machines; the trust entries are written and the rollout goes on.`);
    }
    await sleep(Math.min(opts.pollMs, Math.max(deadline - Date.now(), 0)));
  }
}
