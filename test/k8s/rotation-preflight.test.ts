// The rotation preflight reading live state for real: the real Cluster API v1.14 controllers on a real
// kube-apiserver (lab/capi.ts: KCPs written by the real sequencer and rolled out by the real KCP controller,
// a MachineDeployment rolled out by the real one, a rollout held open by pausing its Cluster), real Leases,
// the serving TLS Secret as ServingCertificate writes it, and a real TLS endpoint. Control planes of one
// machine keep the real rollouts short. Needs scripts/k8s-binaries.sh and scripts/capi-binaries.sh first.
import { AddressInfo } from "node:net";
import { writeFileSync } from "node:fs";
import { Server, createServer } from "node:tls";
import * as k8s from "@kubernetes/client-node";
import { fetchServedChain } from "../../core/served-chain";
import { rotationPreflight } from "../../components/rotation-preflight";
import { parseStackConfig } from "../../core/config/validate";
import { loadKubeConfig } from "../../core/kcp/api";
import { applyControlPlaneTrust } from "../../core/kcp/apply";
import { acquireLease } from "../../core/kcp/lease";
import { LiveReaders, PreflightPlan, clientNodeClusterReader, evaluatePreflight, preflightVerdict, readLiveState } from "../../core/rotation/preflight";
import { recordManifest } from "../../core/rotation/record";
import { BUNDLE_ANNOTATION, servingSecretManifest } from "../../core/rotation/serving-secret";
import { assembleBundle, bundleHash } from "../../core/x509/bundle";
import { Issued, TestPki } from "../../lab/openssl-pki";
import { until } from "../support/until";
import { rolloutState } from "../../core/kcp/rollout";
import { ApiServer } from "../../lab/apiserver";
import { ManagementCluster, startManagementCluster } from "../../lab/capi";
import { NAMESPACE, createManagedCluster, managedClusterNames, realApi, waitForClusterRolledOut } from "../../lab/capi-objects";
import { fastOptions, replaceAsAnotherWriter } from "./kcp-support";

jest.setTimeout(300_000);

const pki = new TestPki();
const g1 = pki.root("Rotation CA G1");
const g2 = pki.root("Rotation CA G2");
const g3 = pki.root("Rotation CA G3");
const bundle = (...cas: Issued[]) => {
  const pem = assembleBundle(cas.map((c) => c.certPem)).pem;
  return { pem, hash: bundleHash(pem) };
};
const B1 = bundle(g1);
const B21 = bundle(g2, g1);
const B32 = bundle(g3, g2);

let mgmt: ManagementCluster;
let env: ApiServer;
let tlsServer: Server;
let registry: { host: string; port: number; mirrorOf: string[] };
/** A finished control plane and a MachineDeployment ("pre-done"), and one held mid-rollout ("pre-rolling"). */
const done = managedClusterNames("pre-done");
const rolling = managedClusterNames("pre-rolling");
const CP_DONE = done.controlPlane;
const MD_0 = done.machineDeployment;
const CP_ROLLING = rolling.controlPlane;

/** What the TLS endpoint serves, as the registry would: a leaf of generation 1. */
const served: Issued = pki.leaf(g1, ["DNS:localhost", "IP:127.0.0.1"]);

beforeAll(async () => {
  mgmt = await startManagementCluster();
  env = mgmt.api;
  // A control plane and a MachineDeployment booting from a KubeadmConfigTemplate, rolled out by the real controllers.
  await createManagedCluster(env, done, { controlPlaneReplicas: 1, workerReplicas: 1 });
  await createManagedCluster(env, rolling, { controlPlaneReplicas: 1, workerReplicas: 0 });
  await waitForClusterRolledOut(env, done, 300_000);
  await waitForClusterRolledOut(env, rolling, 300_000);
  tlsServer = createServer({ cert: served.certPem, key: served.keyPem });
  tlsServer.on("tlsClientError", () => undefined);
  await new Promise<void>((r) => tlsServer.listen(0, "127.0.0.1", () => r()));
  registry = { host: "localhost", port: (tlsServer.address() as AddressInfo).port, mirrorOf: [] };
});
afterAll(async () => {
  tlsServer?.close();
  await mgmt?.stop();
  pki.cleanup();
});

