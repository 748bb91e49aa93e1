/*
 * Benchmark (prints figures, asserts nothing): distribute the trust bundle to N lab nodes at once over real
 * ssh, running on each node exactly what NodeTrust's Command runs (its create line, the script on stdin). Per N: a baseline (`ssh node true` on every node at once), the first install, and a rerun (which
 * must change nothing). Figures: per-node p50/max seconds, wall time, files changed, restarts (from each
 * node's report line, cross-checked with containerd's PID). Goal: 0 restarts with containerd hosts.toml,
 * ≤ 1.5 s per node. Needs root and the lab's packages (npm run lab:deps).
 *
 * Usage: npm run bench:nodes [-- N…]   (default 3 12)
 */
import { startLab, REGISTRY_HOST, type Lab } from "../lab/lab";
import { LabNode } from "../lab/node";
import { nodeCommand } from "../components/node-trust";
import { parseNodeReport, renderNodeScriptPair } from "../core/node/render";
import { assembleBundle, bundleHash } from "../core/x509/bundle";

interface NodeRun { seconds: number; changed: number; restarted: number; pidChanged: boolean }

async function timed(node: LabNode, command: string, stdin?: string): Promise<{ seconds: number; stdout: string }> {
  const t0 = process.hrtime.bigint();
  const r = await node.exec(command, { stdin });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.code !== 0) throw new Error(`${node.name}: "${command}" exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return { seconds, stdout: r.stdout };
}

/** Runs `phase` on every node at once; returns per-node figures and the wall time of the whole round. */
async function round(nodes: readonly LabNode[], phase: (n: LabNode) => Promise<NodeRun>): Promise<{ runs: NodeRun[]; wall: number }> {
  const t0 = process.hrtime.bigint();
  const runs = await Promise.all(nodes.map(phase));
  return { runs, wall: Number(process.hrtime.bigint() - t0) / 1e9 };
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function line(n: number, phase: string, r: { runs: NodeRun[]; wall: number }): string {
  const s = r.runs.map((x) => x.seconds).sort((a, b) => a - b);
  const sum = (f: (x: NodeRun) => number) => r.runs.reduce((acc, x) => acc + f(x), 0);
  return [
    String(n).padStart(3), phase.padEnd(14), quantile(s, 0.5).toFixed(2).padStart(6), s[s.length - 1].toFixed(2).padStart(6), r.wall.toFixed(2).padStart(7),
    String(sum((x) => x.changed)).padStart(8), String(sum((x) => x.restarted)).padStart(9), String(sum((x) => (x.pidChanged ? 1 : 0))).padStart(12),
  ].join("  ");
}

async function bench(n: number): Promise<string[]> {
  const t0 = process.hrtime.bigint();
  const lab: Lab = await startLab({ nodes: n });
  const startSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  try {
    const bundlePem = assembleBundle([lab.registry.caPem]).pem;
    const input = { os: "auto", runtimes: ["containerd"], registries: [{ host: REGISTRY_HOST, port: lab.registry.port, mirrorOf: [] }], bundlePem } as const;
    const script = renderNodeScriptPair(input);
    const cmd = nodeCommand("root", bundleHash(bundlePem), renderNodeScriptPair(input));
    const install = async (node: LabNode): Promise<NodeRun> => {
      const pid = node.containerdPid();
      const { seconds, stdout } = await timed(node, cmd.create, cmd.stdin);
      const report = parseNodeReport(stdout);
      // A figure for a node that did not end up with this bundle would measure nothing.
      if (report.bundleSha256 !== bundleHash(bundlePem)) throw new Error(`${node.name} reports bundle ${report.bundleSha256}, expected ${bundleHash(bundlePem)}`);
      return { seconds, changed: report.changed.length, restarted: report.restarted.length, pidChanged: node.containerdPid() !== pid };
    };
    const baseline = await round(lab.nodes, async (node) => ({ ...(await timed(node, "true")), changed: 0, restarted: 0, pidChanged: false }));
    const first = await round(lab.nodes, install);
    const rerun = await round(lab.nodes, install);
    return [
      `# lab with ${n} nodes started in ${startSeconds.toFixed(2)} s; script ${script.length} bytes`,
      line(n, "ssh true", baseline),
      line(n, "install", first),
      line(n, "rerun", rerun),
    ];
  } finally {
    await lab.stop();
  }
}

async function main(): Promise<void> {
  const sizes = process.argv.slice(2).map(Number);
  const out: string[] = [];
  for (const n of sizes.length > 0 ? sizes : [3, 12]) out.push(...(await bench(n)));
  console.log("Bundle distribution to lab nodes over real ssh, all nodes at once (goal: 0 restarts, per node ≤ 1.5 s)");
  console.log("  N  phase              p50     max     wall   changed  restarts  pid_changed");
  for (const l of out) console.log(l);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
