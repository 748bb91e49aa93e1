import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type * as K8s from "@kubernetes/client-node";
import { EngineEvent, LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { ConfigError } from "../core/config/issues";
import { NodeConfig, StackConfig } from "../core/config/model";
import { RawConfig } from "../core/config/reader";
import { PROJECT } from "../core/config/schema";
import { parseStackConfig } from "../core/config/validate";
import { DoctorReport, diagnose } from "../core/doctor/analyze";
import { NodeDump } from "../core/doctor/dump";
import { DoctorTarget, SshNode } from "../core/doctor/target";
import { endpointKey } from "../core/endpoint";
import { clientNodeKcpApi, loadKubeConfig, pickVersion } from "../core/kcp/api";
import { rolloutState } from "../core/kcp/rollout";
import { PreviewStep, changeCounts, disallowedChanges } from "../core/rollout/allowed";
import { GateProblem, NodeProbe, RolloutWatch, clusterGate, doctorGate, inspectGate } from "../core/rollout/gates";
import { RolloutFileError, RolloutPlan, RolloutStack, parseRolloutFile } from "../core/rollout/plan";
import { EventStatus, RolloutEvent, RolloutSummary, progressLine, summaryText } from "../core/rollout/report";
import { sampleNodes } from "../core/rollout/sample";
import { GateFailure, Phase, ResumeError, RolloutState, newState, parseState, startPoint } from "../core/rollout/state";
import { fetchServedChain } from "../core/served-chain";
import { MD_GROUP, clientNodeWorkerApi } from "../core/workers/api";
import { machineDeploymentRolloutState } from "../core/workers/rollout";
import { parseCertificate } from "../core/x509/cert";
import { UsageError, one, parseArgs } from "./args";
import { ConnectionError, runProbe, servedChain } from "./doctor";
import { Io } from "./io";

export const ROLLOUT_USAGE = "registry-trust rollout [--file rollout.yaml] [--only STACK] [--resume] [--json]";

/*
 * Promotes one change through the stacks of a rollout file, in order, with the Pulumi Automation API:
 * per stack a preview (refused when it changes more than a rotation may: core/rollout/allowed.ts), `up`,
 * then gates on the real parts (core/rollout/gates.ts). The first failure stops the rollout with a report;
 * --resume continues from there. The Pulumi CLI is the `pulumi` on PATH, with the backend and secrets
 * provider of the environment (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE or a KMS, PULUMI_ACCESS_TOKEN).
 * Every preview and up refreshes first, so a serving certificate inside servingRenewBeforeDays is renewed.
 */

/** What the gates and `drift` need from a stack: its validated config, the SSH key, and its bundle. */
export interface StackContext {
  readonly name: string;
  readonly config: StackConfig;
  readonly sshPrivateKey?: string;
  readonly bundlePem?: string;
}

export async function selectStack(name: string, project: string): Promise<Stack> {
  return LocalWorkspace.selectStack({ stackName: name, workDir: project });
}

/** The stack's config as the program reads it (core/config), plus the SSH key and the `bundlePem` output. */
export async function stackContext(stack: Stack, project: string): Promise<StackContext> {
  const all = await stack.getAllConfig();
  const raw: Record<string, { value: string; secret: boolean }> = {};
  for (const [k, v] of Object.entries(all)) if (k.startsWith(`${PROJECT}:`)) raw[k.slice(PROJECT.length + 1)] = { value: v.value, secret: v.secret ?? false };
  const config = parseStackConfig(raw as RawConfig, { baseDir: project });
  const outputs = await stack.outputs();
  const bundle = outputs.bundlePem?.value;
  return { name: stack.name, config, sshPrivateKey: raw.sshPrivateKey?.value || undefined, bundlePem: typeof bundle === "string" ? bundle : undefined };
}

/** ssh credentials for doctor: the stack's key in a 0600 file, the pinned host keys as a known_hosts file. */
export class SshFiles {
  private readonly dir = mkdtempSync(join(tmpdir(), "registry-trust-ssh-"));
  readonly identity?: string;
  readonly knownHosts?: string;
  constructor(ctx: StackContext) {
    if (ctx.sshPrivateKey) {
      this.identity = join(this.dir, "id");
      writeFileSync(this.identity, ctx.sshPrivateKey.endsWith("\n") ? ctx.sshPrivateKey : `${ctx.sshPrivateKey}\n`, { mode: 0o600 });
    }
    const pinned = ctx.config.nodes.filter((n) => n.hostKey);
    // Pinned keys only when every node has one: otherwise the user's known_hosts vouches for all.
    if (pinned.length && pinned.length === ctx.config.nodes.length) {
      this.knownHosts = join(this.dir, "known_hosts");
      writeFileSync(this.knownHosts, pinned.map((n) => `${n.port === 22 ? n.host : `[${n.host}]:${n.port}`} ${n.hostKey}\n`).join(""), { mode: 0o600 });
    }
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** doctor (cli/doctor.ts) on one node for one registry: the probe over ssh and the diagnosis. */
export async function probeNode(node: NodeConfig, ctx: StackContext, ssh: SshFiles, registryIndex: number, image?: string): Promise<{ probe: NodeProbe; dump?: NodeDump }> {
  const registry = ctx.config.registries[registryIndex];
  const sshNode: SshNode = { user: node.user, host: node.host, port: node.port };
  const target: DoctorTarget = { node: sshNode, registry, image };
  const key = endpointKey(registry);
  if (node.proxy) return { probe: { node: node.name, registry: key, error: "the node is reached through a bastion (proxy), which doctor does not support; probe it by hand" } };
  try {
    const dump = await runProbe(target, ssh.identity, ssh.knownHosts);
    const { served, error } = await servedChain(target, dump);
    const report: DoctorReport = diagnose({ target, dump, served, servedError: error, localNow: new Date() });
    return { probe: { node: node.name, registry: key, report }, dump };
  } catch (e) {
    if (e instanceof ConnectionError) return { probe: { node: node.name, registry: key, error: e.message } };
    throw e;
  }
}

function clusterWatches(config: StackConfig, project: string): RolloutWatch[] {
  if (config.clusters.length === 0) return [];
  const k8s = require("@kubernetes/client-node") as typeof K8s;
  const watches: RolloutWatch[] = [];
  for (const c of config.clusters) {
    const kc = loadKubeConfig(k8s, resolve(project, c.kubeconfig ?? process.env.KUBECONFIG ?? `${process.env.HOME}/.kube/config`), c.context);
    const kcp = clientNodeKcpApi(k8s, kc);
    const md = clientNodeWorkerApi(k8s, kc);
    for (const ref of c.controlPlanes) {
      watches.push({
        object: `KubeadmControlPlane ${ref.namespace}/${ref.name} (cluster ${c.name})`,
        read: async () => {
          const version = pickVersion(await kcp.servedKcpVersions(), undefined, "KubeadmControlPlane");
          const o = await kcp.getKcp(ref, version);
          return rolloutState(o, version, o.metadata.generation ?? 0);
        },
      });
    }
    for (const ref of c.machineDeployments) {
      watches.push({
        object: `MachineDeployment ${ref.namespace}/${ref.name} (cluster ${c.name})`,
        read: async () => {
          const version = pickVersion(await md.servedVersions(MD_GROUP), undefined, "MachineDeployment");
          const o = await md.getMachineDeployment(ref, version);
          return machineDeploymentRolloutState(o, version, o.metadata.generation ?? 0);
        },
      });
    }
  }
  return watches;
}

/** The last lines of an engine error: what failed, without the command line and the whole log. */
function engineError(e: unknown): string {
  const text = String((e as Error)?.message ?? e);
  const lines = text.split("\n").map((l) => l.trimEnd()).filter((l) => l.trim() && !/^\s*(code|stdout|stderr|err\?):/.test(l));
  const errors = lines.filter((l) => /error/i.test(l));
  return (errors.length ? errors : lines).slice(-6).join(" / ").slice(0, 2000);
}

function saveState(file: string, state: RolloutState): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(tmp, file);
}

class Stop extends Error {
  constructor(readonly failures: GateFailure[]) {
    super("rollout stopped");
  }
}

export async function rollout(argv: readonly string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { values: ["--file", "--only"], booleans: ["--resume", "--json"] });
  if (p.positional.length > 0) throw new UsageError(`unexpected argument "${p.positional[0]}"`);
  const json = p.booleans.has("--json");
  const file = resolve(one(p, "--file") ?? "rollout.yaml");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`--file "${file}": ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}; give the rollout file (see docs/pipelines.md)`);
  }
  let plan: RolloutPlan;
  try {
    plan = parseRolloutFile(text, file);
  } catch (e) {
    if (e instanceof RolloutFileError) throw new UsageError(e.message);
    throw e;
  }
  const only = one(p, "--only");
  if (only !== undefined) {
    const s = plan.stacks.find((x) => x.name === only);
    if (!s) throw new UsageError(`--only "${only}" is not a stack of ${file} (stacks: ${plan.stacks.map((x) => x.name).join(", ")})`);
    if (p.booleans.has("--resume")) throw new UsageError("--only runs one stack from its preview; it keeps no state, so --resume does not apply");
  }

  const t0 = Date.now();
  const emit = (stack: string, phase: RolloutEvent["phase"], status: EventStatus, message: string) => {
    const e: RolloutEvent = { elapsedMs: Date.now() - t0, stack, phase, status, message };
    if (json) io.out(`${JSON.stringify({ event: e })}\n`);
    else io.out(`${progressLine(e)}\n`);
  };

  let state: RolloutState;
  let startIndex = 0;
  let gatesOnly = false;
  const stacks: readonly RolloutStack[] = only ? plan.stacks.filter((s) => s.name === only) : plan.stacks;
  if (only) {
    state = newState(plan, text, new Date());
  } else {
    const previous = existsSync(plan.stateFile) ? parseState(readFileSync(plan.stateFile, "utf8")) : undefined;
    try {
      ({ index: startIndex, gatesOnly } = startPoint(plan, text, previous, p.booleans.has("--resume")));
    } catch (e) {
      if (e instanceof ResumeError) {
        io.err(`registry-trust rollout: ${e.message}\n`);
        return 2;
      }
      throw e;
    }
    state = p.booleans.has("--resume") && previous ? { ...previous, failures: [] } : newState(plan, text, new Date());
    for (const s of plan.stacks.slice(0, startIndex)) emit(s.name, "rollout", "skip", "done in an earlier run");
  }
  const save = (next: Partial<RolloutState>) => {
    state = { ...state, ...next };
    if (!only) saveState(plan.stateFile, state);
  };

  try {
    for (let i = startIndex; i < stacks.length; i++) {
      const spec = stacks[i];
      let stack: Stack;
      try {
        stack = await selectStack(spec.name, plan.project);
      } catch (e) {
        throw fail(spec.name, "preview", [{ object: `stack ${spec.name}`, message: `cannot select the stack in ${plan.project}: ${engineError(e)}`, fix: `check the stack name in ${file}, the backend (PULUMI_BACKEND_URL) and \`pulumi stack ls\`; then run again with --resume` }]);
      }
      const phase = (ph: Phase) => save({ current: { stack: spec.name, phase: ph } });
      save({ current: { stack: spec.name } });
      if (i === startIndex && gatesOnly) emit(spec.name, "up", "skip", "resuming at the gates: this stack's up finished in the run that stopped");
      else {
        await previewPhase(stack, spec, emit);
        phase("preview");
        await upPhase(stack, spec, emit);
        phase("up");
      }
      await gatesPhase(stack, spec, plan, emit, phase);
      save({ done: [...state.done, spec.name], current: undefined });
      emit(spec.name, "rollout", "ok", "every gate passed");
    }
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
    save({ failures: e.failures });
    return finish(false, e.failures);
  }
  return finish(true, []);

  function finish(ok: boolean, failures: GateFailure[]): number {
    const done = only ? (ok ? [only] : []) : state.done;
    const summary: RolloutSummary = {
      ok, file, stateFile: plan.stateFile, done, failures, elapsedMs: Date.now() - t0,
      remaining: stacks.map((s) => s.name).filter((n) => !done.includes(n)),
    };
    if (json) io.out(`${JSON.stringify({ summary })}\n`);
    else io.out(summaryText(summary));
    return ok ? 0 : 1;
  }
}

