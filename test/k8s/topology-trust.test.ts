// The topology route (core/topology) against the real Cluster API v1.14 topology controller (lab/capi.ts with
// the ClusterTopology gate on): a ClusterClass (lab/topology-objects.ts: upstream's in-memory class plus a
// `files` variable patched into the KubeadmControlPlaneTemplate and the KubeadmConfigTemplate), a Cluster
// with two worker pools, one overriding the variable. The topology controller rewrites the KCP and the
// MachineDeployments' templates from the variable, KCP/MachineDeployment controllers roll the machines, the
// bootstrap provider renders their bootstrap data (resolving our Secret through contentFrom).
import * as fs from "node:fs";
import * as k8s from "@kubernetes/client-node";
import { KcpObject } from "../../core/kcp/api";
import { isKcpError, KcpErrorCode } from "../../core/kcp/errors";
import { leaseRef } from "../../core/kcp/lease";
import { FileEntry } from "../../core/kcp/plan";
import { rolloutState } from "../../core/kcp/rollout";
import { writeControlPlaneTrust } from "../../core/kcp/sequencer";
import { clientNodeTopologyApi, TopologyApi } from "../../core/topology/api";
import { TopologyEvent, TopologyOptions, writeTopologyTrust } from "../../core/topology/sequencer";
import { machineDeploymentRolloutState } from "../../core/workers/rollout";
import { writeWorkerTrust } from "../../core/workers/sequencer";
import { controlPlaneTrustProvider } from "../../components/control-plane-trust-provider";
import type { TopologyTrustInputs } from "../../components/topology-trust-provider";
import { bundleHash } from "../../core/x509/bundle";
import { ManagementCluster, startManagementCluster } from "../../lab/capi";
import { listMachines, NAMESPACE, realApi, workerApi } from "../../lab/capi-objects";
import { CLASS_FILE, createTopologyClass, createTopologyCluster, FILES_VARIABLE } from "../../lab/topology-objects";
import { TestPki } from "../../lab/openssl-pki";
import { caBundles, fastOptions } from "./kcp-support";
import { loadSerializedProvider, serializeProvider } from "./serialized-provider";

jest.setTimeout(300_000);

const CLUSTER = "tt";
const endpoints = [{ host: "registry.test", port: 5000, mirrorOf: [] as string[] }];
const CA_PATH = "/etc/containerd/certs.d/registry.test:5000/ca.crt";
const HOSTS_PATH = "/etc/containerd/certs.d/registry.test:5000/hosts.toml";
const OTHER = { path: "/etc/other-product/ca.pem", owner: "root:root", permissions: "0644", content: "other product\n" };
const OVERRIDE = { path: "/etc/pool-md-1/only-here", owner: "root:root", permissions: "0644", content: "md-1 override\n" };
const pki = new TestPki();
const [bundleA, bundleB, bundleC, bundleD] = caBundles(pki, 4);
let mgmt: ManagementCluster;
let custom: k8s.CustomObjectsApi;
let core: k8s.CoreV1Api;

