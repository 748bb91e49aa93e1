/*
 * Benchmark (prints figures, asserts nothing): the lab stack (index.ts, stacks/Pulumi.lab.yaml) over N lab
 * nodes under the real Pulumi engine, against plain ssh. Phases, each one `pulumi up` (the project's
 * `refresh: always` included; --skip-preview):
 *   adopt    the stack's CA and serving certificate, no nodes (lab/cluster-stack.ts adoptionConfig);
 *   install  every node's Command created: the install script over SSH, verified on the node;
 *   rotate   caGeneration 2: every node's Command updated in place, then the serving switch;
 *   baseline the rotation's own scripts (read from the checkpoint) sent with plain ssh to the same nodes from
 *            the same pre-rotation state, with the engine's parallelism;
 *   noop     nothing changed; then noop-tso, the same with PULUMI_NODEJS_TRANSPILE_ONLY=true (what the
 *            per-up type-check of the program costs); destroy (every node's remove script).
 * Last line: `fleet nodes=N install_s=… rotate_s=… noop_s=… baseline_rotate_s=… ratio=… engine_rss_mib=…
 * state_kib=… state_kib_per_node=… restarts=0`. Targets (issue 16): ratio ≤ 1.5, noop of 50 nodes ≤ 15 s,
 * restarts 0, ≤ 20 KB of state per node. Needs root, the lab's packages and the built engine.
 *
 * Usage: npm run bench:fleet [-- --nodes N] [--parallel P] [--transpile-only]   (defaults 50, P = N: every
 * node at once; --transpile-only runs every up with PULUMI_NODEJS_TRANSPILE_ONLY=true)
 */
import { spawn } from "node:child_process";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { adoptionConfig, writeLabStackConfig } from "../lab/cluster-stack";
import { startLab, type Lab } from "../lab/lab";
import type { LabNode } from "../lab/node";
import { parseNodeReport, renderNodeScript } from "../core/node/render";
import { PROJECT } from "../core/config/schema";
import { loadavg, peakTreeRss, ProgressTimer, pssKiB, quantile, treePids, watchCheckpoints, type StepTiming } from "./fleet-measure";

const REPO = path.resolve(__dirname, "..");
const STACK = "lab";
const NODE_COMMAND = "command:remote:Command";

interface UpFigures {
  seconds: number;
  steps: StepTiming[];
  rssMiB: number;
  saves: number;
  writtenBytes: number;
  /** Seconds from the start to the end of the refresh, and to the first step after it (the program's evaluation up to its first changed resource). */
  refreshS?: number;
  firstStepS?: number;
}

class Fleet {
  private readonly stacksDir: string;
  constructor(
    readonly work: string,
    readonly pulumi: string,
    readonly env: NodeJS.ProcessEnv,
    readonly parallel: number,
  ) {
    this.stacksDir = path.join(work, "backend", ".pulumi", "stacks");
  }

  get checkpointFile(): string {
    return path.join(this.stacksDir, PROJECT, `${STACK}.json`);
  }

  checkpoint(): { bytes: number; resources: Array<{ urn: string; type: string; inputs?: Record<string, unknown>; outputs?: Record<string, unknown> }> } {
    const text = fs.readFileSync(this.checkpointFile, "utf8");
    return { bytes: Buffer.byteLength(text), resources: JSON.parse(text).checkpoint.latest?.resources ?? [] };
  }

