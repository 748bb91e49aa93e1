// core/workers against a real etcd + kube-apiserver with the real Cluster API CRDs (MachineDeployment,
// KubeadmConfigTemplate) while a simulated MachineDeployment controller writes concurrently.
import { KubeObject } from "../../core/workers/api";
import { isKcpError, KcpErrorCode } from "../../core/kcp/errors";
import { leaseRef } from "../../core/kcp/lease";
import { FileEntry, OWNERSHIP_ANNOTATION } from "../../core/kcp/plan";
import { removeWorkerTrust, WorkerEvent, WorkerOptions, writeWorkerTrust } from "../../core/workers/sequencer";
import { BASE_ANNOTATION, configRefName } from "../../core/workers/template";
import { CapiVersion, WorkerApi } from "../../core/workers/api";
import { TestPki } from "../support/pki";
import { ApiServer, startApiServer } from "../../lab/apiserver";
import { caBundles, expectTrustEntries, fastOptions } from "./kcp-support";
import { NAMESPACE, OTHERS_FILES, createMachineDeployment, createTemplate, templateRef, workerApi } from "../../lab/capi-objects";
import { grant, userKubeConfig } from "./worker-trust-support";
import { SimMachineDeploymentController } from "../../lab/sim-md-controller";
import * as k8s from "@kubernetes/client-node";
import { clientNodeWorkerApi } from "../../core/workers/api";
import { MD_LABEL } from "../../core/workers/template";

jest.setTimeout(120_000);

const endpoints = [{ host: "registry.test", port: 5000, mirrorOf: ["docker.io"] }];
const pki = new TestPki();
const [bundleA, bundleB] = caBundles(pki, 2);
afterAll(() => pki.cleanup());

function options(holder: string, events: WorkerEvent[] = [], extra: Partial<WorkerOptions> = {}): WorkerOptions {
  return { ...fastOptions(holder, events), ...extra };
}

const templateFiles = (t: KubeObject) => (t.spec!.template as { spec: { files: FileEntry[] } }).spec.files;

async function refusal(p: Promise<unknown>, code: KcpErrorCode): Promise<Error> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!isKcpError(err, code)) throw new Error(`expected a ${code} refusal, got ${err instanceof Error ? err.stack : String(err)}`);
  return err;
}

/** The real API with a pause between our read and our MachineDeployment write: the controller writes in between. */
function slowRepoint(api: WorkerApi, pauseMs: number): WorkerApi & { paused: number } {
  const wrapped = {
    ...api,
    paused: 0,
    async replaceMachineDeployment(...args: Parameters<WorkerApi["replaceMachineDeployment"]>) {
      if (wrapped.paused++ === 0) await new Promise((r) => setTimeout(r, pauseMs));
      return api.replaceMachineDeployment(...args);
    },
  };
  return wrapped;
}