type Emit = (stack: string, phase: RolloutEvent["phase"], status: EventStatus, message: string) => void;

const fail = (stack: string, phase: Phase, problems: readonly GateProblem[]) => new Stop(problems.map((x) => ({ stack, phase, ...x })));

async function previewPhase(stack: Stack, spec: RolloutStack, emit: Emit): Promise<void> {
  emit(spec.name, "preview", "start", "pulumi preview --refresh");
  const steps: PreviewStep[] = [];
  const onEvent = (e: EngineEvent) => {
    const m = e.resourcePreEvent?.metadata;
    if (m) steps.push({ op: m.op, type: m.type, urn: m.urn, diffs: m.diffs });
  };
  try {
    await stack.preview({ refresh: true, color: "never", onEvent });
  } catch (e) {
    throw fail(spec.name, "preview", [{ object: `stack ${spec.name}`, message: `pulumi preview failed: ${engineError(e)}`, fix: `run \`pulumi preview --stack ${spec.name}\` and fix what it reports, then run again with --resume` }]);
  }
  const counts = changeCounts(steps);
  const summary = Object.entries(counts).map(([op, n]) => `${n} ${op}`).join(", ") || "no resources";
  const violations = disallowedChanges(steps);
  if (violations.length) {
    emit(spec.name, "preview", "fail", `${summary}; ${violations.length} change(s) outside a rotation`);
    throw fail(spec.name, "preview", violations.map((v) => ({
      object: v.urn,
      message: `${v.op}: ${v.why}`,
      fix: `this is not a rotation: review it with \`pulumi preview --stack ${spec.name} --diff\` and apply it with a reviewed \`pulumi up\`, or revert the config change; then run again with --resume`,
    })));
  }
  emit(spec.name, "preview", "ok", summary);
}