  /** One `pulumi up` (or destroy) with its progress lines timed, the engine's tree sampled, checkpoint saves counted. */
  async run(verb: "up" | "destroy", extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<UpFigures> {
    const timer = new ProgressTimer();
    const saves = watchCheckpoints(this.stacksDir, STACK);
    const args = [verb, "--stack", STACK, "--yes", "--skip-preview", "--non-interactive", "--color", "never", "--suppress-outputs", "--parallel", String(this.parallel), ...extra];
    const t0 = performance.now();
    const child = spawn(this.pulumi, args, { cwd: REPO, env: { ...this.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const rss = peakTreeRss(() => child.pid);
    let output = "";
    let partial = "";
    child.stdout.on("data", (d: Buffer) => {
      const text = partial + d.toString();
      output += d.toString();
      const lines = text.split("\n");
      partial = lines.pop() ?? "";
      const now = performance.now();
      for (const l of lines) timer.line(l, now);
    });
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number>((resolve, reject) => { child.once("error", reject); child.once("exit", (c) => resolve(c ?? 1)); });
    const seconds = (performance.now() - t0) / 1000;
    const rssMiB = rss.stop();
    const { saves: n, bytes } = saves.stop();
    if (process.env.FLEET_DEBUG) fs.writeFileSync(path.join(os.tmpdir(), `fleet-${verb}-${Date.now()}.log`), output);
    if (code !== 0) throw new Error(`pulumi ${verb} failed (${code}):\n${output.trim().split("\n").slice(-40).join("\n")}`);
    const since = (t?: number) => (t === undefined ? undefined : (t - t0) / 1000);
    return { seconds, steps: timer.steps, rssMiB, saves: n, writtenBytes: bytes, refreshS: since(timer.refreshEnd), firstStepS: since(timer.firstStep) };
  }

  async config(key: string, value: string): Promise<void> {
    execFileSync(this.pulumi, ["config", "set", "--stack", STACK, `${PROJECT}:${key}`, value, "--non-interactive"], { cwd: REPO, env: this.env, stdio: "pipe" });
  }

  output(name: string): unknown {
    return JSON.parse(execFileSync(this.pulumi, ["stack", "output", "--stack", STACK, "--json", "--show-secrets", name], { cwd: REPO, env: this.env, encoding: "utf8" }));
  }
}

/** The engine: an installed `pulumi` on PATH (PULUMI_BIN's directory first), else the one scripts/pulumi-binaries.sh built. */
function engineEnv(work: string): NodeJS.ProcessEnv {
  const onPath = process.env.PULUMI_BIN ? path.dirname(process.env.PULUMI_BIN) : undefined;
  const bin = onPath ?? execFileSync("bash", [path.join(REPO, "scripts", "pulumi-binaries.sh"), "--print-bin"], { encoding: "utf8" }).trim();
  if (!fs.existsSync(path.join(bin, "pulumi"))) throw new Error(`no Pulumi CLI in ${bin}: run \`npm run pulumi:binaries\` first`);
  for (const d of ["backend", "home"]) fs.mkdirSync(path.join(work, d));
  return {
    ...process.env,
    PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}`,
    PULUMI_BACKEND_URL: `file://${path.join(work, "backend")}`,
    PULUMI_HOME: path.join(work, "home"),
    PULUMI_CONFIG_PASSPHRASE: "registry-trust-bench",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
  };
}

/** Runs `f` on every item with at most `limit` at once (the engine's --parallel), in order of the list. */
async function pool<T, R>(items: readonly T[], limit: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]);
    }
  }));
  return out;
}

interface NodeScript { create: string; stdin: string }

/** Each node's Command create line and stdin as the checkpoint holds them, by node name. */
function nodeScripts(fleet: Fleet): Map<string, NodeScript> {
  const out = new Map<string, NodeScript>();
  for (const r of fleet.checkpoint().resources) {
    if (r.type !== NODE_COMMAND || !r.urn.includes("::nodes-")) continue;
    const name = r.urn.slice(r.urn.lastIndexOf("::nodes-") + "::nodes-".length);
    const o = r.outputs ?? {};
    if (typeof o.create !== "string" || typeof o.stdin !== "string") throw new Error(`checkpoint: ${r.urn} holds no create line / stdin`);
    out.set(name, { create: o.create, stdin: o.stdin });
  }
  return out;
}

