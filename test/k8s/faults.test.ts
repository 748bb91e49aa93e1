// Faults during a control-plane and worker trust write, against the real Cluster API v1.14 controllers
// (lab/capi.ts) on a real etcd + kube-apiserver: the apiserver restarted while the sequencer waits for the
// rollout, the apiserver down for longer than the Lease, and a rollout that does not finish because the
// Cluster is paused (what `clusterctl move` and operators do; every Cluster API controller then leaves its
// objects alone). Each must end in a clear error or a retry that says what it waits for, leave no Lease
// behind for longer than its duration, and a rerun must converge. Control planes of one machine keep the
// real rollouts short. Needs scripts/k8s-binaries.sh and scripts/capi-binaries.sh first.
import { spawn } from "node:child_process";
import * as k8s from "@kubernetes/client-node";
import * as fs from "node:fs";
import * as path from "node:path";
import { KcpApi, KcpObject } from "../../core/kcp/api";
import { applyControlPlaneTrust } from "../../core/kcp/apply";
import { isKcpError, kcpError } from "../../core/kcp/errors";
import { isTransient, rolloutState } from "../../core/kcp/rollout";
import { leaseRef } from "../../core/kcp/lease";
import { FileEntry } from "../../core/kcp/plan";
import { SequencerEvent, SequencerOptions } from "../../core/kcp/sequencer";
import { TestPki } from "../../lab/openssl-pki";
import { ApiServer } from "../../lab/apiserver";
import { ManagementCluster, startManagementCluster } from "../../lab/capi";
import { caBundles, expectTrustEntries, fastOptions } from "./kcp-support";
import { createManagedCluster, managedClusterNames, ManagedClusterNames, NAMESPACE, OTHERS_FILES, realApi, waitForClusterRolledOut, workerApi } from "../../lab/capi-objects";
import { writeWorkerTrust, WorkerEvent } from "../../core/workers/sequencer";
import { configRefName } from "../../core/workers/template";

jest.setTimeout(300_000);

const VERSION = "v1beta2" as const;
const endpoints = [{ host: "registry.test", port: 5000, mirrorOf: [] }];
const pki = new TestPki();
const [bundleA, bundleB] = caBundles(pki, 2);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let mgmt: ManagementCluster;
let env: ApiServer;
let api: KcpApi;
/** kube-apiserver processes this file started itself (restarts); apiserver.ts only knows the first. */
const restarted: Array<{ pid: number; exited: Promise<void> }> = [];
const clusters: Record<"restart" | "lease" | "timeout" | "md", ManagedClusterNames> = {
  restart: managedClusterNames("fault-restart"),
  lease: managedClusterNames("fault-lease"),
  timeout: managedClusterNames("fault-timeout"),
  md: managedClusterNames("fault-md"),
};

beforeAll(async () => {
  mgmt = await startManagementCluster();
  env = mgmt.api;
  api = realApi(env);
  for (const [key, names] of Object.entries(clusters)) {
    await createManagedCluster(env, names, { controlPlaneReplicas: 1, workerReplicas: key === "md" ? 1 : 0 });
  }
  for (const names of Object.values(clusters)) await waitForClusterRolledOut(env, names, 300_000);
}, 600_000);

afterAll(async () => {
  for (const p of restarted) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // Stopped already by a later fault.
    }
    await p.exited;
  }
  // The managers first (they hold the CAPD lock), then the apiserver this file may have restarted itself.
  await mgmt?.capi.stop();
  await env?.stop();
  pki.cleanup();
});

