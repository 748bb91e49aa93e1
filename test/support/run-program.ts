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
  const out = execFileSync(process.execPath, [tsx, join(REPO, "test", "support", "mock-program.ts"), program], {
    cwd: REPO,
    encoding: "utf8",
    env: { ...process.env, ...env, MOCK_CONFIG: JSON.stringify({ config, secretKeys }) },
  });
  return JSON.parse(out.trim().split("\n").pop()!);
}