async function sshRun(node: LabNode, s: NodeScript): Promise<{ seconds: number; changed: number; restarted: number }> {
  const t0 = performance.now();
  const r = await node.exec(s.create, { stdin: s.stdin, timeoutMs: 600_000 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.code !== 0) throw new Error(`${node.name}: exited ${r.code}:\n${r.stderr}${r.stdout}`);
  const report = parseNodeReport(r.stdout);
  return { seconds, changed: report.changed.length, restarted: report.restarted.length };
}

const f2 = (x: number) => x.toFixed(2);

function phaseLine(phase: string, up: UpFigures, nodeSteps: StepTiming[], extra = ""): string {
  const s = nodeSteps.map((x) => x.seconds);
  const per = s.length > 0 ? ` node_p50_s=${f2(quantile(s, 0.5))} node_p99_s=${f2(quantile(s, 0.99))} node_steps=${s.length}` : "";
  const split = `${up.refreshS === undefined ? "" : ` refresh_done_s=${f2(up.refreshS)}`}${up.firstStepS === undefined ? "" : ` first_step_s=${f2(up.firstStepS)}`}`;
  return `${phase.padEnd(8)} wall_s=${f2(up.seconds)}${split}${per} engine_rss_mib=${up.rssMiB.toFixed(0)} checkpoint_saves=${up.saves} checkpoint_written_mib=${(up.writtenBytes / 2 ** 20).toFixed(1)}${extra} load=${loadavg()}`;
}

function nodeSteps(up: UpFigures): StepTiming[] {
  return up.steps.filter((s) => s.type === NODE_COMMAND && s.name.startsWith("nodes-") && s.op !== "refresh");
}

/** Summed proportional memory of each node's processes (sshd, containerd, init), in MiB. */
function labMemory(lab: Lab): number[] {
  return lab.nodes.map((n) => treePids(n.pid).reduce((a, p) => a + pssKiB(p), 0) / 1024);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { nodes: { type: "string", default: "50" }, parallel: { type: "string" }, "transpile-only": { type: "boolean", default: false } } });
  const n = Number(values.nodes);
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new Error(`--nodes must be an integer 1..200, got "${values.nodes}"`);
  const parallel = values.parallel === undefined ? n : Number(values.parallel);
  if (!Number.isInteger(parallel) || parallel < 1) throw new Error(`--parallel must be a positive integer, got "${values.parallel}"`);

  const work = fs.mkdtempSync(path.join(os.tmpdir(), "registry-trust-fleet-"));
  const env = { ...engineEnv(work), ...(values["transpile-only"] ? { PULUMI_NODEJS_TRANSPILE_ONLY: "true" } : {}) };
  let lab: Lab | undefined;
  let fleet: Fleet | undefined;
  let installed = false;
  try {
    console.log(`fleet: ${n} nodes, --parallel ${parallel}${values["transpile-only"] ? ", PULUMI_NODEJS_TRANSPILE_ONLY=true" : ""}, ${os.cpus().length} cpus, load ${loadavg()}`);
    let t0 = performance.now();
    lab = await startLab({ nodes: n, dir: path.join(work, "lab") });
    const mem = labMemory(lab);
    console.log(`lab      start_s=${f2((performance.now() - t0) / 1000)} node_mem_mib_mean=${(mem.reduce((a, b) => a + b, 0) / n).toFixed(1)} node_mem_mib_max=${Math.max(...mem).toFixed(1)} (PSS of sshd+containerd+init per node) load=${loadavg()}`);

    const { configFile, pulumi } = await writeLabStackConfig({ lab: lab.describe(), stack: STACK, env });
    fleet = new Fleet(work, pulumi, env, parallel);
    installed = true;

    const adopt = await fleet.run("up", ["--config-file", adoptionConfig(configFile)]);
    const fixedBytes = fleet.checkpoint().bytes;
    console.log(phaseLine("adopt", adopt, [], ` state_kib=${(fixedBytes / 1024).toFixed(0)}`));

    const install = await fleet.run("up");
    const afterInstall = fleet.checkpoint();
    const perNode = (afterInstall.bytes - fixedBytes) / n;
    const commandBytes = afterInstall.resources.filter((r) => r.type === NODE_COMMAND && r.urn.includes("::nodes-")).map((r) => Buffer.byteLength(JSON.stringify(r)));
    console.log(phaseLine("install", install, nodeSteps(install), ` state_kib=${(afterInstall.bytes / 1024).toFixed(0)} state_kib_per_node=${(perNode / 1024).toFixed(1)} command_resource_kib=${(quantile(commandBytes, 0.5) / 1024).toFixed(1)}`));
    const gen1Bundle = String(fleet.output("bundlePem"));

    const pids = new Map(lab.nodes.map((x) => [x.name, x.containerdPid()]));
    await fleet.config("caGeneration", "2");
    const rotate = await fleet.run("up");
    const reports = fleet.output("nodes") as Array<{ node: string; restarted: string[]; changed: string[] }>;
    const engineRestarts = reports.reduce((a, r) => a + r.restarted.length, 0) + lab.nodes.filter((x) => x.containerdPid() !== pids.get(x.name)).length;
    const rotateSteps = nodeSteps(rotate);
    const serving = rotate.steps.filter((s) => s.name.startsWith("serving") && s.op !== "refresh");
    const lastNode = Math.max(...rotateSteps.map((s) => s.seconds));
    console.log(phaseLine("rotate", rotate, rotateSteps, ` files_changed=${reports.reduce((a, r) => a + r.changed.length, 0)} restarts=${engineRestarts} serving_steps=${serving.map((s) => `${s.name}:${s.op}:${f2(s.seconds)}s`).join(",") || "none"} slowest_node_s=${f2(lastNode)}`));

    // Baseline: back to the pre-rotation files (the generation-1 bundle, written without the checks, which
    // would fail now that the registry serves the generation-2 certificate), then the rotation's own
    // scripts over plain ssh with the same parallelism. Only the second part is timed.
    const gen2 = nodeScripts(fleet);
    const registries = [{ host: lab.registry.host, port: lab.registry.port, mirrorOf: [] as string[] }];
    const restore: NodeScript = {
      create: "sh -s",
      stdin: renderNodeScript({ os: "debian", runtimes: ["containerd"], registries, bundlePem: gen1Bundle, action: "install", probeTls: false }),
    };
    await pool(lab.nodes, parallel, (x) => sshRun(x, restore));
    const basePids = new Map(lab.nodes.map((x) => [x.name, x.containerdPid()]));
    t0 = performance.now();
    const base = await pool(lab.nodes, parallel, (x) => sshRun(x, gen2.get(x.name)!));
    const baseSeconds = (performance.now() - t0) / 1000;
    const baseRestarts = base.reduce((a, r) => a + r.restarted, 0) + lab.nodes.filter((x) => x.containerdPid() !== basePids.get(x.name)).length;
    const bs = base.map((r) => r.seconds);
    console.log(`baseline wall_s=${f2(baseSeconds)} node_p50_s=${f2(quantile(bs, 0.5))} node_p99_s=${f2(quantile(bs, 0.99))} files_changed=${base.reduce((a, r) => a + r.changed, 0)} restarts=${baseRestarts} (plain ssh, the rotation's scripts, ${parallel} at once) load=${loadavg()}`);

    const noop = await fleet.run("up");
    const changedInNoop = noop.steps.filter((s) => s.op !== "refresh" && s.op !== "read");
    const afterNoop = fleet.checkpoint();
    console.log(phaseLine("noop", noop, [], ` steps_not_same=${changedInNoop.length} state_kib=${(afterNoop.bytes / 1024).toFixed(0)}`));

    // Where a no-op's time goes: the same up with the program transpiled only (Pulumi's ts-node otherwise
    // type-checks index.ts and everything it imports on every run; the repository's tsc does that in CI).
    if (!values["transpile-only"]) {
      const noopTso = await fleet.run("up", [], { PULUMI_NODEJS_TRANSPILE_ONLY: "true" });
      console.log(phaseLine("noop-tso", noopTso, [], ` steps_not_same=${noopTso.steps.filter((s) => s.op !== "refresh" && s.op !== "read").length} (PULUMI_NODEJS_TRANSPILE_ONLY=true)`));
    }

    const destroy = await fleet.run("destroy");
    installed = false;
    console.log(phaseLine("destroy", destroy, nodeSteps(destroy)));

    const engineRss = Math.max(install.rssMiB, rotate.rssMiB, noop.rssMiB);
    console.log(
      `fleet nodes=${n} install_s=${f2(install.seconds)} rotate_s=${f2(rotate.seconds)} noop_s=${f2(noop.seconds)} baseline_rotate_s=${f2(baseSeconds)} ` +
        `ratio=${f2(rotate.seconds / baseSeconds)} engine_rss_mib=${engineRss.toFixed(0)} state_kib=${(afterNoop.bytes / 1024).toFixed(0)} ` +
        `state_kib_per_node=${(perNode / 1024).toFixed(1)} restarts=${engineRestarts + baseRestarts}`,
    );
  } finally {
    if (installed && fleet) await fleet.run("destroy").catch((e: Error) => console.error(`cleanup destroy failed: ${e.message}`));
    if (lab) await lab.stop().catch((e: Error) => console.error(`lab stop failed: ${e.message}`));
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
