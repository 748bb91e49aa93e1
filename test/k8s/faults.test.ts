// Faults during a control-plane trust write, on a real etcd + kube-apiserver with the real Cluster API CRDs
// and the simulated CAPI controller: the apiserver restarted while the sequencer waits for the rollout, and
// a rollout that never finishes. Each must end in a clear error or a retry that says what it waits for,
// leave no Lease behind for longer than its duration, and a rerun must converge.
// Needs `npm run k8s:binaries` first.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { KcpApi, KcpObject } from "../../core/kcp/api";
import { applyControlPlaneTrust } from "../../core/kcp/apply";
import { isKcpError, kcpError } from "../../core/kcp/errors";
import { isTransient } from "../../core/kcp/rollout";
import { leaseRef } from "../../core/kcp/lease";
import { FileEntry } from "../../core/kcp/plan";
import { SequencerEvent, SequencerOptions } from "../../core/kcp/sequencer";
import { TestPki } from "../support/pki";
import { ApiServer, startApiServer } from "../../lab/apiserver";
import { caBundles, expectTrustEntries, fastOptions } from "./kcp-support";
import { createKcp, NAMESPACE, OTHERS_FILES, realApi, startSim, createMachineDeployment, createTemplate, templateRef, workerApi } from "../../lab/capi-objects";
import { SimCapiController } from "../../lab/sim-capi-controller";
import { SimMachineDeploymentController } from "../../lab/sim-md-controller";
import { writeWorkerTrust, WorkerEvent } from "../../core/workers/sequencer";
import { configRefName } from "../../core/workers/template";

jest.setTimeout(120_000);

const VERSION = "v1beta2" as const;
const endpoints = [{ host: "registry.test", port: 5000, mirrorOf: [] }];
const pki = new TestPki();
const [bundleA, bundleB] = caBundles(pki, 2);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let env: ApiServer;
let api: KcpApi;
const sims: SimCapiController[] = [];
/** kube-apiserver processes this file started itself (restarts); apiserver.ts only knows the first. */
const restarted: Array<{ pid: number; exited: Promise<void> }> = [];

beforeAll(async () => {
  env = await startApiServer();
  api = realApi(env);
});

afterAll(async () => {
  for (const s of sims) await s.stop();
  for (const p of restarted) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // Stopped already by a later fault.
    }
    await p.exited;
  }
  await env?.stop();
  pki.cleanup();
});

function sim(name: string, opts: Parameters<typeof startSim>[3] = {}): SimCapiController {
  const s = startSim(env, name, VERSION, opts);
  sims.push(s);
  return s;
}

const files = (kcp: KcpObject) => kcp.spec!.kubeadmConfigSpec!.files as FileEntry[];
/** Our entries for `bundlePem` are in the KCP's files, after every other writer's. */
function expectOurs(kcp: KcpObject, bundlePem: string): void {
  expectTrustEntries(files(kcp).slice(OTHERS_FILES.length), bundlePem);
}

function options(holder: string, events: SequencerEvent[], extra: Partial<SequencerOptions> = {}): SequencerOptions {
  return { ...fastOptions(holder, events), ...extra };
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
  const name = "fault-restart";
  const target = { namespace: NAMESPACE, name, apiVersion: VERSION };
  await createKcp(env, VERSION, name);
  // The rollout finishes long after the apiserver is back (its status writes meanwhile fail and are not retried).
  sim(name, { observeDelayMs: 50, rolloutDelayMs: 12_000 });
  const events: SequencerEvent[] = [];
  const run = applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA },
    options("stack/restart-1", events, { lease: { durationSeconds: 30, retryMs: 50, waitTimeoutMs: 20_000 }, rollout: { timeoutMs: 60_000, pollMs: 100 } }));
  await waitFor("the rollout wait", async () => events.some((e) => e.phase === "rollout"), 20_000);
  const start = await stopApiServer();
  await sleep(1_500);
  await start();
  const result = await run;

  expect(result.written).toBe(true);
  const unavailable = events.filter((e) => e.phase === "rollout" && /cannot read KubeadmControlPlane default\/fault-restart/.test(e.message));
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
});

test("apiserver down for longer than the Lease: the run fails naming the Lease, and a rerun by another holder takes it over and converges", async () => {
  const name = "fault-lease";
  const target = { namespace: NAMESPACE, name, apiVersion: VERSION };
  await createKcp(env, VERSION, name);
  const stuck = sim(name, { observeDelayMs: 50, rolloutDelayMs: 60_000 });
  const events: SequencerEvent[] = [];
  const run = applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA },
    options("stack/lease-1", events, { lease: { durationSeconds: 2, retryMs: 50, waitTimeoutMs: 20_000 }, rollout: { timeoutMs: 60_000, pollMs: 100 } }));
  const failed = run.then(() => undefined, (e: unknown) => e);
  await waitFor("the rollout wait", async () => events.some((e) => e.phase === "rollout"), 20_000);
  const start = await stopApiServer();
  const err = await failed;
  await start();

  expect(isKcpError(err, "LEASE_LOST")).toBe(true);
  expect((err as Error).message).toMatch(/could not renew Lease default\/registry-trust-kcp-fault-lease within its 2 s/);
  expect((err as Error).message).toContain("rerun once the apiserver answers");
  expect(events.at(-1)).toMatchObject({ phase: "released", message: expect.stringContaining("was lost while held and is left as it is; it frees itself once unrenewed for 2 s") });
  // Whatever is left of the Lease expires: a new run waits one lease duration at most, then writes.
  await stuck.stop();
  sims.splice(sims.indexOf(stuck), 1);
  sim(name, { observeDelayMs: 50, rolloutDelayMs: 300 });
  const rerunEvents: SequencerEvent[] = [];
  const t0 = Date.now();
  const rerun = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleB }, options("stack/lease-2", rerunEvents));
  expect(Date.now() - t0).toBeLessThan(15_000);
  expect(rerun.written).toBe(true);
  expectOurs(await api.getKcp(target, VERSION), bundleB);
  expect(await api.getLease(leaseRef(target))).toBeUndefined();
});