async function upPhase(stack: Stack, spec: RolloutStack, emit: Emit): Promise<void> {
  emit(spec.name, "up", "start", "pulumi up --refresh");
  const onEvent = (e: EngineEvent) => {
    const m = e.resOutputsEvent?.metadata;
    if (m && m.op !== "same" && m.op !== "refresh" && m.op !== "read") emit(spec.name, "up", "info", `${m.op} ${m.type} ${m.urn.split("::").pop()}`);
  };
  try {
    const res = await stack.up({ refresh: true, color: "never", onEvent });
    const changed = Object.entries(res.summary.resourceChanges ?? {}).map(([op, n]) => `${n} ${op}`).join(", ");
    emit(spec.name, "up", "ok", changed || "no changes");
  } catch (e) {
    emit(spec.name, "up", "fail", "pulumi up failed");
    throw fail(spec.name, "up", [{ object: `stack ${spec.name}`, message: `pulumi up failed: ${engineError(e)}`, fix: `read the error above (the rotation protocol stops before the serving switch), fix it, then run again with --resume; \`pulumi up --stack ${spec.name}\` shows the full log` }]);
  }
}

async function gatesPhase(stack: Stack, spec: RolloutStack, plan: RolloutPlan, emit: Emit, done: (p: Phase) => void): Promise<void> {
  let ctx: StackContext;
  try {
    ctx = await stackContext(stack, plan.project);
  } catch (e) {
    const message = e instanceof ConfigError ? e.message : engineError(e);
    throw fail(spec.name, "inspect", [{ object: `stack ${spec.name}`, message: `cannot read the stack's config and outputs: ${message}`, fix: "fix the stack config (the error names the key), then run again with --resume" }]);
  }
  const gate = async (phase: Phase, skip: string | undefined, run: () => Promise<GateProblem[]>, what: string) => {
    if (skip !== undefined) {
      emit(spec.name, phase, "skip", skip);
      return;
    }
    emit(spec.name, phase, "start", what);
    let problems: GateProblem[];
    try {
      problems = await run();
    } catch (e) {
      // A gate that cannot run (kubeconfig unreadable, ssh missing) is a failed gate, not a crash.
      problems = [{ object: `stack ${spec.name}`, message: `the ${phase} gate could not run: ${(e as Error).message}`, fix: "fix the cause named, then run again with --resume" }];
    }
    if (problems.length) {
      emit(spec.name, phase, "fail", `${problems.length} problem(s): ${problems.map((x) => x.object).join(", ")}`);
      throw fail(spec.name, phase, problems);
    }
    emit(spec.name, phase, "ok", what);
    done(phase);
  };

  const off = "gate off in the rollout file";
  await gate("inspect", spec.gates.inspect ? undefined : off, async () => {
    if (!ctx.bundlePem) return [{ object: `stack ${spec.name}`, message: "the stack has no bundlePem output", fix: "run `pulumi up` for the stack first" }];
    return inspectGate(ctx.config.registries, ctx.bundlePem, async (e) => (await fetchServedChain(e, 10_000)).map((d, i) => parseCertificate(d, `served#${i}`)));
  }, `${ctx.config.registries.map(endpointKey).join(", ")} serve a chain the stack's bundle verifies`);

  const doctor = spec.gates.doctor;
  const nodes = ctx.config.nodes;
  const groups = sampleNodes(nodes, doctor?.sample ?? 0, spec.name);
  const sampled = [...groups.values()].flat();
  await gate("doctor", doctor === undefined ? off : nodes.length === 0 ? "the stack has no nodes" : undefined, async () => {
    const ssh = new SshFiles(ctx);
    try {
      const probes: NodeProbe[] = [];
      for (const n of sampled) {
        for (let r = 0; r < ctx.config.registries.length; r++) {
          // The pull goes to the first registry only: one CRI pull per node confirms the runtime path.
          const image = r === 0 ? ctx.config.policy.probeImage : undefined;
          probes.push((await probeNode(n, ctx, ssh, r, image)).probe);
        }
      }
      return doctorGate(probes);
    } finally {
      ssh.remove();
    }
  }, `doctor healthy on ${sampled.map((n) => n.name).join(", ") || "no node"} (${[...groups.keys()].join(", ") || "-"}; ${doctor?.sample ?? 0} per group)`);

  let watches: RolloutWatch[] = [];
  let watchError: Error | undefined;
  try {
    watches = spec.gates.clusters ? clusterWatches(ctx.config, plan.project) : [];
  } catch (e) {
    watchError = e as Error;
  }
  const noObjects = watches.length === 0 && !watchError ? "the stack has no KubeadmControlPlane or MachineDeployment" : undefined;
  await gate("clusters", !spec.gates.clusters ? off : noObjects, async () => watchError ? Promise.reject(watchError) : clusterGate(
    watches, spec.gates.clusterTimeoutSeconds * 1000, 5_000,
    { now: () => Date.now(), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) },
    (object, summary) => emit(spec.name, "clusters", "info", `${object}: ${summary}`),
  ), `${watches.length} KubeadmControlPlane/MachineDeployment rollout(s) done`);
}