const getCluster = async () => (await custom.getNamespacedCustomObject({ group: "cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "clusters", name: CLUSTER })) as KcpObject;
const list = async (group: string, plural: string) =>
  ((await custom.listNamespacedCustomObject({ group, version: "v1beta2", namespace: NAMESPACE, plural, labelSelector: `cluster.x-k8s.io/cluster-name=${CLUSTER}` })) as { items: KcpObject[] }).items;
const kcpOf = async () => (await list("controlplane.cluster.x-k8s.io", "kubeadmcontrolplanes"))[0];
const mdsOf = async () => (await list("cluster.x-k8s.io", "machinedeployments")).sort((a, b) => a.metadata.labels!["topology.cluster.x-k8s.io/deployment-name"].localeCompare(b.metadata.labels!["topology.cluster.x-k8s.io/deployment-name"]));
/**
 * What a writer of the object changes: spec (generation counts its changes), labels and annotations. Not
 * resourceVersion: the controllers write status whenever they reconcile, and each status write bumps it
 * (a CI run saw the Cluster's move during a refusal that wrote nothing).
 */
const writable = (o: KcpObject) => ({ generation: o.metadata.generation, labels: o.metadata.labels, annotations: o.metadata.annotations, spec: o.spec });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Until the topology controller made the KCP and both pools and every machine is up at the current generation. */
async function waitRolledOut(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    const kcp = await kcpOf();
    const mds = await mdsOf();
    if (kcp && mds.length === 2) {
      const cp = rolloutState(kcp, "v1beta2", kcp.metadata.generation ?? 0);
      const workers = mds.map((md) => machineDeploymentRolloutState(md, "v1beta2", md.metadata.generation ?? 0));
      const machines = await listMachines(mgmt.api, CLUSTER);
      if (cp.done && workers.every((w) => w.done) && machines.length === 3 && machines.every((m) => !m.metadata.deletionTimestamp)) return;
      last = `${cp.summary}; ${workers.map((w) => w.summary).join("; ")}; ${machines.length} Machines`;
    }
    if (Date.now() > deadline) throw new Error(`cluster ${CLUSTER} not rolled out: ${last}\n${mgmt.capi.logs.core}`);
    await sleep(500);
  }
}

beforeAll(async () => {
  mgmt = await startManagementCluster({ clusterTopology: true });
  custom = mgmt.api.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  core = mgmt.api.kubeConfig.makeApiClient(k8s.CoreV1Api);
  await createTopologyClass(mgmt.api.kubeConfig);
  await createTopologyCluster(mgmt.api.kubeConfig, CLUSTER, {
    workers: { "md-0": 1, "md-1": 1 },
    variables: [{ name: FILES_VARIABLE, value: [OTHER] }],
    overrides: { "md-1": [{ name: FILES_VARIABLE, value: [OVERRIDE] }] },
  });
  await waitRolledOut(300_000);
}, 420_000);

afterAll(async () => {
  await mgmt?.stop();
  pki.cleanup();
});

/** Real rollouts take tens of seconds here; a run waiting for the Lease waits out another's whole rollout. */
function options(holder: string, events: TopologyEvent[] = []): TopologyOptions {
  const fast = fastOptions(holder, events);
  return { ...fast, lease: { ...fast.lease, waitTimeoutMs: 240_000 }, rollout: { timeoutMs: 240_000, pollMs: 250 } };
}

async function refusal(p: Promise<unknown>, code: KcpErrorCode): Promise<Error> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!isKcpError(err, code)) throw new Error(`expected a ${code} refusal, got ${err instanceof Error ? err.stack : String(err)}`);
  return err;
}

