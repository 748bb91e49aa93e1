// Real etcd + kube-apiserver with the real Cluster API CRDs: no mocks. Needs `npm run k8s:binaries` first.
// It also checks the simulated CAPI controller (lab/sim-capi-controller.ts) that the fast fixtures of
// kcp-sequencer uses; the real controllers are started by lab/capi.ts.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { ApiServer, findAssets, StartOptions, startApiServer } from "../../lab/apiserver";
import { GROUP, NAMESPACE, PLURAL, kcpBody } from "../../lab/capi-objects";
import { HEARTBEAT_ANNOTATION, KcpVersion, SimCapiController } from "../../lab/sim-capi-controller";
import { until } from "../support/until";

jest.setTimeout(120_000);

const KCP_CRD = `${PLURAL}.${GROUP}`;

let env: ApiServer;
let api: k8s.CustomObjectsApi;
const controllers: SimCapiController[] = [];

function useApiServer(opts: StartOptions = {}) {
  beforeAll(async () => {
    env = await startApiServer(opts);
    api = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  });
  afterAll(async () => {
    for (const c of controllers.splice(0)) await c.stop();
    await env?.stop();
  });
}

function startController(name: string, version: KcpVersion, delays: { observeDelayMs: number; rolloutDelayMs: number }) {
  const c = new SimCapiController({ kubeConfig: env.kubeConfig, namespace: NAMESPACE, name, version, ...delays });
  controllers.push(c);
  c.start();
  return c;
}

const files = [
  { path: "/etc/kubernetes/admission.yaml", owner: "root:root", permissions: "0600", content: "apiVersion: v1\nkind: Config\n" },
  { path: "/etc/containerd/certs.d/registry.test:5000/ca.crt", contentFrom: { secret: { name: "registry-ca", key: "ca.crt" } } },
];

const kcp = (version: KcpVersion, name: string) => kcpBody(version, name, files);

const ref = (version: KcpVersion, name: string) => ({ group: GROUP, version, namespace: NAMESPACE, plural: PLURAL, name });

type Obj = { metadata: { generation: number; resourceVersion: string; annotations?: Record<string, string> }; spec: any; status?: any };

async function get(version: KcpVersion, name: string): Promise<Obj> {
  return (await api.getNamespacedCustomObject(ref(version, name))) as Obj;
}

test("the assets lookup names the script to run when nothing is cached", () => {
  const saved = { ...process.env };
  try {
    process.env.REGISTRY_TRUST_CACHE = fs.mkdtempSync(path.join(os.tmpdir(), "registry-trust-empty-cache-"));
    delete process.env.KUBEBUILDER_ASSETS;
    delete process.env.KUBE_APISERVER_BIN;
    delete process.env.ETCD_BIN;
    expect(() => findAssets()).toThrow(/npm run k8s:binaries/);
    fs.rmSync(process.env.REGISTRY_TRUST_CACHE, { recursive: true });
  } finally {
    process.env = saved;
  }
});


