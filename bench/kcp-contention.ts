// The first incident, measured: update the CA file in a KubeadmControlPlane while a (simulated) CAPI
// controller writes the object every 5–50 ms, N times with the naive read-modify-write the failing product
// used (one write, no retry) and N times with the sequencer, on one real apiserver in the same run.
// Lost = after the trial the KCP does not carry the intended CA.
//
// Usage: npm run bench:kcp [-- --trials N]   (needs `npm run k8s:binaries` once)
// Ends with one line: kcp-contention trials=N naive_lost=N sequenced_lost=N p50_ms=N p99_ms=N
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { KcpObject } from "../core/kcp/api";
import { applyControlPlaneTrust } from "../core/kcp/apply";
import { FileEntry } from "../core/kcp/plan";
import { containerdCaPath } from "../core/node/containerd-hosts";
import { createCa } from "../lab/pki";
import { startApiServer } from "../lab/apiserver";
import { createKcp, GROUP, NAMESPACE, PLURAL, realApi, startSim } from "../lab/capi-objects";

const endpoint = { host: "registry.test", port: 5000, mirrorOf: [] };
const CA_PATH = containerdCaPath(endpoint);

function trialsArg(): number {
  const i = process.argv.indexOf("--trials");
  const n = i >= 0 ? Number(process.argv[i + 1]) : 200;
  if (!Number.isInteger(n) || n < 1) throw new Error(`--trials must be a positive integer, got ${process.argv[i + 1]}`);
  return n;
}

/** Distinct bundles for consecutive trials: ordered pairs of real CAs (20 CAs give 380). */
async function bundles(dir: string, n: number): Promise<string[]> {
  const cas: string[] = [];
  for (let i = 0; i < 20; i++) cas.push((await createCa(path.join(dir, `ca-${i}`), `Bench CA ${i}`)).pem);
  const pairs: string[] = [];
  for (let a = 0; a < cas.length && pairs.length < n; a++) {
    for (let b = 0; b < cas.length && pairs.length < n; b++) if (a !== b) pairs.push(cas[a] + cas[b]);
  }
  while (pairs.length < n) pairs.push(...pairs.slice(0, n - pairs.length));
  return pairs;
}

const caContent = (kcp: KcpObject) => ((kcp.spec?.kubeadmConfigSpec?.files ?? []) as FileEntry[]).find((f) => f.path === CA_PATH)?.content;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function main(): Promise<void> {
  const trials = trialsArg();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kcp-contention-"));
  const env = await startApiServer();
  try {
    const api = realApi(env);
    const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    const wanted = await bundles(dir, trials);
    // A short rollout keeps the sequenced trials quick; the heartbeat pace is the real controller's.
    const simOpts = { observeDelayMs: 10, rolloutDelayMs: 40, heartbeatMinMs: 5, heartbeatMaxMs: 50 };

    // What the failing product did: read, put the CA in, write once; a 409 ends the attempt.
    await createKcp(env, "v1beta2", "bench-naive");
    const naiveSim = startSim(env, "bench-naive", "v1beta2", simOpts);
    const ref = { group: GROUP, version: "v1beta2", namespace: NAMESPACE, plural: PLURAL, name: "bench-naive" };
    let naiveLost = 0;
    let naiveConflicts = 0;
    for (const bundle of wanted) {
      const kcp = (await custom.getNamespacedCustomObject(ref)) as KcpObject;
      const files = ((kcp.spec!.kubeadmConfigSpec!.files ?? []) as FileEntry[]).filter((f) => f.path !== CA_PATH);
      kcp.spec!.kubeadmConfigSpec!.files = [...files, { path: CA_PATH, owner: "root:root", permissions: "0644", content: bundle }];
      await custom.replaceNamespacedCustomObject({ ...ref, body: kcp }).catch((e: { code?: number }) => {
        if (e.code !== 409) throw e;
        naiveConflicts++;
      });
      if (caContent((await custom.getNamespacedCustomObject(ref)) as KcpObject) !== bundle) naiveLost++;
    }
    await naiveSim.stop();

    await createKcp(env, "v1beta2", "bench-sequenced");
    const seqSim = startSim(env, "bench-sequenced", "v1beta2", simOpts);
    const target = { namespace: NAMESPACE, name: "bench-sequenced" };
    let sequencedLost = 0;
    let sequencedConflicts = 0;
    const durations: number[] = [];
    for (const [i, bundle] of wanted.entries()) {
      const started = performance.now();
      try {
        const r = await applyControlPlaneTrust(api, target, { endpoints: [endpoint], bundlePem: bundle }, {
          holder: `bench/trial-${i}`,
          conflict: { deadlineMs: 30_000 },
          rollout: { timeoutMs: 30_000, pollMs: 10 },
        });
        sequencedConflicts += r.conflicts;
      } catch (e) {
        console.error(`trial ${i}: ${(e as Error).message}`);
      }
      durations.push(performance.now() - started);
      if (caContent(await api.getKcp(target, "v1beta2")) !== bundle) sequencedLost++;
    }
    await seqSim.stop();

    durations.sort((a, b) => a - b);
    console.log(`naive: ${naiveConflicts} of ${trials} writes got 409 (controller heartbeats ${naiveSim.heartbeats}); ` +
      `sequenced: ${sequencedConflicts} conflicts retried, each trial includes lease, read-back and rollout wait (heartbeats ${seqSim.heartbeats})`);
    console.log(`kcp-contention trials=${trials} naive_lost=${naiveLost} sequenced_lost=${sequencedLost} ` +
      `p50_ms=${Math.round(percentile(durations, 50))} p99_ms=${Math.round(percentile(durations, 99))}`);
  } finally {
    await env.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
