import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { ConfigError } from "../core/config/issues";
import { DriftChange, fileDrift, findingDrift } from "../core/rollout/drift";
import { RolloutFileError, parseRolloutFile } from "../core/rollout/plan";
import { UsageError, one, parseArgs } from "./args";
import { Io } from "./io";
import { SshFiles, probeNode, selectStack, stackContext } from "./rollout";

export const DRIFT_USAGE = "registry-trust drift [--file rollout.yaml | --stack NAME… [--project DIR]] [--json]";

/*
 * The scheduled drift check: doctor's read-only probe on EVERY node of each stack (no sample, no CRI pull:
 * nothing is written on a node), compared with what the stack installed (core/rollout/drift.ts). Exit 1
 * naming each node and what changed; 0 when every node still has exactly the stack's trust files and
 * doctor finds nothing wrong; 2 for usage errors and nodes that cannot be reached. docs/pipelines.md says
 * why this, and not resources that read node state on refresh.
 */
export async function drift(argv: readonly string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { values: ["--file", "--project"], repeatable: ["--stack"], booleans: ["--json"] });
  if (p.positional.length > 0) throw new UsageError(`unexpected argument "${p.positional[0]}"`);
  const named = p.flags.get("--stack") ?? [];
  const fileFlag = one(p, "--file");
  if (named.length && fileFlag) throw new UsageError("give either --file or --stack, not both");
  let project = resolve(one(p, "--project") ?? ".");
  let stacks = named;
  if (!named.length) {
    const file = resolve(fileFlag ?? "rollout.yaml");
    if (!existsSync(file)) throw new UsageError(`--file "${file}": no such file; give the rollout file, or the stacks with --stack`);
    try {
      const plan = parseRolloutFile(readFileSync(file, "utf8"), file);
      project = plan.project;
      stacks = plan.stacks.map((s) => s.name);
    } catch (e) {
      if (e instanceof RolloutFileError) throw new UsageError(e.message);
      throw e;
    }
  } else if (one(p, "--project") === undefined && !existsSync(resolve(project, "Pulumi.yaml"))) {
    throw new UsageError(`no Pulumi.yaml in ${project}; run from the project directory or give --project DIR`);
  }

  const changes: DriftChange[] = [];
  const unreachable: string[] = [];
  let checked = 0;
  for (const name of stacks) {
    let ctx;
    try {
      ctx = await stackContext(await selectStack(name, project), project);
    } catch (e) {
      io.err(`registry-trust drift: stack ${name}: ${e instanceof ConfigError ? e.message : (e as Error).message}\n`);
      return 2;
    }
    if (!ctx.bundlePem) {
      io.err(`registry-trust drift: stack ${name} has no bundlePem output: run \`pulumi up\` for it first\n`);
      return 2;
    }
    const ssh = new SshFiles(ctx);
    try {
      for (const node of ctx.config.nodes) {
        checked++;
        const before = changes.length;
        for (let r = 0; r < ctx.config.registries.length; r++) {
          const { probe, dump } = await probeNode(node, ctx, ssh, r);
          if (probe.error !== undefined || !dump || !probe.report) {
            unreachable.push(`${name}/${node.name}: ${probe.error}`);
            break;
          }
          if (r === 0) changes.push(...fileDrift({ node: `${name}/${node.name}`, runtimes: node.runtimes, registries: ctx.config.registries, bundlePem: ctx.bundlePem }, dump));
          changes.push(...findingDrift(`${name}/${node.name}`, probe.report));
        }
        if (!p.booleans.has("--json")) io.out(`${changes.length > before ? "DRIFT" : "ok   "} ${name}/${node.name}\n`);
      }
    } finally {
      ssh.remove();
    }
  }
  const ok = changes.length === 0 && unreachable.length === 0;
  if (p.booleans.has("--json")) {
    io.out(`${JSON.stringify({ ok, nodes: checked, changes, unreachable }, null, 2)}\n`);
  } else {
    for (const c of changes) io.out(`DRIFT ${c.node}: ${c.kind} ${c.what}: ${c.detail}\n      Fix: ${c.fix}\n`);
    for (const u of unreachable) io.out(`UNREACHABLE ${u}\n`);
    io.out(ok ? `no drift on ${checked} node(s)\n` : `${changes.length} change(s) on ${new Set(changes.map((c) => c.node)).size} node(s)${unreachable.length ? `, ${unreachable.length} node(s) not reached` : ""}\n`);
  }
  return unreachable.length ? 2 : ok ? 0 : 1;
}
