import { GateFailure, Phase } from "./state";

/*
 * What a rollout prints: one progress line per phase start and end (elapsed since the rollout started,
 * stack, phase, outcome), and at a stop the report naming stack, gate, object and fix. --json prints the
 * same events as JSON lines, then one summary document.
 */

export type EventStatus = "start" | "ok" | "fail" | "skip" | "info";

export interface RolloutEvent {
  /** Milliseconds since the rollout started. */
  readonly elapsedMs: number;
  readonly stack: string;
  readonly phase: Phase | "rollout";
  readonly status: EventStatus;
  readonly message: string;
}

export function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function progressLine(e: RolloutEvent): string {
  return `[${clock(e.elapsedMs)}] ${e.stack.padEnd(12)} ${e.phase.padEnd(8)} ${e.status.padEnd(5)} ${e.message}`;
}

export interface RolloutSummary {
  readonly ok: boolean;
  readonly file: string;
  readonly stateFile: string;
  readonly done: readonly string[];
  readonly remaining: readonly string[];
  readonly failures: readonly GateFailure[];
  readonly elapsedMs: number;
}

export function summaryText(s: RolloutSummary): string {
  if (s.ok) return `rollout done: ${s.done.join(" → ")} in ${clock(s.elapsedMs)}\n`;
  const f = s.failures[0];
  const lines = [
    `rollout STOPPED at stack "${f.stack}", ${f.phase === "preview" || f.phase === "up" ? "phase" : "gate"} ${f.phase}` +
      ` (done: ${s.done.join(", ") || "none"}; not started: ${s.remaining.filter((r) => r !== f.stack).join(", ") || "none"})`,
  ];
  for (const x of s.failures) {
    lines.push(`  object: ${x.object}`, `  what:   ${x.message}`, `  fix:    ${x.fix}`);
  }
  lines.push(`then: registry-trust rollout --file ${s.file} --resume   (state: ${s.stateFile})`);
  return `${lines.join("\n")}\n`;
}
