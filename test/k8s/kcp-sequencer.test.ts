// The KCP sequencer (core/kcp) against a real etcd + kube-apiserver with the real Cluster API CRDs and the
// simulated CAPI controller writing concurrently. Needs `npm run k8s:binaries` first.
// Why the simulated controller (lab/sim-capi-controller.ts) and not the real one: these cases need a writer
// that hits the object every 5–50 ms so that every attempt of a run meets 409s (the real KCP controller
// writes only while it reconciles), rollouts of a few hundred ms to run many sequences, and v1beta1 as the
// storage version. The same sequencer against the real controllers: test/k8s/faults.test.ts,
// test/k8s/control-plane-trust-provider.test.ts, test/lab/incident-rotation.test.ts and bench:kcp.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { clientNodeKcpApi, KcpApi, KcpObject, KcpVersion } from "../../core/kcp/api";
import { isKcpError, KcpErrorCode } from "../../core/kcp/errors";
import { leaseRef, microTime } from "../../core/kcp/lease";
import { FileEntry, OWNERSHIP_ANNOTATION } from "../../core/kcp/plan";
import { applyControlPlaneTrust } from "../../core/kcp/apply";
import { removeControlPlaneTrust, SequencerEvent, SequencerOptions } from "../../core/kcp/sequencer";
import { TestPki } from "../../lab/openssl-pki";
import { until } from "../support/until";
import { ApiServer, startApiServer } from "../../lab/apiserver";
import { caBundles, expectTrustEntries, fastOptions, slowWriter } from "./kcp-support";
import { createKcp, NAMESPACE, OTHERS_FILES, realApi, startSim } from "../../lab/capi-objects";
import { SimCapiController } from "../../lab/sim-capi-controller";

jest.setTimeout(120_000);

const endpoints = [{ host: "registry.test", port: 5000, mirrorOf: [] }];
const pki = new TestPki();
const [bundleA, bundleB, bundleC] = caBundles(pki, 3);
const sims: SimCapiController[] = [];
afterAll(() => pki.cleanup());

let env: ApiServer;
let api: KcpApi;

function useApiServer(storageVersion?: string) {
  beforeAll(async () => {
    env = await startApiServer(storageVersion ? { storageVersion } : {});
    api = realApi(env);
  });
  afterAll(async () => {
    for (const s of sims.splice(0)) await s.stop();
    await env?.stop();
  });
}

function sim(name: string, version: KcpVersion, opts = {}): SimCapiController {
  const s = startSim(env, name, version, opts);
  sims.push(s);
  return s;
}

function options(holder: string, events: SequencerEvent[] = [], extra: Partial<SequencerOptions> = {}): SequencerOptions {
  return { ...fastOptions(holder, events), ...extra };
}

const files = (kcp: KcpObject) => kcp.spec!.kubeadmConfigSpec!.files as FileEntry[];

async function refusal(p: Promise<unknown>, code: KcpErrorCode): Promise<Error> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!isKcpError(err, code)) throw new Error(`expected a ${code} refusal, got ${err instanceof Error ? err.stack : String(err)}`);
  return err;
}

