import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { REPO } from "./stack-files";

export interface ProgramOutcome {
  readonly resources: { type: string; name: string }[];
  readonly outputs: string[];
  readonly errors: string[];
}

/** Runs PROGRAM (a .ts module) under Pulumi mocks in a child process with the given stack config. */
export function runProgram(program: string, config: Record<string, string>, secretKeys: string[] = [], env: Record<string, string> = {}): ProgramOutcome {
  const tsx = join(REPO, "node_modules", "tsx", "dist", "cli.mjs");
  const args = [tsx, join(REPO, "test", "support", "mock-program.ts"), program];
  let out: string;
  try {
    out = execFileSync(process.execPath, args, { cwd: REPO, encoding: "utf8", env: { ...process.env, ...env, MOCK_CONFIG: JSON.stringify({ config, secretKeys }) } });
  } catch (e) {
    // A failed program can leave registrations pending, which the SDK's exit-time leak check turns into
    // exit code 1 after the outcome was printed: the printed outcome is the result, the exit code is not.
    out = String((e as { stdout?: string }).stdout ?? "");
    if (!out.trim()) throw e;
  }
  return JSON.parse(out.trim().split("\n").pop()!);
}