/** Each Machine's files (from its KubeadmConfig) and bootstrap data, control plane and pools. */
async function machines() {
  const all = await listMachines(mgmt.api, CLUSTER);
  return Promise.all(all.map(async (m) => {
    const config = (await custom.getNamespacedCustomObject({ group: "bootstrap.cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "kubeadmconfigs", name: m.spec.bootstrap.configRef!.name })) as KcpObject;
    const secret = await core.readNamespacedSecret({ namespace: NAMESPACE, name: m.spec.bootstrap.dataSecretName! });
    return {
      name: m.metadata.name,
      pool: m.metadata.labels?.["cluster.x-k8s.io/deployment-name"] ? m.metadata.labels["topology.cluster.x-k8s.io/deployment-name"] ?? "?" : "control-plane",
      files: ((config.spec?.files ?? []) as FileEntry[]).map((f) => f.path),
      bootstrapData: Buffer.from(secret.data!.value, "base64").toString(),
    };
  }));
}

/**
 * Another writer of the Cluster between our read and our patch: it adds its own entry to the variable (a
 * JSON patch of its own), so the value our patch `test`s is no longer there.
 */
let otherWrites = 0;

function anotherWriterInBetween(api: TopologyApi, times = 1): TopologyApi & { writes: number; added: string[] } {
  const wrapped = {
    ...api,
    writes: 0,
    added: [] as string[],
    async patchCluster(...args: Parameters<TopologyApi["patchCluster"]>) {
      if (wrapped.writes < times) {
        wrapped.writes++;
        const cluster = await api.getCluster(args[0]);
        const vars = (cluster.spec!.topology as { variables: Array<{ name: string; value: FileEntry[] }> }).variables;
        const i = vars.findIndex((v) => v.name === FILES_VARIABLE);
        // A path of its own every time: the product's entries are told apart by path.
        const path = `/etc/other-product/extra-${++otherWrites}`;
        await api.patchCluster(args[0], [{ op: "add", path: `/spec/topology/variables/${i}/value/-`, value: { ...OTHER, path } }]);
        wrapped.added.push(path);
      }
      return api.patchCluster(...args);
    },
  };
  return wrapped;
}

const variableOf = (c: KcpObject) => (c.spec!.topology as { variables: Array<{ name: string; value: FileEntry[] }> }).variables.find((v) => v.name === FILES_VARIABLE)!.value;
const overrideOf = (c: KcpObject) => (c.spec!.topology as { workers: { machineDeployments: Array<{ name: string; variables?: { overrides: Array<{ name: string; value: FileEntry[] }> } }> } })
  .workers.machineDeployments.find((m) => m.name === "md-1")!.variables!.overrides[0].value;

test("refused before anything changes: a direct write to the topology-owned KCP and MachineDeployment, in preview (provider check) and in the write", async () => {
  const kcp = await kcpOf();
  const [md] = await mdsOf();
  const target = { namespace: NAMESPACE, name: kcp.metadata.name! };
  const direct = await refusal(writeControlPlaneTrust(realApi(mgmt.api), target, { endpoints, bundlePem: bundleA }, fastOptions("direct/1")), "TOPOLOGY_OWNED");
  expect(direct.message).toContain(`KubeadmControlPlane default/${kcp.metadata.name}`);
  expect(direct.message).toContain("capi-topology");
  expect(direct.message).toContain("variable");
  const worker = await refusal(writeWorkerTrust(workerApi(mgmt.api), { namespace: NAMESPACE, name: md.metadata.name! }, { endpoints, bundlePem: bundleA }, fastOptions("direct/2")), "TOPOLOGY_OWNED");
  expect(worker.message).toContain(`MachineDeployment default/${md.metadata.name}`);
  const preview = controlPlaneTrustProvider.check!({} as never, {
    kubeconfig: mgmt.api.kubeConfig.exportConfig(), namespace: NAMESPACE, name: kcp.metadata.name!, endpoints, bundlePem: bundleA, bundleHash: "x", holder: "preview",
  } as never);
  await refusal(preview, "TOPOLOGY_OWNED");
  expect(writable(await kcpOf())).toEqual(writable(kcp));
  expect(writable((await mdsOf())[0])).toEqual(writable(md));
  expect(await realApi(mgmt.api).getLease(leaseRef(target))).toBeUndefined();
});

test("refused before anything changes: a variable the class does not define names what the platform owner must add", async () => {
  const api = clientNodeTopologyApi(k8s, mgmt.api.kubeConfig);
  const before = await getCluster();
  const err = await refusal(writeTopologyTrust(api, { cluster: { namespace: NAMESPACE, name: CLUSTER } }, { variable: "trust", shape: "tkg-trust", endpoints, bundlePem: bundleA }, options("novar/1")), "TOPOLOGY_VARIABLE");
  expect(err.message).toMatch(/ClusterClass default\/in-memory-registry-trust .* defines no variable "trust" \(it defines: registryTrustFiles\)/);
  expect(writable(await getCluster())).toEqual(writable(before));
  expect((await core.listNamespacedSecret({ namespace: NAMESPACE, labelSelector: "app.kubernetes.io/managed-by=registry-trust" })).items).toEqual([]);
});

test("files shape: through another writer's concurrent change (retried), the bundle reaches the KCP, both pools (the override too) and every machine's bootstrap data; rotation prunes the old Secret after the rollout", async () => {
  const api = clientNodeTopologyApi(k8s, mgmt.api.kubeConfig);
  const target = { cluster: { namespace: NAMESPACE, name: CLUSTER } };
  const before = await machines();
  const events: TopologyEvent[] = [];
  const writer = anotherWriterInBetween(api);
  const first = await writeTopologyTrust(writer, target, { variable: FILES_VARIABLE, shape: "files", endpoints, bundlePem: bundleA }, options("topo/1", events));
  expect(first.written).toBe(true);
  expect(first.conflicts).toBeGreaterThanOrEqual(1);
  expect(events.filter((e) => e.phase === "conflict").map((e) => e.message).join("\n")).toMatch(/test.*failed/i);

  const cluster = await getCluster();
  const secret = first.ownership.secret!;
  const caEntry = { path: CA_PATH, owner: "root:root", permissions: "0644", contentFrom: { secret: { name: secret, key: "ca.crt" } } };
  expect(variableOf(cluster).map((f) => f.path)).toEqual([OTHER.path, "/etc/other-product/extra-1", CA_PATH, HOSTS_PATH]);
  expect(variableOf(cluster)[2]).toEqual(caEntry);
  expect(overrideOf(cluster).map((f) => f.path)).toEqual([OVERRIDE.path, CA_PATH, HOSTS_PATH]);
  const s = await core.readNamespacedSecret({ namespace: NAMESPACE, name: secret });
  expect(Buffer.from(s.data!["ca.crt"], "base64").toString()).toBe(bundleA);
  expect(s.metadata!.ownerReferences).toEqual([expect.objectContaining({ kind: "Cluster", name: CLUSTER, uid: cluster.metadata.uid })]);

  // What the topology controller made of it: the class's own file first, then the variable's entries.
  const kcp = await kcpOf();
  expect((kcp.spec!.kubeadmConfigSpec!.files as FileEntry[]).map((f) => f.path)).toEqual([CLASS_FILE.path, OTHER.path, "/etc/other-product/extra-1", CA_PATH, HOSTS_PATH]);
  const after = await machines();
  expect(after).toHaveLength(3);
  expect(after.filter((m) => before.some((b) => b.name === m.name))).toEqual([]);
  for (const m of after) {
    expect(m.files).toContain(CA_PATH);
    expect(m.files).toContain(m.pool === "md-1" ? OVERRIDE.path : OTHER.path);
    expect(m.bootstrapData).toContain(`path: ${CA_PATH}`);
    expect(m.bootstrapData).toContain(bundleA.split("\n")[1]);
  }
  expect(await api.getLease(leaseRef({ namespace: NAMESPACE, name: kcp.metadata.name! }))).toBeUndefined();

  // Same bundle: nothing written, nothing rolled.
  const again = await writeTopologyTrust(api, target, { variable: FILES_VARIABLE, shape: "files", endpoints, bundlePem: bundleA }, options("topo/2"));
  expect(again).toMatchObject({ written: false, pruned: [] });

  const rotated = await writeTopologyTrust(api, target, { variable: FILES_VARIABLE, shape: "files", endpoints, bundlePem: bundleB }, options("topo/3"));
  expect(rotated.pruned).toEqual([secret]);
  for (const m of await machines()) expect(m.bootstrapData).toContain(bundleB.split("\n")[1]);
});

test("incident 1 on the topology route: a second rotation started while the first holds the Lease, another product writing the variable in between: the latest bundle everywhere, the other product's entries kept, only the latest Secret left", async () => {
  const api = clientNodeTopologyApi(k8s, mgmt.api.kubeConfig);
  const target = { cluster: { namespace: NAMESPACE, name: CLUSTER } };
  const events: TopologyEvent[] = [];
  let firstHolds!: () => void;
  const held = new Promise<void>((r) => (firstHolds = r));
  const othersBefore = variableOf(await getCluster()).filter((f) => f.path !== CA_PATH && f.path !== HOSTS_PATH);
  const product = anotherWriterInBetween(api);
  const g2 = writeTopologyTrust(product, target, { variable: FILES_VARIABLE, shape: "files", endpoints, bundlePem: bundleC },
    { ...options("incident/g2", events), onEvent: (e) => { events.push(e); if (e.phase === "lease-acquired") firstHolds(); } });
  await held;
  const g3 = writeTopologyTrust(api, target, { variable: FILES_VARIABLE, shape: "files", endpoints, bundlePem: bundleD }, options("incident/g3", events));
  const [r2, r3] = await Promise.all([g2, g3]);
  expect(events.some((e) => e.holder === "incident/g3" && e.phase === "lease-wait")).toBe(true);
  // The second run took the Lease only after the first released it.
  const released2 = events.findIndex((e) => e.holder === "incident/g2" && e.phase === "released");
  const acquired3 = events.findIndex((e) => e.holder === "incident/g3" && e.phase === "lease-acquired");
  expect(acquired3).toBeGreaterThan(released2);
  expect(r3.pruned).toEqual([r2.ownership.secret]);

  const cluster = await getCluster();
  const value = variableOf(cluster);
  expect(product.added).toHaveLength(1);
  expect(value.filter((f) => f.path !== CA_PATH && f.path !== HOSTS_PATH)).toEqual([...othersBefore, { ...OTHER, path: product.added[0] }]);
  expect(value.find((f) => f.path === CA_PATH)!.contentFrom!.secret.name).toBe(r3.ownership.secret);
  const ours = (await core.listNamespacedSecret({ namespace: NAMESPACE, labelSelector: "app.kubernetes.io/managed-by=registry-trust" })).items.map((x) => x.metadata!.name);
  expect(ours).toEqual([r3.ownership.secret]);
  for (const m of await machines()) {
    expect(m.bootstrapData).toContain(bundleD.split("\n")[1]);
    expect(m.bootstrapData).not.toContain(bundleC.split("\n")[1]);
  }
});

test("the TopologyTrust provider as Pulumi stores it (serialized under ts-node and tsx): create over the live bundle, diff with no change, then delete removes our entries and Secrets and keeps the other products'", async () => {
  const tsx = await serializeProvider("topology-trust", "tsx");
  expect(tsx).toContain('require("@kubernetes/client-node")');
  const provider = await loadSerializedProvider("topology-trust");
  try {
    expect(provider.text).toContain('require("@kubernetes/client-node")');
    const isOurs = (f: FileEntry) => f.path === CA_PATH || f.path === HOSTS_PATH;
    const othersBefore = variableOf(await getCluster()).filter((f) => !isOurs(f));
    const inputs: TopologyTrustInputs = {
      kubeconfig: fs.readFileSync(mgmt.api.kubeconfigPath, "utf8"), namespace: NAMESPACE, name: CLUSTER, variable: FILES_VARIABLE, shape: "files",
      endpoints, bundlePem: bundleD, bundleHash: bundleHash(bundleD), holder: "registry-trust/provider", rolloutTimeoutSeconds: 240,
    };
    const c = await provider.call("create", inputs);
    expect(c.id).toBe(`${NAMESPACE}/${CLUSTER}`);
    const live = variableOf(await getCluster()).find((f) => f.path === CA_PATH)!;
    expect(live.contentFrom!.secret.name).toBe(c.outs.secretName);
    expect(await provider.call("diff", c.id, c.outs, inputs)).toMatchObject({ changes: false });

    await provider.call("delete", c.id, c.outs);
    const cluster = await getCluster();
    expect(variableOf(cluster)).toEqual(othersBefore);
    expect(overrideOf(cluster)).toEqual([OVERRIDE]);
    expect((await core.listNamespacedSecret({ namespace: NAMESPACE, labelSelector: "app.kubernetes.io/managed-by=registry-trust" })).items).toEqual([]);
    // The delete waited for the rollout: no machine is still made from our entries.
    for (const m of await machines()) {
      expect(m.files).not.toContain(CA_PATH);
      expect(m.bootstrapData).not.toContain(bundleD.split("\n")[1]);
    }
  } finally {
    provider.cleanup();
  }
});
