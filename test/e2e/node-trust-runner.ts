/**
 * `pulumi up` of a NodeTrust program directory (programs/node-trust), run as the CLI runs any program: the
 * language host starts it in its own process. A run that fails on the program's side (the SSH pre-check
 * rejects the Output every Command's connection waits for) leaves those registrations pending; a program
 * process then logs the error and exits, but an Automation API *inline* program would keep its server, and
 * so the `up`, waiting for them forever. Each call uses its own stack and removes it afterwards.
 */
import * as path from "node:path";
import { EngineEvent, LocalWorkspace } from "@pulumi/pulumi/automation";
import { NodeTrustArgs } from "../../components/node-trust";
import type { Engine } from "./engine";

export interface RunnerOutcome {
  /** The error `up` failed with, or undefined when it succeeded. */
  readonly error?: string;
  /** Step ops the engine started for remote Commands (create, update, ...), `same` left out. */
  readonly attempted: string[];
}

const PROGRAM = path.join(__dirname, "programs", "node-trust");

export async function runNodeTrustUp(engine: Engine, stackName: string, args: NodeTrustArgs): Promise<RunnerOutcome> {
  const stack = await LocalWorkspace.createOrSelectStack(
    { stackName, workDir: PROGRAM },
    {
      pulumiCommand: engine.command,
      // The program is type-checked by the repo's tsc; here it only runs.
      envVars: { ...engine.env, RT_NODE_TRUST_ARGS: JSON.stringify(args), PULUMI_NODEJS_TRANSPILE_ONLY: "true" },
      pulumiHome: engine.home,
      secretsProvider: "passphrase",
    },
  );
  const events: EngineEvent[] = [];
  try {
    const error = await stack.up({ color: "never", onEvent: (e) => events.push(e) }).then(() => undefined, (e: Error) => String(e));
    const attempted = events
      .map((e) => e.resourcePreEvent?.metadata)
      .filter((m) => m?.type === "command:remote:Command" && m.op !== "same")
      .map((m) => String(m!.op));
    return { error, attempted };
  } finally {
    await stack.destroy({ color: "never" });
    await stack.workspace.removeStack(stackName);
  }
}
