// The KCP sequencer must not lose our entries silently (issue 12, item 4), on a real etcd + kube-apiserver
// with the real Cluster API CRDs and the simulated KCP controller (lab/sim-capi-controller.ts, fast rollouts;
// why a simulation here: test/k8s/kcp-sequencer.test.ts). What these cases need from the apiserver is real:
// managedFields recorded per field manager, resourceVersion preconditions, Leases, ConfigMaps.
import * as k8s from "@kubernetes/client-node";
import { KcpApi, KcpObject } from "../../core/kcp/api";
import { isKcpError, KcpErrorCode } from "../../core/kcp/errors";
import { FileEntry, readOwnership } from "../../core/kcp/plan";
import { applyControlPlaneTrust } from "../../core/kcp/apply";
import { removeControlPlaneTrust, SequencerEvent, SequencerOptions } from "../../core/kcp/sequencer";
import { TestPki } from "../../lab/openssl-pki";
import { until } from "../support/until";
import { ApiServer, startApiServer } from "../../lab/apiserver";
import { caBundles, fastOptions, replaceAsAnotherWriter } from "./kcp-support";
import { createKcp, NAMESPACE, OTHERS_FILES, realApi, startSim } from "../../lab/capi-objects";
import { SimCapiController } from "../../lab/sim-capi-controller";

jest.setTimeout(120_000);

const regA = [{ host: "registry-a.test", port: 5000, mirrorOf: [] as string[] }];
const regB = [{ host: "registry-b.test", port: 5443, mirrorOf: [] as string[] }];
const pki = new TestPki();
const [bundleA, bundleB] = caBundles(pki, 2);
const sims: SimCapiController[] = [];
let env: ApiServer;
let api: KcpApi;

beforeAll(async () => {
  env = await startApiServer();
  api = realApi(env);
});
afterAll(async () => {
  for (const s of sims.splice(0)) await s.stop();
  await env?.stop();
  pki.cleanup();
});

async function kcpWithController(name: string): Promise<void> {
  await createKcp(env, "v1beta2", name);
  // A calmer heartbeat than kcp-sequencer's stress cases: these claims are not about 409s, and a loaded
  // machine must not turn every write into a conflict until the deadline.
  const s = startSim(env, name, "v1beta2", { observeDelayMs: 50, rolloutDelayMs: 600, heartbeatMinMs: 150, heartbeatMaxMs: 400 });
  sims.push(s);
}

const options = (holder: string, events: SequencerEvent[] = [], extra: Partial<SequencerOptions> = {}): SequencerOptions => ({ ...fastOptions(holder, events), ...extra });
const files = (kcp: KcpObject) => (kcp.spec!.kubeadmConfigSpec!.files ?? []) as FileEntry[];
const ca = (kcp: KcpObject, reg: typeof regA) => files(kcp).find((f) => f.path === `/etc/containerd/certs.d/${reg[0].host}:${reg[0].port}/ca.crt`);

async function refusal(p: Promise<unknown>, code: KcpErrorCode): Promise<Error> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!isKcpError(err, code)) throw new Error(`expected a ${code} refusal, got ${err instanceof Error ? err.stack : String(err)}`);
  return err;
}

