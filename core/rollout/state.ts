import { createHash } from "node:crypto";
import { RolloutPlan } from "./plan";

/*
 * The --resume state: which stacks are done and where the last run stopped. Written after every phase
 * (atomically, by the caller), so a killed run resumes as well as a failed one. It is bound to the rollout
 * file's content: a changed list of stacks or gates is a new rollout, not a resumption.
 */

export const PHASES = ["preview", "up", "inspect", "doctor", "clusters"] as const;
export type Phase = (typeof PHASES)[number];
export const GATES: readonly Phase[] = ["inspect", "doctor", "clusters"];

export interface GateFailure {
  readonly stack: string;
  readonly phase: Phase;
  /** What failed: a resource URN, an endpoint, a node, a KCP/MachineDeployment. */
  readonly object: string;
  readonly message: string;
  readonly fix: string;
}

export interface RolloutState {
  readonly version: 1;
  readonly file: string;
  readonly fileSha256: string;
  readonly startedAt: string;
  /** Stacks that passed every gate, in order. */
  readonly done: readonly string[];
  /** The stack being worked on and its last finished phase. */
  readonly current?: { readonly stack: string; readonly phase?: Phase };
  readonly failures?: readonly GateFailure[];
}

export class ResumeError extends Error {}

export const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

export function newState(plan: RolloutPlan, fileText: string, now: Date): RolloutState {
  return { version: 1, file: plan.file, fileSha256: sha256(fileText), startedAt: now.toISOString(), done: [] };
}

/** Parses a state file's text; undefined for a file that is not ours. */
export function parseState(text: string): RolloutState | undefined {
  try {
    const s = JSON.parse(text) as RolloutState;
    return s && s.version === 1 && Array.isArray(s.done) && typeof s.fileSha256 === "string" ? s : undefined;
  } catch {
    return undefined;
  }
}

export interface StartPoint {
  /** Index in plan.stacks to start at. */
  readonly index: number;
  /**
   * Skip preview and up of that stack: it stopped at a gate, after its `up`. Gates are all run again (a
   * fix for one may have been made anywhere). A stack that stopped in preview or up starts over with its
   * preview: the fix may have been a config change, which only a new preview and up apply.
   */
  readonly gatesOnly: boolean;
}

/**
 * Where a run starts. Without --resume: the beginning, unless a previous run stopped midway (then the
 * operator must choose: resume, or remove the state file). With --resume: after the last done stack.
 */
export function startPoint(plan: RolloutPlan, fileText: string, state: RolloutState | undefined, resume: boolean): StartPoint {
  const unfinished = state && state.done.length < plan.stacks.length && state.current !== undefined;
  if (!resume) {
    if (unfinished && state.fileSha256 === sha256(fileText)) {
      throw new ResumeError(
        `a rollout of ${plan.file} stopped at stack "${state.current!.stack}" (${plan.stateFile}); ` +
          `run again with --resume to continue from there, or remove ${plan.stateFile} to start over`,
      );
    }
    return { index: 0, gatesOnly: false };
  }
  if (!state) throw new ResumeError(`--resume: no rollout state in ${plan.stateFile}; run without --resume to start the rollout`);
  if (state.fileSha256 !== sha256(fileText)) {
    throw new ResumeError(`--resume: ${plan.file} changed since the rollout in ${plan.stateFile} started; a changed list of stacks or gates is a new rollout: remove ${plan.stateFile} and run without --resume`);
  }
  const names = plan.stacks.map((s) => s.name);
  state.done.forEach((d, i) => {
    if (names[i] !== d) throw new ResumeError(`--resume: ${plan.stateFile} says "${d}" is done as stack ${i + 1}, but ${plan.file} has "${names[i]}" there; remove ${plan.stateFile} and start over`);
  });
  const index = state.done.length;
  const phase = state.current?.stack === names[index] ? state.current.phase : undefined;
  const failedAtGate = (state.failures ?? []).some((f) => f.stack === names[index] && GATES.includes(f.phase));
  // "up" finished (current.phase = up or a gate) or a gate failed: the stack's up is done.
  const upDone = phase !== undefined && phase !== "preview";
  return { index, gatesOnly: failedAtGate || upDone };
}