const rotateUnderLoad = (version: KcpVersion) => async () => {
  const name = `rotate-${version}`;
  const target = { namespace: NAMESPACE, name, apiVersion: version };
  // Other writers' entries as the apiserver serves them (it sorts keys): what must come back unchanged.
  const others = JSON.stringify(files(await createKcp(env, version, name)));
  const controller = sim(name, version, { observeDelayMs: 50, rolloutDelayMs: 400 });
  const events: SequencerEvent[] = [];
  // The first write pauses 120 ms after its read: the controller writes in between, the apiserver answers 409.
  const slow = slowWriter(api, 120, 1);
  const first = await applyControlPlaneTrust(slow, target, { endpoints, bundlePem: bundleA }, options("stack-a/run-1", events));
  expect(first.conflicts).toBeGreaterThanOrEqual(1);
  expect(events.some((e) => e.phase === "conflict" && /the object has been modified/.test(e.message))).toBe(true);
  expect(first.written).toBe(true);
  expect(first.version).toBe(version);

  const kcp = await api.getKcp(target, version);
  // Every other writer's entry survives byte for byte, in its place; ours follow.
  expect(JSON.stringify(files(kcp).slice(0, OTHERS_FILES.length))).toBe(others);
  const ownership = expectTrustEntries(files(kcp).slice(OTHERS_FILES.length), bundleA);
  expect(kcp.spec!.kubeadmConfigSpec!.preKubeadmCommands).toEqual(["echo platform-first"]);
  expect(JSON.parse(kcp.metadata.annotations![OWNERSHIP_ANNOTATION])).toEqual(ownership);

  // The rollout of our generation finished before apply returned, in this version's status shape.
  const rolledOut = controller.events.find((e) => e.kind === "rolled-out" && e.generation === first.generation);
  expect(rolledOut).toBeDefined();
  const doneAt = events.find((e) => e.phase === "rollout-done")!.at;
  expect(events.filter((e) => e.phase === "rollout").length).toBeGreaterThanOrEqual(2);
  expect(kcp.status!.observedGeneration).toBeGreaterThanOrEqual(first.generation);
  expect(kcp.status![version === "v1beta2" ? "upToDateReplicas" : "updatedReplicas"]).toBe(3);
  expect(doneAt).toBeLessThanOrEqual(Date.now());
  expect(events.map((e) => e.phase).filter((p) => p !== "conflict" && p !== "rollout")).toEqual([
    "lease-acquired", "written", "verified", "rollout-done", "released",
  ]);
  expect(await api.getLease(leaseRef(target))).toBeUndefined();

  // Same bundle again: nothing is written, nothing rolls out.
  const again = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA }, options("stack-a/run-2"));
  expect(again.written).toBe(false);
  expect((await api.getKcp(target, version)).metadata.generation).toBe(first.generation);

  // Remove: ours gone, everyone else's kept.
  const removed = await removeControlPlaneTrust(api, target, options("stack-a/run-3"));
  expect(removed.written).toBe(true);
  const after = await api.getKcp(target, version);
  expect(JSON.stringify(files(after))).toBe(others);
  expect(after.metadata.annotations?.[OWNERSHIP_ANNOTATION]).toBeUndefined();
  await controller.stop();
  expect(controller.errors).toEqual([]);
  expect(controller.heartbeats).toBeGreaterThan(10);
};

