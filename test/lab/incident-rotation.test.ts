/**
 * Incident 1 replayed (../shared/design.md §1): two CA rotations in quick succession (G1 → G2 → G3, the
 * second started 100 ms after the first) against the real Cluster API v1.14 controllers (lab/capi.ts: the
 * KubeadmControlPlane controller rolls every write out through real Machines on CAPD's in-memory backend)
 * on a real kube-apiserver, with CRI pulls sampled on every lab node throughout. The control plane has one
 * machine: a rollout of three takes about a minute here and would triple the test's time without
 * exercising anything the KCP does differently.
 *
 * The protocol, driven through the engine-free core: bundle = new ∪ currently served ∪ retained
 * (core/pki bundleGenerations + core/x509 assembleBundle), node installs with the rendered node script
 * over ssh, the KCP through core/kcp (Lease, resourceVersion, 409 retry, read-back, rollout wait), and the
 * registry's serving certificate switched only after all of that. The second rotation's preflight
 * (core/rotation) refuses it while the first is in flight, and it runs once that has finished. The naive way (read-modify-write of the
 * KCP with no retry and no Lease, the serving certificate switched right away) must reproduce the stale
 * CA and the x509 failures, or this test fails.
 *
 * Needs the lab's packages (root), scripts/k8s-binaries.sh and scripts/capi-binaries.sh.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { fetchServedChain } from "../../core/served-chain";
import { KcpApi, KcpObject } from "../../core/kcp/api";
import { applyControlPlaneTrust } from "../../core/kcp/apply";
import { apiMessage } from "../../core/kcp/errors";
import { FileEntry } from "../../core/kcp/plan";
import { rolloutState, waitForRollout } from "../../core/kcp/rollout";
import { SequencerEvent, SequencerResult } from "../../core/kcp/sequencer";
import { containerdCaPath } from "../../core/node/containerd-hosts";
import { bundleGenerations } from "../../core/pki/plan";
import { clientNodeClusterReader, evaluatePreflight, LiveReaders, PreflightPlan, preflightVerdict, readLiveState } from "../../core/rotation/preflight";
import { assembleBundle, bundleHash } from "../../core/x509/bundle";
import { startLab, type Lab } from "../../lab/lab";
import { ApiServer } from "../../lab/apiserver";
import { ManagementCluster, startManagementCluster } from "../../lab/capi";
import { createManagedCluster, managedClusterNames, NAMESPACE, realApi, waitForClusterRolledOut } from "../../lab/capi-objects";
import { anotherProductInBetween, fastOptions, OTHER_PRODUCT_PATH } from "../k8s/kcp-support";
import {
  endpointsOf, Generation, generationsIn, installOnNode, isRestartGap, makeGenerations, PullSample, PullSampler, servedGeneration,
  X509_UNKNOWN_AUTHORITY,
} from "./incident-support";

jest.setTimeout(300_000);

const VERSION = "v1beta2" as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}

let lab: Lab;
let mgmt: ManagementCluster;
let env: ApiServer;
let api: KcpApi;
let gens: Generation[];
let work: string;

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "incident-rotation-"));
  [lab, mgmt] = await Promise.all([startLab({ nodes: 2 }), startManagementCluster()]);
  env = mgmt.api;
  api = realApi(env);
  gens = await makeGenerations(lab, work, 3);
}, 300_000);

afterAll(async () => {
  await Promise.allSettled([lab?.stop(), mgmt?.stop()]);
  if (work) fs.rmSync(work, { recursive: true, force: true });
}, 60_000);

/** The sequencer's test timings, with room for a real rollout (one machine replaced: 15–40 s here). */
const options = (holder: string, events?: SequencerEvent[]) => ({ ...fastOptions(holder, events), rollout: { timeoutMs: 180_000, pollMs: 250 } });

/** The CA bundle entry our KCP carries for the lab registry. */
function caEntry(kcp: KcpObject): FileEntry | undefined {
  const files = (kcp.spec?.kubeadmConfigSpec?.files ?? []) as FileEntry[];
  return files.find((f) => f.path === containerdCaPath(endpointsOf(lab)[0]));
}

