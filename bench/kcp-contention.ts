// The first incident, measured against the real Cluster API v1.14 controllers (lab/capi.ts: core,
// KubeadmControlPlane, kubeadm bootstrap and CAPD's in-memory backend on a real kube-apiserver): update the
// CA file in a KubeadmControlPlane N times with the naive read-modify-write the failing product used (one
// write, no retry) and N times with the sequencer, each on its own workload cluster, in the same run.
// Lost = after the trial the KCP does not carry the intended CA.
//
// The concurrent writers are the real ones: the KCP controller patches the object on every reconcile, and
// every write of ours is a `files` change that starts a rollout (Machines created and deleted, each event a
// reconcile and a status patch). The naive writer does what the incident's tooling did between its read and
// its write: it issues the new serving certificate (a real openssl run), so the controller's patches land in
// that window as they did in the incident. The sequenced trials do not wait for each rollout: one rollout
// of 3 control-plane machines takes about a minute here, so 200 would take hours; each trial is Lease →
// read → write with the resourceVersion read → 409 retry → read-back, under a controller that is rolling
// out throughout (every trial's write restarts the rollout). `--rollout-wait` waits for each rollout too.
// The rollout wait itself is proven against the same controllers in test/k8s and test/lab.
//
// Usage: npm run bench:kcp [-- --trials N] [-- --rollout-wait]   (needs scripts/k8s-binaries.sh and scripts/capi-binaries.sh once)
// Ends with one line: kcp-contention controller=cluster-api-vX trials=N naive_lost=N sequenced_lost=N p50_ms=N p99_ms=N
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { KcpObject } from "../core/kcp/api";
import { applyControlPlaneTrust } from "../core/kcp/apply";
import { FileEntry } from "../core/kcp/plan";
import { containerdCaPath } from "../core/node/containerd-hosts";
import { createCa, issueServerCert } from "../lab/pki";
import { startManagementCluster } from "../lab/capi";
import { createManagedCluster, GROUP, managedClusterNames, NAMESPACE, PLURAL, realApi, waitForClusterRolledOut } from "../lab/capi-objects";

const endpoint = { host: "registry.test", port: 5000, mirrorOf: [] };
const CA_PATH = containerdCaPath(endpoint);