/** Sets the Cluster's spec.paused: every Cluster API controller stops (or resumes) reconciling its objects. */
async function pause(cluster: string, paused: boolean): Promise<void> {
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  await custom.patchNamespacedCustomObject({ group: "cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "clusters", name: cluster, body: { spec: { paused } } },
    k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
}

/** Real rollouts of one machine take 15–40 s here. */
const rollout = { timeoutMs: 180_000, pollMs: 250 };

const files = (kcp: KcpObject) => kcp.spec!.kubeadmConfigSpec!.files as FileEntry[];
/** Our entries for `bundlePem` are in the KCP's files, after every other writer's. */
function expectOurs(kcp: KcpObject, bundlePem: string): void {
  expectTrustEntries(files(kcp).slice(OTHERS_FILES.length), bundlePem);
}

function options(holder: string, events: SequencerEvent[], extra: Partial<SequencerOptions> = {}): SequencerOptions {
  return { ...fastOptions(holder, events), rollout, ...extra };
}

/**
 * Stops kube-apiserver (SIGTERM, as systemd or the kubelet would) and returns a function that starts it
 * again with the very same command line and working directory, resolving once it answers.
 */
async function stopApiServer(): Promise<() => Promise<void>> {
  const pid = restarted.at(-1)?.pid ?? env.pids.kubeApiserver;
  const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  process.kill(pid, "SIGTERM");
  await waitFor("kube-apiserver to stop", async () => !(await answers()), 20_000);
  return async () => {
    const log = fs.openSync(path.join(env.dir, "kube-apiserver-restarted.log"), "a");
    const child = spawn(argv[0], argv.slice(1), { cwd: env.dir, env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    restarted.push({ pid: child.pid!, exited: new Promise((r) => child.once("exit", () => r())) });
    await waitFor("kube-apiserver to answer again", answers, 60_000);
  };
}

async function answers(): Promise<boolean> {
  try {
    await api.getKcp({ namespace: NAMESPACE, name: "probe-none" }, VERSION);
    return true;
  } catch (e) {
    return (e as { code?: unknown }).code === 404;
  }
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test("apiserver restarted while the sequencer waits for the rollout: the wait says what failed, retries, and completes; the Lease is released", async () => {
  const name = clusters.restart.controlPlane;
  const target = { namespace: NAMESPACE, name, apiVersion: VERSION };
  const events: SequencerEvent[] = [];
  const run = applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA },
    options("stack/restart-1", events, { lease: { durationSeconds: 30, retryMs: 50, waitTimeoutMs: 20_000 }, rollout: { timeoutMs: 240_000, pollMs: 100 } }));
  await waitFor("the rollout wait", async () => events.some((e) => e.phase === "rollout"), 20_000);
  const start = await stopApiServer();
  // Down until the wait has met the outage (rather than for a fixed time it may not have polled in).
  const outage = (e: SequencerEvent) => e.phase === "rollout" && /cannot read KubeadmControlPlane default\/fault-restart-control-plane/.test(e.message);
  await waitFor("the rollout wait to report the unavailable apiserver", async () => events.some(outage), 20_000);
  await start();
  const result = await run;

  expect(result.written).toBe(true);
  const unavailable = events.filter(outage);
  expect(unavailable.length).toBeGreaterThanOrEqual(1);
  expect(unavailable[0].message).toMatch(/ECONNREFUSED|connection refused|socket hang up|ECONNRESET|503/);
  expect(unavailable[0].message).toMatch(/retrying until the rollout deadline/);
  expect(events.at(-1)).toMatchObject({ phase: "released" });
  expect(await api.getLease(leaseRef(target))).toBeUndefined();
  const kcp = await api.getKcp(target, VERSION);
  expectOurs(kcp, bundleA);

  // Rerun: nothing to write, the rollout is already done.
  const again = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA }, options("stack/restart-2", []));
  expect(again.written).toBe(false);
  expect(again.generation).toBe(result.generation);
  // The real controllers carried on after the restart: the control plane's machine is one made from our write.
  expect(rolloutState(kcp, VERSION, result.generation).done).toBe(true);
});

test("apiserver down for longer than the Lease: the run fails naming the Lease, and a rerun by another holder takes it over and converges", async () => {
  const name = clusters.lease.controlPlane;
  const target = { namespace: NAMESPACE, name, apiVersion: VERSION };
  const events: SequencerEvent[] = [];
  const run = applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA },
    options("stack/lease-1", events, { lease: { durationSeconds: 2, retryMs: 50, waitTimeoutMs: 20_000 }, rollout: { timeoutMs: 240_000, pollMs: 100 } }));
  const failed = run.then(() => undefined, (e: unknown) => e);
  await waitFor("the rollout wait", async () => events.some((e) => e.phase === "rollout"), 20_000);
  const start = await stopApiServer();
  const err = await failed;
  await start();

  expect(isKcpError(err, "LEASE_LOST")).toBe(true);
  expect((err as Error).message).toMatch(/could not renew Lease default\/registry-trust-kcp-fault-lease-control-plane within its 2 s/);
  expect((err as Error).message).toContain("rerun once the apiserver answers");
  expect(events.at(-1)).toMatchObject({ phase: "released", message: expect.stringContaining("was lost while held and is left as it is; it frees itself once unrenewed for 2 s") });
  // Whatever is left of the Lease expires: a new run waits one lease duration at most, then writes (and
  // waits for the real rollout of both changes).
  const rerunEvents: SequencerEvent[] = [];
  const rerun = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleB }, options("stack/lease-2", rerunEvents));
  const acquired = rerunEvents.find((e) => e.phase === "lease-acquired")!.at;
  expect(acquired - rerunEvents[0].at).toBeLessThan(15_000);
  expect(rerun.written).toBe(true);
  expectOurs(await api.getKcp(target, VERSION), bundleB);
  expect(await api.getLease(leaseRef(target))).toBeUndefined();
});