const bundleOf = (...ns: number[]) => assembleBundle(ns.map((n) => gens[n - 1].caPem)).pem;

/**
 * Every node trusts only G1, the registry serves G1, and a new workload cluster's KCP carries G1 (written by
 * the sequencer and rolled out by the real controller).
 */
async function startFromG1(cluster: string): Promise<{ target: { namespace: string; name: string; apiVersion: typeof VERSION } }> {
  const names = managedClusterNames(cluster);
  await createManagedCluster(env, names, { controlPlaneReplicas: 1, workerReplicas: 0 });
  await waitForClusterRolledOut(env, names, 240_000);
  const target = { namespace: NAMESPACE, name: names.controlPlane, apiVersion: VERSION };
  await lab.registry.serve(gens[0].certPem, gens[0].keyPem);
  await Promise.all([
    ...lab.nodes.map((n) => installOnNode(lab, n, bundleOf(1))),
    applyControlPlaneTrust(api, target, { endpoints: endpointsOf(lab), bundlePem: bundleOf(1) }, options(`${cluster}/setup`)),
  ]);
  return { target };
}

interface Mark {
  readonly at: number;
  readonly what: string;
}

/** Pulls that started after `from` and ended before `to`. */
const within = (samples: PullSample[], from: number, to: number) => samples.filter((s) => s.start >= from && s.end <= to);