const scenario = (version: CapiVersion, env: () => ApiServer) => async () => {
  const api = workerApi(env());
  const name = `workers-${version}`;
  const target = { namespace: NAMESPACE, name, apiVersion: version };
  const base = await createTemplate(env(), version, `${name}-base`);
  // Other writers' files as the apiserver serves them: what must come back byte for byte.
  const others = JSON.stringify(templateFiles(base));
  await createMachineDeployment(env(), version, name, templateRef(version, base.metadata.name!));
  const sim = new SimMachineDeploymentController(env(), version, name);
  const events: WorkerEvent[] = [];
  try {
    const slow = slowRepoint(api, 120);
    const first = await writeWorkerTrust(slow, target, { endpoints, bundlePem: bundleA }, options("stack/run-1", events));
    expect(first.version).toBe(version);
    expect(first.conflicts).toBeGreaterThanOrEqual(1);
    expect(events.some((e) => e.phase === "conflict" && /the object has been modified/.test(e.message))).toBe(true);
    expect(first.written).toBe(true);
    expect(first.previousTemplate).toBe(`${name}-base`);
    expect(first.template).toMatch(new RegExp(`^${name}-base-rt-[0-9a-f]{12}$`));

    const created = (await api.getTemplate({ namespace: NAMESPACE, name: first.template }, version))!;
    expect(JSON.stringify(templateFiles(created).slice(0, OTHERS_FILES.length))).toBe(others);
    const ownership = expectTrustEntries(templateFiles(created).slice(OTHERS_FILES.length), bundleA, ["docker.io"]);
    expect(JSON.parse(created.metadata.annotations![OWNERSHIP_ANNOTATION])).toEqual(ownership);
    expect(created.metadata.annotations![BASE_ANNOTATION]).toBe(`${name}-base`);
    expect(created.metadata.labels!["cluster.x-k8s.io/cluster-name"]).toBe("c1");
    // The base is untouched: machines of the old revision keep what they had.
    expect(JSON.stringify(templateFiles((await api.getTemplate({ namespace: NAMESPACE, name: `${name}-base` }, version))!))).toBe(others);

    let md = await api.getMachineDeployment(target, version);
    expect(configRefName(md)).toBe(first.template);
    // Rolled out, in this version's status shape, before the call returned.
    expect(sim.rolledOut).toContain(first.generation);
    expect(md.status![version === "v1beta2" ? "upToDateReplicas" : "updatedReplicas"]).toBe(2);
    expect(events.map((e) => e.phase).filter((p) => !["conflict", "rollout", "written", "template-created", "verified"].includes(p)))
      .toEqual(["lease-acquired", "rollout-done", "released"]);
    expect(await api.getLease(leaseRef(target, "MachineDeployment"))).toBeUndefined();

    // Same bundle: no new template, no write.
    const countBefore = (await api.listTemplates(NAMESPACE, version, "")).length;
    const again = await writeWorkerTrust(api, target, { endpoints, bundlePem: bundleA }, options("stack/run-2"));
    expect(again).toMatchObject({ written: false, template: first.template, pruned: [] });
    expect((await api.listTemplates(NAMESPACE, version, "")).length).toBe(countBefore);
    expect((await api.getMachineDeployment(target, version)).metadata.generation).toBe(first.generation);

    // Rotation: a new template derived from the same base; the one no MachineDeployment names is deleted.
    const rotated = await writeWorkerTrust(api, target, { endpoints, bundlePem: bundleB }, options("stack/run-3"));
    expect(rotated.template).toMatch(new RegExp(`^${name}-base-rt-[0-9a-f]{12}$`));
    expect(rotated.template).not.toBe(first.template);
    expect(rotated.pruned).toEqual([first.template]);
    expect(await api.getTemplate({ namespace: NAMESPACE, name: first.template }, version)).toBeUndefined();
    const t = (await api.getTemplate({ namespace: NAMESPACE, name: rotated.template }, version))!;
    expect(JSON.stringify(templateFiles(t).slice(0, OTHERS_FILES.length))).toBe(others);
    expectTrustEntries(templateFiles(t).slice(OTHERS_FILES.length), bundleB, ["docker.io"]);

    // Remove: back to the unchanged base, ours deleted.
    const removed = await removeWorkerTrust(api, target, options("stack/run-4"));
    expect(removed).toMatchObject({ template: `${name}-base`, written: true, pruned: [rotated.template] });
    md = await api.getMachineDeployment(target, version);
    expect(configRefName(md)).toBe(`${name}-base`);
    expect(await api.listTemplates(NAMESPACE, version, "app.kubernetes.io/managed-by=registry-trust")).toEqual([]);
  } finally {
    await sim.stop();
  }
  expect(sim.errors).toEqual([]);
  expect(sim.heartbeats).toBeGreaterThan(10);
};