test("rollout does not finish (the Cluster is paused mid-rollout): ROLLOUT_TIMEOUT names the KCP, the generation, how long and where it stands; once unpaused, a rerun converges", async () => {
  const name = clusters.timeout.controlPlane;
  const target = { namespace: NAMESPACE, name, apiVersion: VERSION };
  const events: SequencerEvent[] = [];
  // Paused as soon as the controller reports our generation rolling out.
  let paused: Promise<void> | undefined;
  const onEvent = (e: SequencerEvent) => {
    events.push(e);
    if (!paused && e.phase === "rollout" && /RollingOut=True/.test(e.message)) paused = pause(clusters.timeout.cluster, true);
  };
  const err = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA },
    // 30 s: the real KCP controller must first observe the write and report RollingOut (the pause waits for
    // that); with other runs on the 2 cores it took more than 10 s once.
    { ...options("stack/timeout-1", []), onEvent, rollout: { timeoutMs: 30_000, pollMs: 100 } }).then(() => undefined, (e: unknown) => e);
  await paused;

  expect(isKcpError(err, "ROLLOUT_TIMEOUT")).toBe(true);
  const written = events.find((e) => e.phase === "written")!;
  const generation = Number(/generation (\d+)/.exec(written.message)![1]);
  expect((err as Error).message).toContain(`rollout of KubeadmControlPlane default/${name} (generation ${generation}) not finished after 30 s: generation ${generation}: `);
  expect((err as Error).message).toMatch(/\d\/1 up to date, \d\/1 ready, \d machines, RollingOut=True \(RollingOut\)/);
  expect((err as Error).message).toContain("the trust entries are written and the rollout goes on");
  expect(await api.getLease(leaseRef(target))).toBeUndefined();

  // Unpaused, the controllers finish the rollout; the same run again converges without writing.
  await pause(clusters.timeout.cluster, false);
  const rerun = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA }, options("stack/timeout-2", []));
  expect(rerun.written).toBe(false);
  expect(rerun.generation).toBe(generation);
  expectOurs(await api.getKcp(target, VERSION), bundleA);
});

test("a MachineDeployment rollout that does not finish (Cluster paused before it starts): the same ROLLOUT_TIMEOUT naming it and its machines; once unpaused, a rerun converges", async () => {
  const workers = workerApi(env);
  const name = clusters.md.machineDeployment;
  const target = { namespace: NAMESPACE, name, apiVersion: VERSION };
  await pause(clusters.md.cluster, true);
  const events: WorkerEvent[] = [];
  const err = await writeWorkerTrust(workers, target, { endpoints, bundlePem: bundleA }, { ...fastOptions("stack/md-1", events), rollout: { timeoutMs: 5_000, pollMs: 100 } })
    .then(() => undefined, (e: unknown) => e);
  // The code, or else what was thrown (or "resolved"), so that a failure says what happened instead.
  expect(isKcpError(err, "ROLLOUT_TIMEOUT") ? "ROLLOUT_TIMEOUT" : err === undefined ? "resolved" : String((err as Error).stack ?? err)).toBe("ROLLOUT_TIMEOUT");
  const md = await workers.getMachineDeployment(target, VERSION);
  const template = configRefName(md);
  // Paused, the controller never observed our generation.
  expect((err as Error).message).toContain(`rollout of MachineDeployment default/${name} (generation ${md.metadata.generation}) not finished after 5 s: ` +
    `waiting for the controller to observe generation ${md.metadata.generation} (observed: ${md.metadata.generation! - 1})`);
  expect(await workers.getLease(leaseRef(target, "MachineDeployment"))).toBeUndefined();

  await pause(clusters.md.cluster, false);
  const rerun = await writeWorkerTrust(workers, target, { endpoints, bundlePem: bundleA }, { ...fastOptions("stack/md-2"), rollout });
  expect(rerun).toMatchObject({ written: false, generation: md.metadata.generation, template });
  const done = await workers.getMachineDeployment(target, VERSION);
  expect(done.status).toMatchObject({ observedGeneration: md.metadata.generation, upToDateReplicas: 1, readyReplicas: 1, replicas: 1 });
});

test("a system error is not one of our refusals: it is transient and retried, our refusals are final", () => {
  const reset = Object.assign(new Error("request to https://127.0.0.1:1/ failed, reason: socket hang up"), { code: "ECONNRESET", type: "system" });
  expect(isKcpError(reset)).toBe(false);
  expect(isTransient(reset)).toBe(true);
  expect(isTransient(Object.assign(new Error("Service Unavailable"), { code: 503 }))).toBe(true);
  expect(isTransient(Object.assign(new Error("Forbidden"), { code: 403 }))).toBe(false);
  expect(isTransient(kcpError("KCP_NOT_FOUND", "KubeadmControlPlane default/x not found"))).toBe(false);
});