describe("v1beta2 (CAPI's storage version)", () => {
  useApiServer();

  test("a rotation survives real 409s, keeps other files byte for byte, is read back and waits for the v1beta2 rollout; remove keeps others", rotateUnderLoad("v1beta2"));

  test("conflicts until the deadline: the error states attempts and the last conflict", async () => {
    const name = "deadline";
    const target = { namespace: NAMESPACE, name };
    await createKcp(env, "v1beta2", name);
    sim(name, "v1beta2");
    const slow = slowWriter(api, 120);
    const started = Date.now();
    const err = await refusal(applyControlPlaneTrust(slow, target, { endpoints, bundlePem: bundleA },
      options("stack/run", [], { conflict: { deadlineMs: 1_000, baseDelayMs: 20, maxDelayMs: 100 } })), "CONFLICT_DEADLINE");
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(err.message).toMatch(/gave up writing registry-trust entries to KubeadmControlPlane default\/deadline after (\d+) attempts in [\d.]+ s \(deadline 1 s\); last conflict: .*the object has been modified/);
    const attempts = Number(/after (\d+) attempts/.exec(err.message)![1]);
    expect(attempts).toBeGreaterThanOrEqual(3);
    expect(slow.paused).toBe(attempts);
    // Nothing of ours landed, and the lease was released.
    expect(files(await api.getKcp(target, "v1beta2"))).toEqual(OTHERS_FILES);
    expect(await api.getLease(leaseRef(target))).toBeUndefined();
  });

  test("a bundle above the threshold goes to a Secret owned by the KCP; the next rotation replaces it and prunes the old one", async () => {
    const name = "secret";
    const target = { namespace: NAMESPACE, name };
    const created = await createKcp(env, "v1beta2", name);
    sim(name, "v1beta2");
    const core = env.kubeConfig.makeApiClient(k8s.CoreV1Api);
    const first = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA, inlineMaxChars: 100 }, options("s/1"));
    const s1 = first.ownership.secret!;
    const secret = await core.readNamespacedSecret({ namespace: NAMESPACE, name: s1 });
    expect(Buffer.from(secret.data!["ca.crt"], "base64").toString()).toBe(bundleA);
    expect(secret.metadata!.ownerReferences).toEqual([expect.objectContaining({ kind: "KubeadmControlPlane", name, uid: created.metadata.uid })]);
    const ca = files(await api.getKcp(target, "v1beta2")).find((f) => f.path.endsWith("/ca.crt"))!;
    expect(ca).toEqual({ path: "/etc/containerd/certs.d/registry.test:5000/ca.crt", owner: "root:root", permissions: "0644", contentFrom: { secret: { name: s1, key: "ca.crt" } } });

    const second = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleB, inlineMaxChars: 100 }, options("s/2"));
    expect(second.ownership.secret).not.toBe(s1);
    expect(second.generation).toBeGreaterThan(first.generation);
    await expect(core.readNamespacedSecret({ namespace: NAMESPACE, name: s1 })).rejects.toMatchObject({ code: 404 });
    await removeControlPlaneTrust(api, target, options("s/3"));
    await expect(core.readNamespacedSecret({ namespace: NAMESPACE, name: second.ownership.secret! })).rejects.toMatchObject({ code: 404 });
  });

  test("a live holder: we wait, then fail naming the holder and since when", async () => {
    const name = "lease-live";
    const target = { namespace: NAMESPACE, name };
    await createKcp(env, "v1beta2", name);
    const ref = leaseRef(target);
    const since = microTime(Date.now() - 60_000);
    let lease = await api.createLease({ metadata: { ...ref }, spec: { holderIdentity: "prod/run-42", leaseDurationSeconds: 1, acquireTime: since, renewTime: since } });
    let renewing = true;
    const renewer = (async () => {
      while (renewing) {
        lease = await api.replaceLease({ ...lease, spec: { ...lease.spec, renewTime: microTime() } });
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const events: SequencerEvent[] = [];
    const started = Date.now();
    const err = await refusal(applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA },
      options("stack/run", events, { lease: { durationSeconds: 2, retryMs: 50, waitTimeoutMs: 2_500 } })), "LEASE_HELD");
    renewing = false;
    await renewer;
    // Renewed every 200 ms, its 1 s lease never expired: no takeover however long we waited.
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_500);
    expect(err.message).toContain('is being changed by "prod/run-42" (since ' + since);
    expect(events.some((e) => e.phase === "lease-wait")).toBe(true);
    expect(events.some((e) => e.phase === "lease-acquired")).toBe(false);
    expect(files(await api.getKcp(target, "v1beta2"))).toEqual(OTHERS_FILES);
    expect((await api.getLease(ref))!.spec.holderIdentity).toBe("prod/run-42");
  });

  test("a lease left by a crashed run is taken over only once it has gone unrenewed for its duration", async () => {
    const name = "lease-stale";
    const target = { namespace: NAMESPACE, name };
    await createKcp(env, "v1beta2", name);
    sim(name, "v1beta2");
    const old = microTime(Date.now() - 3_600_000);
    await api.createLease({ metadata: { ...leaseRef(target) }, spec: { holderIdentity: "crashed/run-7", leaseDurationSeconds: 2, acquireTime: old, renewTime: old, leaseTransitions: 3 } });
    const events: SequencerEvent[] = [];
    const started = Date.now();
    await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA }, options("stack/run", events));
    const acquired = events.find((e) => e.phase === "lease-acquired")!;
    expect(acquired.at - started).toBeGreaterThanOrEqual(2_000);
    expect(events[0].phase).toBe("lease-wait");
    expect(events[0].message).toContain("crashed/run-7");
  });

  test("the lease is renewed while the rollout takes longer than its duration", async () => {
    const name = "lease-renew";
    const target = { namespace: NAMESPACE, name };
    await createKcp(env, "v1beta2", name);
    sim(name, "v1beta2", { rolloutDelayMs: 3_500 });
    const seen: { holder?: string; renewTime?: string }[] = [];
    const watcher = setInterval(() => {
      api.getLease(leaseRef(target)).then((l) => l && seen.push({ holder: l.spec.holderIdentity, renewTime: l.spec.renewTime }), () => undefined);
    }, 250);
    try {
      await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA }, options("stack/renewing", [], { lease: { durationSeconds: 1, retryMs: 50 } }));
    } finally {
      clearInterval(watcher);
    }
    expect(new Set(seen.map((s) => s.holder))).toEqual(new Set(["stack/renewing"]));
    // 1 s lease over a 3.5 s rollout: renewed every third of a second.
    expect(new Set(seen.map((s) => s.renewTime)).size).toBeGreaterThanOrEqual(6);
  });

  test("refusals: KCP not found, version not served, foreign file (then adoption), invalid bundle", async () => {
    const missing = { namespace: NAMESPACE, name: "no-such-kcp" };
    const notFound = await refusal(applyControlPlaneTrust(api, missing, { endpoints, bundlePem: bundleA }, options("r/1")), "KCP_NOT_FOUND");
    expect(notFound.message).toContain("KubeadmControlPlane default/no-such-kcp not found");

    const name = "refusals";
    await createKcp(env, "v1beta2", name, [...OTHERS_FILES, { path: "/etc/containerd/certs.d/registry.test:5000/ca.crt", content: "their CA" }]);
    const target = { namespace: NAMESPACE, name };
    const notServed = await refusal(applyControlPlaneTrust(api, { ...target, apiVersion: "v1alpha4" as KcpVersion }, { endpoints, bundlePem: bundleA }, options("r/2")), "VERSION_NOT_SERVED");
    expect(notServed.message).toMatch(/v1alpha4 is not served by this apiserver \(served: .*v1beta2.*\)/);

    const foreign = await refusal(applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA }, options("r/3")), "FOREIGN_FILE");
    expect(foreign.message).toContain("/etc/containerd/certs.d/registry.test:5000/ca.crt");
    expect((await api.getLease(leaseRef(target)))).toBeUndefined();

    const invalid = await refusal(applyControlPlaneTrust(api, target, { endpoints, bundlePem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }, options("r/4")), "INVALID_BUNDLE");
    expect(invalid.message).toMatch(/CERT_UNPARSEABLE/);

    sim(name, "v1beta2");
    await applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleA }, options("r/5", [], { adopt: true }));
    const ca = files(await api.getKcp(target, "v1beta2")).filter((f) => f.path.endsWith("/ca.crt"));
    expect(ca).toEqual([expect.objectContaining({ content: bundleA })]);
  });

  test("RBAC: a user who may read but not update the KCP gets a clear FORBIDDEN naming the user", async () => {
    const name = "rbac";
    const target = { namespace: NAMESPACE, name };
    await createKcp(env, "v1beta2", name);
    const rbac = env.kubeConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({ namespace: NAMESPACE, body: {
      metadata: { name: "kcp-reader" },
      rules: [
        { apiGroups: ["controlplane.cluster.x-k8s.io"], resources: ["kubeadmcontrolplanes"], verbs: ["get"] },
        { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "update", "delete"] },
      ],
    } });
    await rbac.createNamespacedRoleBinding({ namespace: NAMESPACE, body: {
      metadata: { name: "kcp-reader" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "kcp-reader" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "reader" }],
    } });
    const limited = clientNodeKcpApi(k8s, userKubeConfig("reader"));
    const err = await refusal(applyControlPlaneTrust(limited, target, { endpoints, bundlePem: bundleA }, options("r/rbac")), "FORBIDDEN");
    expect(err.message).toMatch(/forbidden while trying to update KubeadmControlPlane default\/rbac: .*User "reader" cannot update resource "kubeadmcontrolplanes"/);
    expect(files(await api.getKcp(target, "v1beta2"))).toEqual(OTHERS_FILES);
    expect(await api.getLease(leaseRef(target))).toBeUndefined();
  });

  // The scenario of the first incident: two rotations 100 ms apart. The Lease serializes them.
  test("scenario: a second rotation started while the first holds the Lease runs after it, and the second bundle wins", async () => {
    const name = "scenario";
    const target = { namespace: NAMESPACE, name };
    const others = JSON.stringify(files(await createKcp(env, "v1beta2", name)));
    const controller = sim(name, "v1beta2", { observeDelayMs: 100, rolloutDelayMs: 800 });
    const timeline: SequencerEvent[] = [];
    const first = applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleB }, options("stack/rotation-1", timeline));
    // The incident's timing: the second rotation starts while the first is under way (it holds the Lease).
    await until("the first rotation to hold the Lease", 20_000, async () => (timeline.some((e) => e.holder === "stack/rotation-1" && e.phase === "lease-acquired") ? true : undefined));
    const second = applyControlPlaneTrust(api, target, { endpoints, bundlePem: bundleC }, options("stack/rotation-2", timeline));
    const [r1, r2] = await Promise.all([first, second]);

    const phases = (holder: string) => timeline.filter((e) => e.holder === holder && e.phase !== "lease-wait");
    const one = phases("stack/rotation-1");
    const two = phases("stack/rotation-2");
    expect(one.map((e) => e.phase).filter((p) => p !== "rollout" && p !== "conflict")).toEqual(["lease-acquired", "written", "verified", "rollout-done", "released"]);
    expect(two.map((e) => e.phase).filter((p) => p !== "rollout" && p !== "conflict")).toEqual(["lease-acquired", "written", "verified", "rollout-done", "released"]);
    // No interleaving: everything the second did (waiting aside) comes after the first's rollout completed.
    // (Not after the first's "released" event: that is recorded once the Lease delete has returned, and the
    // second may acquire the freed Lease in those few milliseconds.)
    const firstDone = one.find((e) => e.phase === "rollout-done")!.at;
    const firstReleased = one[one.length - 1].at;
    expect(firstDone).toBeLessThanOrEqual(firstReleased);
    expect(two[0].at).toBeGreaterThanOrEqual(firstDone);
    const order = timeline.filter((e) => e.phase !== "lease-wait").map((e) => e.holder);
    expect(order).toEqual([...one.map(() => "stack/rotation-1"), ...two.map(() => "stack/rotation-2")]);
    expect(timeline.some((e) => e.holder === "stack/rotation-2" && e.phase === "lease-wait" && e.message.includes("stack/rotation-1"))).toBe(true);
    // The controller saw the first generation roll out before the second one was written.
    const rolledOut1 = controller.events.find((e) => e.kind === "rolled-out" && e.generation === r1.generation);
    expect(rolledOut1).toBeDefined();
    expect(r2.generation).toBeGreaterThan(r1.generation);
    expect(controller.events.some((e) => e.kind === "rolled-out" && e.generation === r2.generation)).toBe(true);

    const final = await api.getKcp(target, "v1beta2");
    const ca = files(final).filter((f) => f.path.endsWith("/ca.crt"));
    expect(ca).toEqual([expect.objectContaining({ content: bundleC })]);
    expect(JSON.stringify(files(final).slice(0, OTHERS_FILES.length))).toBe(others);
  });
});

