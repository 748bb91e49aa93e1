import { apiMessage, httpStatus, kcpError, KCP_GRANTS, refuseForbidden } from "./errors";

/*
 * The write loop shared by the KCP sequencer and core/workers: read → plan → update with the
 * resourceVersion read → read back, repeated on conflict. client-go's RetryOnConflict window (~50 ms) is
 * far too short against a busy controller, so the backoff is exponential with jitter (writers that
 * collided do not collide again in step), capped per wait and bounded by an overall deadline.
 */

export interface ConflictPolicy {
  /** Give up retrying 409s after this long. @default 60000 */
  readonly deadlineMs?: number;
  /** @default 50 */
  readonly baseDelayMs?: number;
  /** @default 1000 */
  readonly maxDelayMs?: number;
}

/** One attempt's outcome: done, or another writer got in between (seen on read-back). A 409 is thrown. */
export type Attempt<T> = { readonly done: T } | { readonly conflict: string };

export interface RetryHooks {
  /** Called before each attempt; throws to abort (e.g. the lease was lost). */
  readonly check?: () => void;
  /** Called with one line per conflict, before the backoff. */
  readonly onConflict?: (message: string) => void;
  /** Permissions named when the update is forbidden. @default the KCP sequencer's */
  readonly grants?: string;
}

export interface RetryResult<T> {
  readonly value: T;
  readonly attempts: number;
  readonly conflicts: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `attempt` until it is done; `what` names the object updated, in errors. */
export async function retryOnConflict<T>(what: string, policy: ConflictPolicy, attempt: (n: number) => Promise<Attempt<T>>, hooks: RetryHooks = {}): Promise<RetryResult<T>> {
  const deadlineMs = policy.deadlineMs ?? 60_000;
  const base = policy.baseDelayMs ?? 50;
  const max = policy.maxDelayMs ?? 1_000;
  const started = Date.now();
  let attempts = 0;
  let conflicts = 0;
  for (;;) {
    hooks.check?.();
    attempts++;
    let problem: string;
    try {
      const outcome = await attempt(attempts);
      if ("done" in outcome) return { value: outcome.done, attempts, conflicts };
      problem = outcome.conflict;
    } catch (e) {
      const status = httpStatus(e);
      if (status === 403) throw refuseForbidden(e, `update ${what}`, hooks.grants ?? KCP_GRANTS);
      if (status !== 409) throw status ? new Error(`the apiserver refused the update of ${what} (HTTP ${status}): ${apiMessage(e)}`) : e;
      problem = apiMessage(e);
    }
    conflicts++;
    const delay = Math.min(max, base * 2 ** Math.min(conflicts - 1, 20)) * (0.5 + Math.random() / 2);
    hooks.onConflict?.(`attempt ${attempts}: ${problem}; retrying in ${Math.round(delay)} ms`);
    if (Date.now() + delay - started > deadlineMs) {
      throw kcpError("CONFLICT_DEADLINE", `gave up writing registry-trust entries to ${what} after ${attempts} attempts in ` +
        `${((Date.now() - started) / 1000).toFixed(1)} s (deadline ${deadlineMs / 1000} s); last conflict: ${problem}`);
    }
    await sleep(delay);
  }
}
