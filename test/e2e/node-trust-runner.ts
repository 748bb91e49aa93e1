/**
 * `pulumi up` of a NodeTrust inline program in a process of its own. When a program fails on its own side
 * (the SSH pre-check rejects the Output every Command's connection waits for), the Pulumi SDK leaves each of
 * those registrations as a rejected promise: the engine reports the failure properly, but inside jest the
 * rejections land in whatever test runs next. In this child they are only noted, and the outcome is
 * printed as JSON for the test to assert on.
 */
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { EngineEvent, LocalWorkspace, PulumiCommand } from "@pulumi/pulumi/automation";
import { NodeTrust, NodeTrustArgs } from "../../components/node-trust";
import type { Engine } from "./engine";

export interface RunnerOutcome {
  /** The error `up` failed with, or undefined when it succeeded. */
  readonly error?: string;
  /** Step ops the engine started for remote Commands (create, update, ...), `same` left out. */
  readonly attempted: string[];
}

interface Spec {
  readonly binDir: string;
  readonly env: Record<string, string>;
  readonly home: string;
  readonly project: string;
  readonly stack: string;
  readonly args: NodeTrustArgs;
}

const REPO = path.resolve(__dirname, "..", "..");

/** Runs the up in a child process (environment: this process's plus engine.env) and returns its outcome. */
export function runNodeTrustUp(engine: Engine, project: string, stack: string, args: NodeTrustArgs): RunnerOutcome {
  const spec: Spec = { binDir: engine.binDir, env: engine.env, home: engine.home, project, stack, args };
  const out = execFileSync(process.execPath, [path.join(REPO, "node_modules", "tsx", "dist", "cli.mjs"), __filename], {
    cwd: REPO,
    encoding: "utf8",
    env: { ...process.env, RT_NODE_TRUST_RUNNER: JSON.stringify(spec) },
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(out.trim().split("\n").pop()!) as RunnerOutcome;
}

async function child(spec: Spec): Promise<RunnerOutcome> {
  process.on("unhandledRejection", () => undefined);
  const command = await PulumiCommand.get({ root: path.dirname(spec.binDir), skipVersionCheck: true });
  const stack = await LocalWorkspace.createOrSelectStack(
    {
      stackName: spec.stack,
      projectName: spec.project,
      program: async () => {
        const trust = new NodeTrust("trust", spec.args);
        return { results: trust.results };
      },
    },
    {
      pulumiCommand: command,
      envVars: spec.env,
      pulumiHome: spec.home,
      projectSettings: { name: spec.project, runtime: "nodejs", backend: { url: spec.env.PULUMI_BACKEND_URL } },
      secretsProvider: "passphrase",
    },
  );
  const events: EngineEvent[] = [];
  const error = await stack.up({ color: "never", onEvent: (e) => events.push(e) }).then(() => undefined, (e: Error) => String(e));
  const attempted = events
    .map((e) => e.resourcePreEvent?.metadata)
    .filter((m) => m?.type === "command:remote:Command" && m.op !== "same")
    .map((m) => String(m!.op));
  return { error, attempted };
}

if (require.main === module) {
  child(JSON.parse(process.env.RT_NODE_TRUST_RUNNER!) as Spec).then(
    (outcome) => {
      console.log(JSON.stringify(outcome));
      process.exit(0);
    },
    (e: Error) => {
      console.log(JSON.stringify({ error: `runner: ${e.stack ?? e.message}`, attempted: [] }));
      process.exit(0);
    },
  );
}