test("rollout never finishes: ROLLOUT_TIMEOUT names the KCP, the generation and how long; after the controller finishes, a rerun converges", async () => {
  const name = "fault-timeout";
  const target = { namespace: NAMESPACE, name, apiVersion: VERSION };
  await createKcp(env, VERSION, name);
  const stuck = sim(name, { observeDelayMs: 50, rolloutDelayMs: 3_600_000 });
  const events: SequencerEvent[] = [];
  const err = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA },
    options("stack/timeout-1", events, { rollout: { timeoutMs: 2_000, pollMs: 50 } })).then(() => undefined, (e: unknown) => e);

  expect(isKcpError(err, "ROLLOUT_TIMEOUT")).toBe(true);
  const written = events.find((e) => e.phase === "written")!;
  const generation = Number(/generation (\d+)/.exec(written.message)![1]);
  expect((err as Error).message).toContain(`rollout of KubeadmControlPlane default/fault-timeout (generation ${generation}) not finished after 2 s`);
  expect((err as Error).message).toMatch(/0\/3 up to date, 2\/3 ready, 3 machines, RollingOut=True/);
  expect((err as Error).message).toContain("the trust entries are written and the rollout goes on");
  expect(await api.getLease(leaseRef(target))).toBeUndefined();

  // The controller finishes (a new one picks the generation up), then the same run again converges.
  await stuck.stop();
  sims.splice(sims.indexOf(stuck), 1);
  sim(name, { observeDelayMs: 50, rolloutDelayMs: 300 });
  const rerun = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA }, options("stack/timeout-2", []));
  expect(rerun.written).toBe(false);
  expect(rerun.generation).toBe(generation);
  expectOurs(await api.getKcp(target, VERSION), bundleA);
});

test("a MachineDeployment rollout that never finishes: the same ROLLOUT_TIMEOUT naming it; a rerun after it finishes converges", async () => {
  const workers = workerApi(env);
  const name = "fault-md";
  const target = { namespace: NAMESPACE, name, apiVersion: VERSION };
  await createTemplate(env, VERSION, `${name}-base`);
  await createMachineDeployment(env, VERSION, name, templateRef(VERSION, `${name}-base`));
  const stuck = new SimMachineDeploymentController(env, VERSION, name, 3_600_000);
  const events: WorkerEvent[] = [];
  let err: unknown;
  try {
    err = await writeWorkerTrust(workers, target, { endpoints, bundlePem: bundleA }, { ...fastOptions("stack/md-1", events), rollout: { timeoutMs: 2_000, pollMs: 50 } })
      .then(() => undefined, (e: unknown) => e);
  } finally {
    await stuck.stop();
  }
  // The code, or else what was thrown (or "resolved"), so that a failure says what happened instead.
  expect(isKcpError(err, "ROLLOUT_TIMEOUT") ? "ROLLOUT_TIMEOUT" : err === undefined ? "resolved" : String((err as Error).stack ?? err)).toBe("ROLLOUT_TIMEOUT");
  const generation = (await workers.getMachineDeployment(target, VERSION)).metadata.generation;
  expect((err as Error).message).toContain(`rollout of MachineDeployment default/fault-md (generation ${generation}) not finished after 2 s: generation ${generation}: 0/2 up to date, 2/2 ready, 2 machines`);
  expect(await workers.getLease(leaseRef(target, "MachineDeployment"))).toBeUndefined();

  const done = new SimMachineDeploymentController(env, VERSION, name, 200);
  try {
    const rerun = await writeWorkerTrust(workers, target, { endpoints, bundlePem: bundleA }, fastOptions("stack/md-2"));
    expect(rerun).toMatchObject({ written: false, generation });
    expect(configRefName(await workers.getMachineDeployment(target, VERSION))).toBe(rerun.template);
  } finally {
    await done.stop();
  }
});

test("a system error is not one of our refusals: it is transient and retried, our refusals are final", () => {
  const reset = Object.assign(new Error("request to https://127.0.0.1:1/ failed, reason: socket hang up"), { code: "ECONNRESET", type: "system" });
  expect(isKcpError(reset)).toBe(false);
  expect(isTransient(reset)).toBe(true);
  expect(isTransient(Object.assign(new Error("Service Unavailable"), { code: 503 }))).toBe(true);
  expect(isTransient(Object.assign(new Error("Forbidden"), { code: 403 }))).toBe(false);
  expect(isTransient(kcpError("KCP_NOT_FOUND", "KubeadmControlPlane default/x not found"))).toBe(false);
});