test("incident 1, protocol: two quick rotations under the real KCP controller and another writer end with the latest bundle, the other writer's update kept, and no x509 pull failure", async () => {
  const { target } = await startFromG1("incident-protocol");
  const others: Array<ReturnType<typeof anotherProductInBetween>> = [];
  const marks: Mark[] = [];
  const mark = (what: string) => marks.push({ at: Date.now(), what });
  const events: SequencerEvent[] = [];

  const rotate = async (g: Generation, bundlePem: string): Promise<{ bundlePem: string; kcp: SequencerResult }> => {
    mark(`G${g.n} start`);
    // Between the read and the first KCP write of each rotation another product updates its own file in the
    // KCP: the apiserver answers the incident's 409, which the sequencer must survive without losing either.
    const [, kcp] = await Promise.all([
      (async () => {
        for (const node of lab.nodes) await installOnNode(lab, node, bundlePem);
        mark(`G${g.n} nodes verified`);
      })(),
      applyControlPlaneTrust(others[others.push(anotherProductInBetween(api)) - 1], target, { endpoints: endpointsOf(lab), bundlePem }, options(`stack/rotate-g${g.n}`, events)),
    ]);
    mark(`G${g.n} KCP rolled out`);
    await lab.registry.serve(g.certPem, g.keyPem);
    mark(`G${g.n} served`);
    return { bundlePem, kcp };
  };
  // Overlap invariant: new ∪ the CA of what is served now ∪ the retained generation.
  const bundleFor = async (g: Generation) =>
    assembleBundle([...bundleGenerations(g.n, 1).map((n) => gens[n - 1].caPem), (await servedGeneration(lab, gens)).caPem]).pem;
  // The rotation preflight (core/rotation) on the live state: registry, KCP, Leases.
  const plan: PreflightPlan = {
    registries: endpointsOf(lab),
    ca: { mode: "import" },
    clusters: [{ name: "mgmt", controlPlanes: [{ namespace: NAMESPACE, name: target.name }], machineDeployments: [] }],
  };
  const readers: LiveReaders = {
    // The host does not resolve registry.test (only the nodes do): connect to its address.
    fetchChain: (e, timeoutMs) => fetchServedChain({ ...e, host: lab.registry.address }, timeoutMs),
    cluster: () => clientNodeClusterReader(k8s, env.kubeConfig),
  };
  const preflight = async (bundlePem: string) =>
    preflightVerdict(evaluatePreflight(plan, await readLiveState(plan, readers), { pem: bundlePem, hash: bundleHash(bundlePem) }), false);

  const sampler = new PullSampler(lab);
  await sampler.untilEachNode("a pull that succeeds before the rotation", (s) => !s.error);
  const bundle2 = await bundleFor(gens[1]);
  expect((await preflight(bundle2)).error).toBeUndefined();
  const first = rotate(gens[1], bundle2);
  first.catch(() => undefined);
  // The second rotation starts once the first holds the KCP's Lease (which it takes at once).
  await waitUntil(() => events.some((e) => e.holder === "stack/rotate-g2" && e.phase === "lease-acquired"));
  const refused = await preflight(await bundleFor(gens[2]));
  mark("G3 refused");
  expect(refused.error).toMatch(new RegExp("^Rotation preflight refused; nothing was changed:\n  - unfinished: KubeadmControlPlane default/incident-protocol-control-plane in cluster mgmt " +
    'is being changed right now: Lease default/registry-trust-kcp-incident-protocol-control-plane is held by "stack/rotate-g2"'));
  // Run again once the first has finished, as its refusal says: now it passes and rotates.
  const r2 = await first;
  const bundle3 = await bundleFor(gens[2]);
  expect((await preflight(bundle3)).error).toBeUndefined();
  const r3 = await rotate(gens[2], bundle3);
  const g3Served = marks.find((m) => m.what === "G3 served")!.at;
  await sampler.untilEachNode("a pull begun after G3 is served", (s) => s.start >= g3Served);
  const samples = await sampler.stop();
  const at = (what: string) => marks.find((m) => m.what === what)!.at;

  // The KCP ends with the latest bundle: G3 plus the retained G2, G1 gone; the other product's last update kept.
  expect(generationsIn(r3.bundlePem, gens)).toEqual([3, 2]);
  const final = await api.getKcp(target, VERSION);
  expect(caEntry(final)).toMatchObject({ content: r3.bundlePem });
  expect(others.map((o) => o.updates.length)).toEqual([1, 1]);
  expect((final.spec!.kubeadmConfigSpec!.files as FileEntry[]).find((f) => f.path === OTHER_PRODUCT_PATH)).toMatchObject({ content: others[1].updates[0] });
  // The real controller rolled it out: the control plane's one Machine was replaced by one whose bootstrap
  // data carries the G3 bundle.
  expect(rolloutState(final, VERSION, final.metadata.generation ?? 0).done).toBe(true);
  expect((await servedGeneration(lab, gens)).n).toBe(3);
  // Both rotations met real 409s and retried through them.
  expect(r2.kcp.conflicts).toBeGreaterThanOrEqual(1);
  expect(r3.kcp.conflicts).toBeGreaterThanOrEqual(1);
  expect(events.some((e) => e.phase === "conflict" && /the object has been modified/.test(e.message))).toBe(true);
  // Order: each switch only after its distribution; the second rotation refused while the first ran, then run after it.
  expect(at("G3 refused")).toBeLessThan(at("G2 served"));
  expect(at("G2 served")).toBeGreaterThan(Math.max(at("G2 nodes verified"), at("G2 KCP rolled out")));
  expect(at("G3 start")).toBeGreaterThanOrEqual(at("G2 served"));
  expect(at("G3 served")).toBeGreaterThan(Math.max(at("G3 nodes verified"), at("G3 KCP rolled out")));

  // Sampled throughout on every node: before, between and after the two switches.
  for (const node of lab.nodes) {
    const mine = samples.filter((s) => s.node === node.name);
    expect(within(mine, 0, at("G2 start")).filter((s) => !s.error).length).toBeGreaterThanOrEqual(1);
    expect(within(mine, at("G2 served"), at("G3 served")).filter((s) => !s.error).length).toBeGreaterThanOrEqual(1);
    expect(within(mine, at("G3 served"), Infinity).filter((s) => !s.error).length).toBeGreaterThanOrEqual(1);
  }
  // Never an x509 failure; the only failures allowed are docker-registry's restarts onto a new certificate.
  expect(sampler.x509Failures()).toEqual([]);
  expect(samples.filter((s) => s.error && !isRestartGap(s.error))).toEqual([]);
  expect(samples.length).toBeGreaterThanOrEqual(20);
});