function intArg(flag: string, fallback: number): number {
  const i = process.argv.indexOf(flag);
  const n = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got ${process.argv[i + 1]}`);
  return n;
}

/** Distinct bundles for consecutive trials: ordered pairs of real CAs (20 CAs give 380). */
async function bundles(dir: string, n: number): Promise<{ pems: string[]; cas: Awaited<ReturnType<typeof createCa>>[] }> {
  const cas = [];
  for (let i = 0; i < 20; i++) cas.push(await createCa(path.join(dir, `ca-${i}`), `Bench CA ${i}`));
  const pems: string[] = [];
  for (let a = 0; a < cas.length && pems.length < n; a++) {
    for (let b = 0; b < cas.length && pems.length < n; b++) if (a !== b) pems.push(cas[a].pem + cas[b].pem);
  }
  while (pems.length < n) pems.push(...pems.slice(0, n - pems.length));
  return { pems, cas };
}

const caContent = (kcp: KcpObject) => ((kcp.spec?.kubeadmConfigSpec?.files ?? []) as FileEntry[]).find((f) => f.path === CA_PATH)?.content;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Counts the writes to one object (resourceVersion changes) seen by a watch, by field manager where the apiserver tells. */
function countWrites(kc: k8s.KubeConfig, name: string): { writes: () => number; stop: () => void } {
  let writes = 0;
  let aborted = false;
  let req: { abort(): void } | undefined;
  const watch = new k8s.Watch(kc);
  const start = () => {
    void watch.watch(`/apis/${GROUP}/v1beta2/namespaces/${NAMESPACE}/${PLURAL}`, { fieldSelector: `metadata.name=${name}` },
      (type) => { if (type === "MODIFIED") writes++; },
      () => { if (!aborted) setTimeout(start, 100); },
    ).then((r) => { req = r; }, () => { if (!aborted) setTimeout(start, 100); });
  };
  start();
  return { writes: () => writes, stop: () => { aborted = true; req?.abort(); } };
}

async function main(): Promise<void> {
  const trials = intArg("--trials", 200);
  const rolloutWait = process.argv.includes("--rollout-wait");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kcp-contention-"));
  const started = Date.now();
  const mgmt = await startManagementCluster();
  const { api: env } = mgmt;
  try {
    const api = realApi(env);
    const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    const { pems: wanted, cas } = await bundles(dir, trials);
    const naiveNames = managedClusterNames("bench-naive");
    const seqNames = managedClusterNames("bench-seq");
    await createManagedCluster(env, naiveNames, { workerReplicas: 0 });
    await createManagedCluster(env, seqNames, { workerReplicas: 0 });
    await waitForClusterRolledOut(env, naiveNames, 600_000);
    await waitForClusterRolledOut(env, seqNames, 600_000);
    console.log(`management cluster (${mgmt.controllers}) and two workload clusters of 3 control-plane machines up in ${Math.round((Date.now() - started) / 1000)} s`);

    // What the failing product did: read, issue the serving certificate, put the CA in, write once; a 409
    // ends the attempt. Back to back, as a burst of rotations: each write it lands starts a KCP rollout.
    const ref = { group: GROUP, version: "v1beta2", namespace: NAMESPACE, plural: PLURAL, name: naiveNames.controlPlane };
    const naiveWrites = countWrites(env.kubeConfig, naiveNames.controlPlane);
    let naiveLost = 0;
    let naiveConflicts = 0;
    const naiveStarted = Date.now();
    for (const [i, bundle] of wanted.entries()) {
      const kcp = (await custom.getNamespacedCustomObject(ref)) as KcpObject;
      await issueServerCert(cas[i % cas.length], path.join(dir, `naive-${i}`), ["registry.test"], []);
      const files = ((kcp.spec!.kubeadmConfigSpec!.files ?? []) as FileEntry[]).filter((f) => f.path !== CA_PATH);
      kcp.spec!.kubeadmConfigSpec!.files = [...files, { path: CA_PATH, owner: "root:root", permissions: "0644", content: bundle }];
      await custom.replaceNamespacedCustomObject({ ...ref, body: kcp }).catch((e: { code?: number }) => {
        if (e.code !== 409) throw e;
        naiveConflicts++;
      });
      if (caContent((await custom.getNamespacedCustomObject(ref)) as KcpObject) !== bundle) naiveLost++;
    }
    const naiveSeconds = (Date.now() - naiveStarted) / 1000;
    naiveWrites.stop();

    const target = { namespace: NAMESPACE, name: seqNames.controlPlane };
    const seqWrites = countWrites(env.kubeConfig, seqNames.controlPlane);
    let sequencedLost = 0;
    let sequencedConflicts = 0;
    const durations: number[] = [];
    for (const [i, bundle] of wanted.entries()) {
      const t0 = performance.now();
      try {
        await issueServerCert(cas[i % cas.length], path.join(dir, `seq-${i}`), ["registry.test"], []);
        const r = await applyControlPlaneTrust(api, target, { endpoints: [endpoint], bundlePem: bundle }, {
          holder: `bench/trial-${i}`,
          conflict: { deadlineMs: 60_000 },
          rollout: { wait: rolloutWait, timeoutMs: 300_000, pollMs: 100 },
        });
        sequencedConflicts += r.conflicts;
      } catch (e) {
        console.error(`trial ${i}: ${(e as Error).message}`);
      }
      durations.push(performance.now() - t0);
      if (caContent(await api.getKcp(target, "v1beta2")) !== bundle) sequencedLost++;
      if ((i + 1) % 20 === 0) console.error(`sequenced: ${i + 1}/${trials} trials, ${sequencedConflicts} conflicts retried so far`);
    }
    seqWrites.stop();

    durations.sort((a, b) => a - b);
    console.log(`naive: ${naiveConflicts} of ${trials} writes got 409 in ${Math.round(naiveSeconds)} s, while other writers modified the KCP ${naiveWrites.writes() - (trials - naiveConflicts)} times; ` +
      `sequenced: ${sequencedConflicts} conflicts retried, each trial includes lease, write and read-back${rolloutWait ? " and the rollout wait" : " (no rollout wait)"}, KCP modified ${seqWrites.writes()} times in all`);
    console.log(`kcp-contention controller=${mgmt.controllers} trials=${trials} naive_lost=${naiveLost} sequenced_lost=${sequencedLost} ` +
      `p50_ms=${Math.round(percentile(durations, 50))} p99_ms=${Math.round(percentile(durations, 99))}`);
  } finally {
    await mgmt.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
