import * as pulumi from "@pulumi/pulumi";
import { PrecheckTarget, checkAgentSocket, formatPrecheckFailures, precheckHops } from "../core/ssh/precheck";

/*
 * Wires core/ssh/precheck.ts into a component: an Output that resolves once every directly dialled SSH hop
 * answered with its pinned host key and the agent socket (if any) accepts connections, and fails the
 * component otherwise. Every remote Command of the component takes its host through this Output, so none
 * is registered, in preview or up, before all hops passed: one silent node stops the run before anything
 * runs on the others.
 */

/** Default per-hop deadline of the pre-check, in seconds. */
export const DEFAULT_PRECHECK_SECONDS = 10;

/** Under Pulumi's mocks (unit tests) there is no network to check and no plugin that would dial. */
function underMocks(): boolean {
  const monitor = pulumi.runtime.getMonitor() as object | undefined;
  return monitor?.constructor?.name === "MockMonitor";
}

export interface SshGateArgs {
  /** What the error names the component by, e.g. "NodeTrust nodes". */
  readonly owner: string;
  readonly targets: readonly PrecheckTarget[];
  /** The socket the command plugin will dial: agentSocketPath, else its SSH_AUTH_SOCK (the program's own). */
  readonly agentSocket?: string;
  /** Per-hop deadline; 0 skips the pre-check. */
  readonly seconds: number;
  /** The private key the command plugin logs in with: lets the pre-check reach nodes behind a bastion. */
  readonly privateKey?: pulumi.Input<string>;
}

export function sshGate(args: SshGateArgs, resource: pulumi.Resource): pulumi.Output<true> {
  if (args.seconds <= 0 || args.targets.length === 0 || underMocks()) return pulumi.output(true as const);
  const timeoutMs = args.seconds * 1000;
  const check = async (privateKey?: string): Promise<true> => {
    const [agentProblem, failures] = await Promise.all([
      args.agentSocket ? checkAgentSocket(args.agentSocket, Math.min(timeoutMs, 5000)) : Promise.resolve(undefined),
      precheckHops(args.targets, { timeoutMs, privateKey }),
    ]);
    const lines: string[] = [];
    if (agentProblem) {
      lines.push(`${agentProblem}: the command plugin dials it for every connection, even with sshPrivateKey, and would fail ${args.targets.map((t) => t.name).join(", ")} (and every later delete). ` +
        "Start the agent again and point SSH_AUTH_SOCK at it, or run pulumi without it (env -u SSH_AUTH_SOCK pulumi up) when sshPrivateKey is set");
    }
    if (failures.length > 0) lines.push(formatPrecheckFailures(failures));
    if (lines.length > 0) {
      throw new pulumi.ResourceError(`${args.owner}: SSH pre-check failed (each host within ${args.seconds} s), nothing was run on any host:\n  ${lines.join("\n  ")}`, resource);
    }
    return true;
  };
  if (args.privateKey === undefined || !args.targets.some((t) => t.behind)) return pulumi.output(check());
  // The key stays a secret everywhere else; here it only logs in to bastions, and the gate's value (true)
  // carries nothing of it. The check runs on a plain promise, as above, not inside an apply of the secret,
  // so that a failure reaches the Commands' inputs exactly as it does without a key.
  return pulumi.output(plainValue(args.privateKey).then(check));
}

/** The value of an Input, or undefined when unknown (a preview with a key computed by another resource). */
function plainValue(input: pulumi.Input<string>): Promise<string | undefined> {
  const o = pulumi.output(input);
  return new Promise((resolve) => {
    o.apply((v) => resolve(v));
    // An apply's callback never runs on an unknown value; the Output says so on its isKnown promise.
    (o as unknown as { isKnown: Promise<boolean> }).isKnown.then((known) => known || resolve(undefined), () => resolve(undefined));
  });
}