const readers = (): LiveReaders => ({
  fetchChain: fetchServedChain,
  cluster: () => clientNodeClusterReader(k8s, loadKubeConfig(k8s, env.kubeconfigPath)),
  timeoutMs: 5000,
});
const plan = (generations: number[], extra: Partial<PreflightPlan> = {}): PreflightPlan => ({
  registries: [registry],
  ca: { mode: "generate", commonName: "Rotation CA", generations },
  clusters: [{ name: "mgmt", controlPlanes: [{ namespace: NAMESPACE, name: CP_DONE }], machineDeployments: [{ namespace: NAMESPACE, name: MD_0 }] }],
  servingSecret: { cluster: "mgmt", namespace: NAMESPACE, name: "registry-tls" },
  ...extra,
});
const kinds = (f: { kind: string }[]) => f.map((x) => x.kind).sort();

/**
 * The cluster's KCP carrying `b`, written by the real sequencer. `hold`: instead of waiting for the real
 * rollout, pause the Cluster once the KCP controller has observed our generation, so that the rollout stays
 * unfinished (as a paused or stuck cluster's does) until the test ends.
 */
async function kcpCarrying(names: { cluster: string; controlPlane: string }, b: { pem: string }, hold = false): Promise<void> {
  const name = names.controlPlane;
  const written = await applyControlPlaneTrust(realApi(env), { namespace: NAMESPACE, name }, { endpoints: [registry], bundlePem: b.pem },
    { ...fastOptions(`test/${name}`), rollout: { wait: !hold, timeoutMs: 240_000, pollMs: 250 } });
  if (hold) {
    await until(`the controller to observe generation ${written.generation} of ${name}`, 60_000, async () => {
      const kcp = await realApi(env).getKcp({ namespace: NAMESPACE, name }, "v1beta2");
      return Number(kcp.status?.observedGeneration ?? 0) >= written.generation ? true : undefined;
    });
    const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    await custom.patchNamespacedCustomObject({ group: "cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "clusters", name: names.cluster, body: { spec: { paused: true } } },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
  }
}

async function writeServingSecret(cert: Issued, recorded: string): Promise<void> {
  const core = env.kubeConfig.makeApiClient(k8s.CoreV1Api);
  const body = servingSecretManifest({ namespace: NAMESPACE, name: "registry-tls" }, cert.certPem, cert.keyPem, { bundleHash: recorded, stack: "registry-trust/test" });
  await core.deleteNamespacedSecret({ namespace: NAMESPACE, name: "registry-tls" }).catch(() => undefined);
  await core.createNamespacedSecret({ namespace: NAMESPACE, body: body as k8s.V1Secret });
}

test("the Secret ServingCertificate writes is accepted as kubernetes.io/tls and read back as served chain and rotation record", async () => {
  await writeServingSecret(served, B1.hash);
  const secret = await env.kubeConfig.makeApiClient(k8s.CoreV1Api).readNamespacedSecret({ namespace: NAMESPACE, name: "registry-tls" });
  expect(secret.type).toBe("kubernetes.io/tls");
  expect(Buffer.from(secret.data!["tls.key"], "base64").toString()).toBe(served.keyPem);
  expect(secret.metadata?.annotations?.[BUNDLE_ANNOTATION]).toBe(B1.hash);
  await kcpCarrying(done, B1);
  const live = await readLiveState(plan([2, 1]), readers());
  expect(live.unreachable).toEqual([]);
  expect(live.servingRecord).toEqual({ bundleHash: B1.hash, stack: "registry-trust/test" });
  expect(live.served.map((s) => s.source).sort()).toEqual([`Secret ${NAMESPACE}/registry-tls in cluster mgmt`, `https://localhost:${registry.port}`]);
  expect(live.served.every((s) => s.chain[0].issuer.includes("Rotation CA G1"))).toBe(true);
  // The previous rotation (to B1) finished: rotating to G2 with G1 retained goes ahead, in both passes.
  expect(evaluatePreflight(plan([2, 1]), live)).toEqual([]);
  expect(evaluatePreflight(plan([2, 1]), live, B21)).toEqual([]);
});

test("caRetainGenerations 0 while the endpoint and the Secret still serve generation 1: refused, both sources named", async () => {
  const findings = evaluatePreflight(plan([2]), await readLiveState(plan([2]), readers()));
  expect(kinds(findings)).toEqual(["overlap", "overlap"]);
  const error = preflightVerdict(findings, false).error!;
  expect(error).toContain(`https://localhost:${registry.port} serves a certificate from CA generation 1, which would leave the bundle (generations 2)`);
  expect(error).toContain(`Secret ${NAMESPACE}/registry-tls in cluster mgmt serves a certificate from CA generation 1`);
});

test("a live Lease on the KCP or a MachineDeployment refuses the rotation, naming the holder; once released it passes", async () => {
  const lease = await acquireLease(realApi(env), { namespace: NAMESPACE, name: MD_0 }, { holder: "registry-trust/other-stack/run-42", durationSeconds: 30 }, "MachineDeployment");
  try {
    const findings = evaluatePreflight(plan([2, 1]), await readLiveState(plan([2, 1]), readers()));
    expect(kinds(findings)).toEqual(["unfinished"]);
    expect(findings[0].message).toContain(`MachineDeployment ${NAMESPACE}/${MD_0} in cluster mgmt is being changed right now: Lease ${NAMESPACE}/registry-trust-md-${MD_0} is held by "registry-trust/other-stack/run-42"`);
  } finally {
    await lease.release();
  }
  expect(evaluatePreflight(plan([2, 1]), await readLiveState(plan([2, 1]), readers()))).toEqual([]);
});

test("a KCP still rolling out the previous bundle: deferred before the bundle is known, refused for a new one, allowed for the same one", async () => {
  // Rotation to G2 started: KCP carries B21 but its machines are still being replaced; the last switch recorded B1.
  await kcpCarrying(rolling, B21, true);
  const p = plan([2, 1], { clusters: [{ name: "mgmt", controlPlanes: [{ namespace: NAMESPACE, name: CP_ROLLING }], machineDeployments: [] }] });
  const live = await readLiveState(p, readers());
  expect(kinds(evaluatePreflight(p, live))).toEqual(["deferred", "deferred"]);
  // Rerun of the same rotation: converges (ControlPlaneTrust waits for the rollout).
  expect(evaluatePreflight(p, live, B21)).toEqual([]);
  // A new rotation to G3 on top of it: refused, naming the rollout and the unrecorded bundle.
  const p3 = { ...p, ca: { mode: "generate" as const, commonName: "Rotation CA", generations: [3, 2] } };
  const error = preflightVerdict(evaluatePreflight(p3, live, B32), false).error!;
  expect(error).toMatch(new RegExp(`KubeadmControlPlane ${NAMESPACE}/${CP_ROLLING} in cluster mgmt has not finished rolling out its current spec \\(bundle ${B21.hash.slice(0, 12)}…\\): generation \\d+: \\d/1 up to date, \\d/1 ready, \\d machines, RollingOut=True`));
  expect(error).toContain(`carries bundle ${B21.hash.slice(0, 12)}…, but the last completed rotation recorded ${B1.hash.slice(0, 12)}… and this run distributes ${B32.hash.slice(0, 12)}…`);
  // ... and so does retiring G1 while its certificate is still served.
  expect(error).toContain("serves a certificate from CA generation 1, which would leave the bundle (generations 3, 2)");
});

test("the stack's rotation record (a ConfigMap per namespace, as RotationRecord writes it) is read and decides over the Secret's", async () => {
  const core = env.kubeConfig.makeApiClient(k8s.CoreV1Api);
  const record = recordManifest(NAMESPACE, "registry-trust/test", B21.hash);
  await core.createNamespacedConfigMap({ namespace: NAMESPACE, body: record as k8s.V1ConfigMap });
  const p = { ...plan([3, 2]), stack: "registry-trust/test" };
  const live = await readLiveState(p, readers());
  expect(live.records).toEqual([{ cluster: "mgmt", namespace: NAMESPACE, bundleHash: B21.hash }]);
  // The finished control plane still carries B1: neither the recorded B21 nor this run's B32.
  const unfinished = evaluatePreflight(p, live, B32).filter((f) => f.kind === "unfinished");
  expect(unfinished.map((f) => f.message)).toEqual([expect.stringContaining(`KubeadmControlPlane ${NAMESPACE}/${CP_DONE} in cluster mgmt carries bundle ${B1.hash.slice(0, 12)}…, but the last completed rotation recorded ${B21.hash.slice(0, 12)}…`)]);
  // Another stack's record is not this stack's.
  expect((await readLiveState({ ...p, stack: "registry-trust/other" }, readers())).records).toEqual([]);
  await core.deleteNamespacedConfigMap({ namespace: NAMESPACE, name: record.metadata.name });
});

test("a KCP edited by another writer, and a KCP and a MachineDeployment that do not exist, are refused", async () => {
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const ref = { group: "controlplane.cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "kubeadmcontrolplanes", name: CP_DONE };
  // A naive writer, but one that retries its conflicts with the controller until it lands.
  type Kcp = { metadata: { generation: number }; spec: { kubeadmConfigSpec: { files: { path: string; content?: string }[] } } };
  const { generation } = (await replaceAsAnotherWriter<Kcp>(custom, ref, (kcp) => {
    for (const f of kcp.spec.kubeadmConfigSpec.files) if (f.path.endsWith("/ca.crt")) f.content = g3.certPem;
    return kcp;
  }, "kubectl-edit")).metadata;
  // The edit is a new spec: let the real controller finish that rollout, so only the edit itself is judged.
  await until(`the KCP controller to roll out generation ${generation} of ${CP_DONE}`, 240_000, async () =>
    rolloutState(await realApi(env).getKcp({ namespace: NAMESPACE, name: CP_DONE }, "v1beta2"), "v1beta2", generation).done ? true : undefined);
  const p = plan([2, 1], { clusters: [{ name: "mgmt", controlPlanes: [{ namespace: NAMESPACE, name: CP_DONE }, { namespace: NAMESPACE, name: "cp-missing" }], machineDeployments: [{ namespace: NAMESPACE, name: "md-missing" }] }] });
  const findings = evaluatePreflight(p, await readLiveState(p, readers()));
  expect(kinds(findings)).toEqual(["missing", "missing", "unfinished"]);
  expect(findings.map((f) => f.message)).toContainEqual(expect.stringContaining(`MachineDeployment ${NAMESPACE}/md-missing does not exist in cluster mgmt`));
  expect(findings.find((f) => f.kind === "unfinished")!.message).toContain("other than the one registry-trust last wrote there");
  expect(findings.map((f) => f.message)).toContainEqual(expect.stringContaining(`KubeadmControlPlane ${NAMESPACE}/cp-missing does not exist in cluster mgmt`));
});

test("from the stack config, as the program runs it: unreachable apiserver and endpoint are an error unless overridden", async () => {
  const closed = { host: "127.0.0.1", port: registry.port === 1 ? 2 : 1 };
  const raw = (allow: boolean) => ({
    registries: { value: JSON.stringify([{ host: closed.host, port: closed.port }]), secret: false },
    clusters: { value: JSON.stringify([{ name: "gone", kubeconfig: `${env.dir}/unreachable.kubeconfig`, controlPlanes: [{ namespace: "a", name: "b" }] }]), secret: false },
    preflightAllowUnreachable: { value: String(allow), secret: false },
  });
  const kc = loadKubeConfig(k8s, env.kubeconfigPath);
  kc.clusters[0] = { ...kc.clusters[0], server: `https://127.0.0.1:${closed.port}` } as typeof kc.clusters[0];
  writeFileSync(`${env.dir}/unreachable.kubeconfig`, kc.exportConfig());
  const strict = parseStackConfig(raw(false), { baseDir: "/" });
  const err = await rotationPreflight(strict, (c) => c.kubeconfig!).then(() => undefined, (e: Error) => e);
  expect(err?.message).toMatch(/^Rotation preflight refused; nothing was changed:/);
  expect(err?.message).toContain(`- unreachable: registry 127.0.0.1:${closed.port}: cannot complete a TLS handshake`);
  // Each object is reported on its own: the record's ConfigMap and the KCP (its API versions cannot be listed).
  expect(err?.message).toMatch(/- unreachable: ConfigMap a\/registry-trust-rotation-[0-9a-f]{12} in cluster gone: .*ECONNREFUSED/);
  expect(err?.message).toMatch(/- unreachable: KubeadmControlPlane a\/b in cluster gone: .*ECONNREFUSED/);
  expect(err?.message).toContain("set registry-trust:preflightAllowUnreachable true");
  const lenient = await rotationPreflight(parseStackConfig(raw(true), { baseDir: "/" }), (c) => c.kubeconfig!);
  expect(lenient.live.unreachable).toHaveLength(3);
});