test("incident 1, naive: read-modify-write without retry or Lease and an immediate switch reproduce the stale CA", async () => {
  const { target } = await startFromG1("incident-naive");
  const marks: Mark[] = [];
  const mark = (what: string) => marks.push({ at: Date.now(), what });
  const lost: string[] = [];

  // What the incident's tooling did for each rotation: read the KCP, put the new bundle into the docker CA
  // file, PUT the object back (it carries the resourceVersion it was read with: custom resources refuse an
  // update without one), log a failure and carry on, and switch the registry's certificate right away.
  // The two runs overlapped: the second read the KCP before the first wrote it (the tool issued the new
  // serving certificate between its read and its write). The interleaving is forced, not left to timing.
  const naive = async (g: Generation, hooks: { read?: () => void; beforeWrite?: Promise<void>; written?: () => void }) => {
    const bundlePem = bundleOf(g.n, g.n - 1);
    const kcp = await api.getKcp(target, VERSION);
    hooks.read?.();
    const spec = kcp.spec!.kubeadmConfigSpec!;
    const files = (spec.files as FileEntry[]).map((f) => (f.path === caEntry(kcp)!.path ? { ...f, content: bundlePem } : f));
    await hooks.beforeWrite;
    try {
      await api.replaceKcp(target, VERSION, { ...kcp, spec: { ...kcp.spec, kubeadmConfigSpec: { ...spec, files } } });
      mark(`G${g.n} KCP written`);
    } catch (e) {
      lost.push(apiMessage(e));
    } finally {
      hooks.written?.();
    }
    await lab.registry.serve(g.certPem, g.keyPem);
    mark(`G${g.n} served`);
  };

  const sampler = new PullSampler(lab);
  await sampler.untilEachNode("a pull that succeeds before the rotations", (s) => !s.error);
  let secondRead!: () => void;
  let firstWritten!: () => void;
  const secondHasRead = new Promise<void>((r) => (secondRead = r));
  const firstHasWritten = new Promise<void>((r) => (firstWritten = r));
  await Promise.all([
    naive(gens[1], { beforeWrite: secondHasRead, written: firstWritten }),
    naive(gens[2], { read: secondRead, beforeWrite: firstHasWritten }),
  ]);
  // Control-plane machines get their trust from the KCP: once it has rolled out, each node carries what
  // the KCP's files entry says, as a machine created from it would.
  const kcp = await api.getKcp(target, VERSION);
  await waitForRollout(() => api.getKcp(target, VERSION), (o) => rolloutState(o, VERSION, kcp.metadata.generation ?? 0), kcp.metadata.generation ?? 0, {
    timeoutMs: 180_000, pollMs: 250, what: `KubeadmControlPlane ${target.name}`,
  });
  const kcpBundle = caEntry(kcp)!.content!;
  // kubeadm writes the files without checking them against the registry: no TLS probe here.
  for (const node of lab.nodes) await installOnNode(lab, node, kcpBundle, { probeTls: false });
  mark("nodes from KCP");
  const nodesDone = marks.find((m) => m.what === "nodes from KCP")!.at;
  await sampler.untilEachNode("a pull begun after the nodes took the KCP's bundle", (s) => s.start >= nodesDone);
  const samples = await sampler.stop();

  // The incident's 409, not retried: the KCP is left with a stale bundle while the registry serves G3.
  expect(lost.join("\n")).toMatch(/the object has been modified; please apply your changes to the latest version and try again/);
  expect(generationsIn(kcpBundle, gens)).not.toContain(3);
  expect((await servedGeneration(lab, gens)).n).toBe(3);
  // And pulls fail with x509 unknown authority: right after the switch, and still once the nodes carry
  // what the KCP says (the ImagePullBackOff that only a manual redo fixed).
  const x509 = sampler.x509Failures();
  expect(x509.every((s) => samples.includes(s))).toBe(true);
  expect(x509.length).toBeGreaterThanOrEqual(1);
  expect(x509[0].error).toContain(X509_UNKNOWN_AUTHORITY);
  const afterNodes = marks.find((m) => m.what === "nodes from KCP")!.at;
  for (const node of lab.nodes) {
    expect(within(x509, afterNodes, Infinity).filter((s) => s.node === node.name).length).toBeGreaterThanOrEqual(1);
  }
});