test("binaries a user already has win over the cache", () => {
  const cached = findAssets();
  const saved = { ...process.env };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "registry-trust-assets-"));
  try {
    fs.symlinkSync(cached.kubeApiserver, path.join(dir, "kube-apiserver"));
    fs.symlinkSync(cached.etcd, path.join(dir, "etcd"));
    process.env.KUBEBUILDER_ASSETS = dir;
    expect(findAssets()).toMatchObject({ kubeApiserver: path.join(dir, "kube-apiserver"), etcd: path.join(dir, "etcd") });
    process.env.KUBE_APISERVER_BIN = cached.kubeApiserver;
    process.env.ETCD_BIN = cached.etcd;
    expect(findAssets()).toMatchObject({ kubeApiserver: cached.kubeApiserver, etcd: cached.etcd });
    process.env.ETCD_BIN = path.join(dir, "missing-etcd");
    expect(() => findAssets()).toThrow(/missing-etcd/);
  } finally {
    process.env = saved;
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const roundTrip = (version: KcpVersion) => async () => {
  const name = `files-${version}`;
  await api.createNamespacedCustomObject({ ...ref(version, name), body: kcp(version, name) });
  const back = await get(version, name);
  expect(back.spec.kubeadmConfigSpec.files).toEqual(files);
  expect(back.spec.machineTemplate).toEqual((kcp(version, name) as any).spec.machineTemplate);
  expect(back.metadata.generation).toBe(1);
}

const rollout = (version: KcpVersion) => async () => {
  const name = `rollout-${version}`;
  await api.createNamespacedCustomObject({ ...ref(version, name), body: kcp(version, name) });
  const observeDelayMs = 400;
  const rolloutDelayMs = 1_200;
  const upToDateField = version === "v1beta2" ? "upToDateReplicas" : "updatedReplicas";
  const controller = startController(name, version, { observeDelayMs, rolloutDelayMs });
  const status = async () => (await get(version, name)).status ?? {};
  const seen = () => `(events ${JSON.stringify(controller.events.slice(-3))}, errors ${JSON.stringify(controller.errors.slice(0, 3))})`;
  await until("initial rollout", 10_000, async () => ((await status())[upToDateField] === 3 ? true : undefined), seen);

  // A spec change with retry: the controller's heartbeat makes the first attempts conflict.
  let written: Obj | undefined;
  while (!written) {
    const cur = await get(version, name);
    cur.spec.kubeadmConfigSpec.files = [...files, { path: "/etc/registry-trust/ca.crt", content: "CA v2" }];
    written = (await api.replaceNamespacedCustomObject({ ...ref(version, name), body: cur }).catch((e) => {
      if (e.code !== 409) throw e;
      return undefined;
    })) as Obj | undefined;
  }
  const changedAt = Date.now();
  const generation = written.metadata.generation;
  expect(generation).toBe(2);
  expect((await get(version, name)).status.observedGeneration).toBe(1);

  const observed = await until("observedGeneration", 10_000, async () => {
    const s = await status();
    return s.observedGeneration === generation ? s : undefined;
  }, seen);
  // The controller notices the change within one heartbeat (≤ 50 ms) and then waits observeDelayMs.
  expect(Date.now() - changedAt).toBeGreaterThanOrEqual(observeDelayMs - 60);
  expect(observed[upToDateField]).toBe(0);

  const done = await until("rollout complete", 10_000, async () => {
    const s = await status();
    return s[upToDateField] === 3 ? s : undefined;
  }, seen);
  expect(Date.now() - changedAt).toBeGreaterThanOrEqual(rolloutDelayMs - 60);
  expect(done.readyReplicas).toBe(3);
  const conditions = (done.conditions as { type: string; status: string }[]).map((c) => `${c.type}=${c.status}`);
  expect(conditions).toContain(version === "v1beta2" ? "RollingOut=False" : "MachinesSpecUpToDate=True");
  await controller.stop();
  expect(controller.errors).toEqual([]);
  expect(controller.events.map((e) => `${e.kind}@${e.generation}`)).toEqual([
    "generation-seen@1", "observed@1", "rolled-out@1", "generation-seen@2", "observed@2", "rolled-out@2",
  ]);
  // Busy the whole time: two rollouts of ≥ 1.2 s at one write per 5–50 ms.
  expect(controller.heartbeats).toBeGreaterThan(20);
}

const stopLeavesNothing = async () => {
  const { pids, dir } = env;
  await env.stop();
  for (const pid of [pids.etcd, pids.kubeApiserver]) {
    expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
  }
  expect(fs.existsSync(dir)).toBe(false);
}

describe("CRDs as Cluster API ships them (v1beta2 storage)", () => {
  useApiServer();

  test("the four Cluster API CRDs are Established and every version the KCP CRD declares is served", async () => {
    expect([...env.crds.keys()].sort()).toEqual([
      "clusters.cluster.x-k8s.io",
      "kubeadmconfigtemplates.bootstrap.cluster.x-k8s.io",
      KCP_CRD,
      "machinedeployments.cluster.x-k8s.io",
    ]);
    const declared = env.crds.get(KCP_CRD)!.spec.versions.filter((v) => v.served).map((v) => v.name);
    // The pinned CAPI release was chosen because it serves both; a bump that drops one must be noticed.
    expect(declared).toEqual(expect.arrayContaining(["v1beta1", "v1beta2"]));
    for (const version of declared) {
      const list = (await api.listNamespacedCustomObject({ group: GROUP, version, namespace: NAMESPACE, plural: PLURAL })) as { apiVersion: string };
      expect(list.apiVersion).toBe(`${GROUP}/${version}`);
    }
  });

  test("a v1beta2 KCP with kubeadmConfigSpec.files round-trips through client-node", roundTrip("v1beta2"));

  test("the apiserver rejects file content over the CRD's 10,240 character limit", async () => {
    const name = "schema-v1beta2";
    const body = kcp("v1beta2", name) as any;
    body.spec.kubeadmConfigSpec.files = [{ path: "/big", content: "x".repeat(10_241) }];
    await expect(api.createNamespacedCustomObject({ ...ref("v1beta2", name), body })).rejects.toMatchObject({ code: 422 });
  });

  test("an update with a stale resourceVersion gets 409 while the controller writes", async () => {
    const name = "conflict";
    await api.createNamespacedCustomObject({ ...ref("v1beta2", name), body: kcp("v1beta2", name) });
    const stale = await get("v1beta2", name);
    const controller = startController(name, "v1beta2", { observeDelayMs: 50, rolloutDelayMs: 100 });
    await until("two controller writes after our read", 5_000, async () => {
      const now = await get("v1beta2", name);
      return Number(now.metadata.annotations?.[HEARTBEAT_ANNOTATION] ?? 0) >= 2 ? now : undefined;
    });
    stale.spec.kubeadmConfigSpec.files = [...files, { path: "/etc/registry-trust/ca.crt", content: "CA" }];
    await expect(api.replaceNamespacedCustomObject({ ...ref("v1beta2", name), body: stale })).rejects.toMatchObject({ code: 409 });
    // Nothing of the rejected write landed.
    expect((await get("v1beta2", name)).spec.kubeadmConfigSpec.files).toEqual(files);
    await controller.stop();
    expect(controller.errors).toEqual([]);
  });

  test("the controller reports a v1beta2 rollout after its delays", rollout("v1beta2"));

  // Documents why v1beta1 tests run on v1beta1 storage (see StartOptions.storageVersion): without CAPI's
  // conversion webhook a v1beta1 write is pruned to what the v1beta2 schema knows.
  test("without the conversion webhook a v1beta1 write loses fields that moved in v1beta2", async () => {
    const name = "lossy-v1beta1";
    await api.createNamespacedCustomObject({ ...ref("v1beta1", name), body: kcp("v1beta1", name) });
    const back = await get("v1beta1", name);
    expect(back.spec.kubeadmConfigSpec.files).toEqual(files);
    expect(back.spec.machineTemplate).toEqual({});
  });

  test("stop() ends both daemons and removes the temp dir", stopLeavesNothing);
});

describe("CRDs stored as v1beta1", () => {
  useApiServer({ storageVersion: "v1beta1" });

  test("a v1beta1 KCP with kubeadmConfigSpec.files round-trips through client-node", roundTrip("v1beta1"));
  test("the controller reports a v1beta1 rollout after its delays", rollout("v1beta1"));
  test("stop() ends both daemons and removes the temp dir", stopLeavesNothing);
});
