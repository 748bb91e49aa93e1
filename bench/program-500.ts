/*
 * Benchmark (prints figures, asserts nothing): the stack's components — RegistryPki feeding NodeTrust — with
 * 500 nodes under Pulumi mocks, against the same program with 0 nodes as the baseline. Each size runs in a
 * fresh process so its peak memory is its own. Goal: < 10 s and < 1 GiB for 500 nodes.
 *
 * Usage: npm run bench:program [-- NODES…]   (default 0 500)
 */
import * as pulumi from "@pulumi/pulumi";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { TlsMocks } from "../lab/tls-mocks";

const REPO = join(__dirname, "..");

interface Figures { nodes: number; commands: number; evalSeconds: number; peakRssMiB: number }

/** One measured run: registers the program, waits for every node's result, reports time and peak RSS. */
async function child(nodeCount: number): Promise<Figures> {
  const started = process.hrtime.bigint();

  // TlsMocks answers each node's Command with the report line of an install whose checks could not run
  // (the bench measures the program, not nodes), hence allowUnverified below.
  const mocks = new TlsMocks();
  pulumi.runtime.setMocks(mocks, "registry-trust", "bench", false);
  // Loaded after setMocks so that the SDK is in mock mode when the components load.
  const { RegistryPki } = await import("../components/registry-pki");
  const { NodeTrust } = await import("../components/node-trust");

  const registries = [{ host: "registry.bench.internal", port: 5000, mirrorOf: ["docker.io"] }, { host: "10.20.0.5", port: 5000, mirrorOf: [] }];
  const pki = new RegistryPki("registry", {
    endpoints: registries,
    ca: { mode: "generate", generation: 2, retainGenerations: 1, keyAlgorithm: "ECDSA-P384", validityDays: 1825, commonName: "Bench CA" },
    serving: { mode: "generate", keyAlgorithm: "ECDSA-P256", validityDays: 90, renewBeforeDays: 30, hasKey: false },
  });
  // A realistic fleet mixes OS families and runtimes; scripts are rendered once per combination.
  const kinds = [
    { os: "debian", runtimes: ["containerd"] }, { os: "rhel", runtimes: ["containerd", "crio"] },
    { os: "flatcar", runtimes: ["containerd"] }, { os: "suse", runtimes: ["k3s"] },
  ] as const;
  const nodes = Array.from({ length: nodeCount }, (_, i) => ({
    name: `node-${i}`, host: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 22, user: "root",
    ...kinds[i % kinds.length], runtimes: [...kinds[i % kinds.length].runtimes],
    hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBenchBenchBenchBenchBenchBenchBe",
    proxy: i % 2 === 0 ? { host: "bastion.bench.internal", port: 22, user: "jump", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBastionBenchBastionBenchBastionBenchBas" } : undefined,
  }));
  const trust = new NodeTrust("nodes", {
    nodes, registries, bundlePem: pki.bundlePem, bundleHash: pki.bundleHash, servingChainPem: pki.servingChainPem,
    sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nbench\n-----END OPENSSH PRIVATE KEY-----\n", probeImage: "registry.bench.internal:5000/lab/demo:1",
    allowUnverified: true,
  });
  const settled = <T>(o: pulumi.Output<T>) => new Promise<T>((resolve) => o.apply(resolve));
  const [results] = await Promise.all([settled(trust.results), settled(pki.bundlePem)]);
  if (results.length !== nodeCount) throw new Error(`expected ${nodeCount} results, got ${results.length}`);
  const evalSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  mocks.pki.cleanup();
  return {
    nodes: nodeCount,
    commands: mocks.ofType("command:remote:Command").length,
    evalSeconds,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

function main(): void {
  const sizes = process.argv.slice(2).map(Number);
  const runs = sizes.length > 0 ? sizes : [0, 500];
  console.log(`Pulumi program under mocks (RegistryPki + NodeTrust), one fresh process per size; goal for 500 nodes: < 10 s, < 1 GiB`);
  console.log("nodes  commands  eval_s  peak_rss_MiB");
  for (const n of runs) {
    const tsx = join(REPO, "node_modules", "tsx", "dist", "cli.mjs");
    const run = spawnSync(process.execPath, [tsx, __filename, "--child", String(n)], { cwd: REPO, encoding: "utf8" });
    const line = run.stdout.trim().split("\n").pop() ?? "";
    if (run.status !== 0 || !line.startsWith("{")) {
      process.stderr.write(`run with ${n} nodes failed (exit ${run.status}):\n${run.stderr.slice(0, 2000)}\n`);
      process.exitCode = 1;
      return;
    }
    const f = JSON.parse(line) as Figures;
    console.log(`${String(f.nodes).padStart(5)}  ${String(f.commands).padStart(8)}  ${f.evalSeconds.toFixed(2).padStart(6)}  ${f.peakRssMiB.toFixed(0).padStart(12)}`);
  }
}

if (process.argv[2] === "--child") {
  child(Number(process.argv[3])).then((f) => console.log(JSON.stringify(f)));
} else {
  main();
}