describe("v1beta1 (CRDs stored as v1beta1)", () => {
  useApiServer("v1beta1");

  test("a rotation survives real 409s, keeps other files byte for byte, is read back and waits for the v1beta1 rollout; remove keeps others", rotateUnderLoad("v1beta1"));

  test("a bundle over 10,240 characters goes to a Secret whatever inlineMaxChars says: CAPI v1.14 enforces the limit in v1beta1 too", async () => {
    const name = "big-v1beta1";
    const target = { namespace: NAMESPACE, name, apiVersion: "v1beta1" as const };
    await createKcp(env, "v1beta1", name);
    const big = caBundles(pki, 20).join("");
    expect(big.length).toBeGreaterThan(10_240);
    // Inline, the apiserver refuses it.
    const kcp = await api.getKcp(target, "v1beta1");
    kcp.spec!.kubeadmConfigSpec!.files = [...files(kcp), { path: "/big.crt", content: big }];
    await expect(api.replaceKcp(target, "v1beta1", kcp)).rejects.toMatchObject({ code: 422 });

    sim(name, "v1beta1");
    const r = await applyControlPlaneTrust(api, target, { endpoints, bundlePem: big, inlineMaxChars: 1_000_000 }, options("big/1"));
    expect(r.ownership.secret).toBeDefined();
    const ca = files(await api.getKcp(target, "v1beta1")).find((f) => f.path.endsWith("/ca.crt"))!;
    expect(ca.contentFrom).toEqual({ secret: { name: r.ownership.secret, key: "ca.crt" } });
    const secret = await env.kubeConfig.makeApiClient(k8s.CoreV1Api).readNamespacedSecret({ namespace: NAMESPACE, name: r.ownership.secret! });
    expect(Buffer.from(secret.data!["ca.crt"], "base64").toString()).toBe(big);
  });
});

/** A kubeconfig for `user`, with a client certificate from the test apiserver's CA. */
function userKubeConfig(user: string): k8s.KubeConfig {
  const dir = env.dir;
  const key = path.join(dir, `${user}.key`);
  const crt = path.join(dir, `${user}.crt`);
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-CA", path.join(dir, "ca.crt"), "-CAkey", path.join(dir, "ca.key"), "-keyout", key, "-out", crt, "-subj", `/CN=${user}`,
    "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=clientAuth"], { stdio: "pipe" });
  const b64 = (f: string) => fs.readFileSync(f).toString("base64");
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "test", server: env.server, caData: b64(path.join(dir, "ca.crt")) }],
    users: [{ name: user, certData: b64(crt), keyData: b64(key) }],
    contexts: [{ name: "test", cluster: "test", user }],
    currentContext: "test",
  });
  return kc;
}