const refusals = (version: CapiVersion, env: () => ApiServer) => async () => {
  const api = workerApi(env());
  const missing = await refusal(writeWorkerTrust(api, { namespace: NAMESPACE, name: "nope", apiVersion: version }, { endpoints, bundlePem: bundleA }, options("r/1")),
    "MACHINE_DEPLOYMENT_NOT_FOUND");
  expect(missing.message).toMatch(/MachineDeployment default\/nope not found/);
  expect(await api.getLease(leaseRef({ namespace: NAMESPACE, name: "nope" }, "MachineDeployment"))).toBeUndefined();

  const name = `other-bootstrap-${version}`;
  const ref: Record<string, string> = version === "v1beta2"
    ? { apiGroup: "bootstrap.example.com", kind: "TalosConfigTemplate", name: "talos" }
    : { apiVersion: "bootstrap.example.com/v1alpha3", kind: "TalosConfigTemplate", name: "talos" };
  await createMachineDeployment(env(), version, name, ref);
  const other = await refusal(writeWorkerTrust(api, { namespace: NAMESPACE, name, apiVersion: version }, { endpoints, bundlePem: bundleA }, options("r/2")),
    "UNSUPPORTED_BOOTSTRAP");
  expect(other.message).toMatch(/bootstraps from TalosConfigTemplate talos \(bootstrap\.example\.com\), not a KubeadmConfigTemplate/);
  expect((await api.listTemplates(NAMESPACE, version, "app.kubernetes.io/managed-by=registry-trust")).length).toBe(0);
};

/** Two bundles of 20 CAs each, over Cluster API's 10,240 characters for a file's content. */
const [bigA, bigB] = [caBundles(pki, 20).join(""), caBundles(pki, 20).join("")];

const largeBundle = (version: CapiVersion, env: () => ApiServer) => async () => {
  const api = workerApi(env());
  const core = env().kubeConfig.makeApiClient(k8s.CoreV1Api);
  const name = `big-${version}`;
  const target = { namespace: NAMESPACE, name, apiVersion: version };
  const base = await createTemplate(env(), version, `${name}-base`);
  const md = await createMachineDeployment(env(), version, name, templateRef(version, base.metadata.name!));
  const sim = new SimMachineDeploymentController(env(), version, name);
  const secretOf = (t: KubeObject) => templateFiles(t).find((f) => f.path.endsWith("/ca.crt"))!.contentFrom!.secret.name;
  const ours = async () => (await core.listNamespacedSecret({ namespace: NAMESPACE, labelSelector: `${MD_LABEL}=${name}` })).items.map((s) => s.metadata!.name).sort();
  try {
    expect(bigA.length).toBeGreaterThan(10_240);
    const first = await writeWorkerTrust(api, target, { endpoints, bundlePem: bigA }, options("big/1"));
    const t1 = (await api.getTemplate({ namespace: NAMESPACE, name: first.template }, version))!;
    // Every CA file takes the bundle from one Secret; hosts.toml stays inline.
    const ca = templateFiles(t1).filter((f) => f.path.endsWith("/ca.crt"));
    expect(ca).toEqual([{ path: "/etc/containerd/certs.d/registry.test:5000/ca.crt", owner: "root:root", permissions: "0644", contentFrom: { secret: { name: first.ownership.secret, key: "ca.crt" } } }]);
    expect(first.ownership.secret).toMatch(new RegExp(`^${name}-registry-trust-md-ca-[0-9a-f]{12}$`));
    const s1 = await core.readNamespacedSecret({ namespace: NAMESPACE, name: secretOf(t1) });
    expect(Buffer.from(s1.data!["ca.crt"], "base64").toString()).toBe(bigA);
    expect(s1.metadata!.ownerReferences).toEqual([expect.objectContaining({ kind: "MachineDeployment", name, uid: md.metadata.uid })]);

    // Rotation to another large bundle: a new Secret and template; the old ones go once the rollout is done.
    const second = await writeWorkerTrust(api, target, { endpoints, bundlePem: bigB }, options("big/2"));
    const t2 = (await api.getTemplate({ namespace: NAMESPACE, name: second.template }, version))!;
    expect(secretOf(t2)).not.toBe(secretOf(t1));
    expect(second.pruned).toEqual([first.template]);
    expect(await ours()).toEqual([secretOf(t2)]);
    // Back under the limit: inline again, and no Secret of ours left.
    const small = await writeWorkerTrust(api, target, { endpoints, bundlePem: bundleA }, options("big/3"));
    expect(small.ownership.secret).toBeUndefined();
    expect(await ours()).toEqual([]);
    await writeWorkerTrust(api, target, { endpoints, bundlePem: bigA }, options("big/4"));
    await removeWorkerTrust(api, target, options("big/5"));
    expect(await ours()).toEqual([]);
  } finally {
    await sim.stop();
  }
};