test("a revert during the rollout is an error naming the field manager that owns files now", async () => {
  const name = "reverted";
  await kcpWithController(name);
  const target = { namespace: NAMESPACE, name };
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const ref = { group: "controlplane.cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "kubeadmcontrolplanes", name };
  // A GitOps tool puts the KCP back to its source (the platform's files only) once our write was read back:
  // a full update under its own field manager, as kubectl replace / a sync would do.
  let armed = false;
  let reverted = false;
  const revertingApi: KcpApi = {
    ...api,
    async getKcp(...args) {
      if (armed && !reverted) {
        reverted = true;
        await replaceAsAnotherWriter<KcpObject>(custom, ref, (live) => ({ ...live, spec: { ...live.spec, kubeadmConfigSpec: { ...live.spec!.kubeadmConfigSpec!, files: OTHERS_FILES } } }));
      }
      return api.getKcp(...args);
    },
  };
  const events: SequencerEvent[] = [];
  const opts = options("proj/dev/run-1", events, { owner: "proj/dev", onEvent: (e) => {
    events.push(e);
    if (e.phase === "verified") armed = true;
  } });
  const err = await refusal(applyControlPlaneTrust(revertingApi, target, { endpoints: regA, bundlePem: bundleA }, opts), "ENTRIES_REVERTED");
  expect(reverted).toBe(true);
  expect(err.message).toContain(`KubeadmControlPlane ${NAMESPACE}/${name}`);
  expect(err.message).toMatch(/spec\.kubeadmConfigSpec\.files is now owned by field manager "platform-gitops" \(Update at /);
  // The Lease is released all the same.
  expect(events[events.length - 1].phase).toBe("released");
});

test("two stacks writing one KCP keep each other's entries and Secrets; each removes only its own", async () => {
  const name = "two-stacks";
  await kcpWithController(name);
  const target = { namespace: NAMESPACE, name };
  // Both bundles go to Secrets (contentFrom), pruned after each rollout.
  const a = { endpoints: regA, bundlePem: bundleA, inlineMaxChars: 10 };
  const b = { endpoints: regB, bundlePem: bundleB, inlineMaxChars: 10 };
  await applyControlPlaneTrust(api, target, a, options("proj/a/run-1", [], { owner: "proj/a" }));
  await applyControlPlaneTrust(api, target, b, options("proj/b/run-1", [], { owner: "proj/b" }));
  let kcp = await api.getKcp(target, "v1beta2");
  const secretA = readOwnership(kcp, "proj/a").secret!;
  const secretB = readOwnership(kcp, "proj/b").secret!;
  expect(ca(kcp, regA)?.contentFrom?.secret.name).toBe(secretA);
  expect(ca(kcp, regB)?.contentFrom?.secret.name).toBe(secretB);
  expect(files(kcp).slice(0, OTHERS_FILES.length)).toEqual(files(await createKcpShape()));
  expect(await api.getSecret({ namespace: NAMESPACE, name: secretA })).toBeDefined();

  await removeControlPlaneTrust(api, target, options("proj/b/run-2", [], { owner: "proj/b" }));
  kcp = await api.getKcp(target, "v1beta2");
  expect(ca(kcp, regB)).toBeUndefined();
  expect(ca(kcp, regA)?.contentFrom?.secret.name).toBe(secretA);
  expect(await api.getSecret({ namespace: NAMESPACE, name: secretA })).toBeDefined();
  expect(await api.getSecret({ namespace: NAMESPACE, name: secretB })).toBeUndefined();
});

/** The platform's files as the apiserver serves them (keys sorted), from a fresh KCP. */
async function createKcpShape(): Promise<KcpObject> {
  return createKcp(env, "v1beta2", `shape-${Date.now()}`);
}

describe("fencing: a run that waited for the Lease never goes back to an older bundle", () => {
  const record = (name: string) => ({ namespace: NAMESPACE, name, key: "bundle-sha256" });
  const hashOf = (pem: string) => require("node:crypto").createHash("sha256").update(pem).digest("hex") as string;

  test("a rotation of the stack completed while it waited (the rotation record changed): refused, the newer bundle stays", async () => {
    const name = "fence-record";
    await kcpWithController(name);
    const target = { namespace: NAMESPACE, name };
    const core = env.kubeConfig.makeApiClient(k8s.CoreV1Api);
    const timeline: SequencerEvent[] = [];
    const newer = applyControlPlaneTrust(api, target, { endpoints: regA, bundlePem: bundleB }, options("proj/dev/run-newer", timeline, { owner: "proj/dev", record: record(`rec-${name}`) }));
    await until("the newer run to hold the Lease", 20_000, async () => (timeline.some((e) => e.holder === "proj/dev/run-newer" && e.phase === "lease-acquired") ? true : undefined));
    const older = applyControlPlaneTrust(api, target, { endpoints: regA, bundlePem: bundleA }, options("proj/dev/run-older", timeline, { owner: "proj/dev", record: record(`rec-${name}`) }));
    await until("the older run to wait for the Lease", 20_000, async () => (timeline.some((e) => e.holder === "proj/dev/run-older" && e.phase === "lease-wait") ? true : undefined));
    // The newer rotation completes: its record is written (core/rotation/record.ts) while the older run still waits.
    await newer;
    await core.createNamespacedConfigMap({ namespace: NAMESPACE, body: { metadata: { name: `rec-${name}` }, data: { "bundle-sha256": hashOf(bundleB) } } });
    const err = await refusal(older, "STALE_RUN");
    expect(err.message).toContain(`a rotation of this stack completed with bundle ${hashOf(bundleB).slice(0, 12)}`);
    expect(ca(await api.getKcp(target, "v1beta2"), regA)?.content).toBe(bundleB);
  });

  test("another run wrote a bundle with a newer certificate while it waited: refused, the newer bundle stays", async () => {
    const name = "fence-issued";
    await kcpWithController(name);
    const target = { namespace: NAMESPACE, name };
    const timeline: SequencerEvent[] = [];
    const run = (bundlePem: string, issuedAt: string, id: string) =>
      applyControlPlaneTrust(api, target, { endpoints: regA, bundlePem, issuedAt }, options(`proj/dev/${id}`, timeline, { owner: "proj/dev" }));
    const newer = run(bundleB, "2031-01-01T00:00:00.000Z", "run-newer");
    await until("the newer run to hold the Lease", 20_000, async () => (timeline.some((e) => e.holder === "proj/dev/run-newer" && e.phase === "lease-acquired") ? true : undefined));
    const older = run(bundleA, "2030-01-01T00:00:00.000Z", "run-older");
    await until("the older run to wait for the Lease", 20_000, async () => (timeline.some((e) => e.holder === "proj/dev/run-older" && e.phase === "lease-wait") ? true : undefined));
    await newer;
    const err = await refusal(older, "STALE_RUN");
    expect(err.message).toContain(`finds bundle ${hashOf(bundleB).slice(0, 12)}`);
    expect(err.message).toContain("newest certificate issued 2031-01-01T00:00:00.000Z");
    expect(ca(await api.getKcp(target, "v1beta2"), regA)?.content).toBe(bundleB);
    expect(timeline.some((e) => e.holder === "proj/dev/run-older" && e.phase === "written")).toBe(false);
  });
});