const forbidden = (version: CapiVersion, env: () => ApiServer) => async () => {
  const api = workerApi(env());
  const name = `rbac-${version}`;
  const target = { namespace: NAMESPACE, name, apiVersion: version };
  const base = await createTemplate(env(), version, `${name}-base`);
  await createMachineDeployment(env(), version, name, templateRef(version, base.metadata.name!));
  // Everything but updating MachineDeployments and creating Secrets.
  await grant(env(), `md-${version}`, [
    { apiGroups: ["cluster.x-k8s.io"], resources: ["machinedeployments"], verbs: ["get", "list"] },
    { apiGroups: ["bootstrap.cluster.x-k8s.io"], resources: ["kubeadmconfigtemplates"], verbs: ["get", "list", "create", "delete"] },
    { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "update", "delete"] },
    { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "delete"] },
  ]);
  const limited = clientNodeWorkerApi(k8s, userKubeConfig(env(), `md-${version}`));
  const needs = "Grant the identity in the kubeconfig get/list/update on machinedeployments.cluster.x-k8s.io, " +
    "get/list/create/delete on kubeadmconfigtemplates.bootstrap.cluster.x-k8s.io, get/create/update/delete on leases.coordination.k8s.io " +
    "and get/list/create/delete on secrets in that namespace.";

  const update = await refusal(writeWorkerTrust(limited, target, { endpoints, bundlePem: bundleA }, options("r/rbac-1")), "FORBIDDEN");
  expect(update.message).toMatch(new RegExp(`^forbidden while trying to update MachineDeployment default/${name}: .*User "md-${version}" cannot update resource "machinedeployments"`));
  expect(update.message).toContain(needs);
  const secret = await refusal(writeWorkerTrust(limited, target, { endpoints, bundlePem: bigA }, options("r/rbac-2")), "FORBIDDEN");
  expect(secret.message).toMatch(new RegExp(`^forbidden while trying to create Secret default/${name}-registry-trust-md-ca-[0-9a-f]{12}: .*cannot create resource "secrets"`));
  expect(secret.message).toContain(needs);
  // Neither changed the MachineDeployment or left a Lease.
  expect(configRefName(await api.getMachineDeployment(target, version))).toBe(`${name}-base`);
  expect(await api.getLease(leaseRef(target, "MachineDeployment"))).toBeUndefined();
};

describe("v1beta2 (CAPI's storage version)", () => {
  let env: ApiServer;
  beforeAll(async () => {
    env = await startApiServer();
  });
  afterAll(async () => env?.stop());

  test("a new template with our files, other files byte for byte; MachineDeployment repointed through real 409s; idempotent; rotation prunes; remove restores the base",
    scenario("v1beta2", () => env));
  test("refused before anything changes: MachineDeployment not found, bootstrap not a KubeadmConfigTemplate", refusals("v1beta2", () => env));
  test("a bundle over 10,240 characters goes to a Secret owned by the MachineDeployment (contentFrom); rotations and remove prune it", largeBundle("v1beta2", () => env));
  test("RBAC: missing verbs give a FORBIDDEN naming the user, what was attempted and every permission needed", forbidden("v1beta2", () => env));
});

describe("v1beta1 (stored as v1beta1: the bare apiserver cannot convert)", () => {
  let env: ApiServer;
  beforeAll(async () => {
    env = await startApiServer({ storageVersion: "v1beta1" });
  });
  afterAll(async () => env?.stop());

  test("the same scenario in the v1beta1 shapes (configRef apiVersion, status.updatedReplicas)", scenario("v1beta1", () => env));
  test("the same refusals in v1beta1", refusals("v1beta1", () => env));
  test("the same large bundle through a Secret in v1beta1", largeBundle("v1beta1", () => env));
});
