// core/workers against the real Cluster API v1.14 controllers (lab/capi.ts: core, KubeadmControlPlane,
// kubeadm bootstrap, CAPD in-memory) on a real etcd + kube-apiserver: the MachineDeployment controller
// rolls our template out through real MachineSets and Machines, the bootstrap provider renders each new
// machine's bootstrap data from it, and the cluster autoscaler's annotation writes meet our resourceVersion
// precondition. Needs scripts/k8s-binaries.sh and scripts/capi-binaries.sh once.
import * as k8s from "@kubernetes/client-node";
import { KubeObject } from "../../core/workers/api";
import { isKcpError, KcpErrorCode } from "../../core/kcp/errors";
import { leaseRef } from "../../core/kcp/lease";
import { FileEntry, OWNERSHIP_ANNOTATION } from "../../core/kcp/plan";
import { removeWorkerTrust, WorkerEvent, WorkerOptions, writeWorkerTrust } from "../../core/workers/sequencer";
import { BASE_ANNOTATION, configRefName, MD_LABEL } from "../../core/workers/template";
import { CapiVersion, clientNodeWorkerApi, MD_GROUP, MD_PLURAL, WorkerApi } from "../../core/workers/api";
import { TestPki } from "../../lab/openssl-pki";
import { until } from "../support/until";
import { ManagementCluster, startManagementCluster } from "../../lab/capi";
import { caBundles, expectTrustEntries, fastOptions } from "./kcp-support";
import { createManagedCluster, createWorkerPool, listMachines, managedClusterNames, MachineObject, NAMESPACE, OTHERS_FILES, waitForClusterRolledOut, workerApi } from "../../lab/capi-objects";
import { grant, userKubeConfig } from "./worker-trust-support";

jest.setTimeout(300_000);

const endpoints = [{ host: "registry.test", port: 5000, mirrorOf: ["docker.io"] }];
const CA_PATH = "/etc/containerd/certs.d/registry.test:5000/ca.crt";
const pki = new TestPki();
const [bundleA, bundleB] = caBundles(pki, 2);
const names = managedClusterNames("wk");
let mgmt: ManagementCluster;

beforeAll(async () => {
  mgmt = await startManagementCluster();
  await createManagedCluster(mgmt.api, names, { controlPlaneReplicas: 1, workerReplicas: 2 });
  await waitForClusterRolledOut(mgmt.api, names, 300_000);
}, 420_000);

afterAll(async () => {
  await mgmt?.stop();
  pki.cleanup();
});

/** Real rollouts take tens of seconds here: rollout polls every 250 ms, within 4 minutes. */
function options(holder: string, events: WorkerEvent[] = [], extra: Partial<WorkerOptions> = {}): WorkerOptions {
  return { ...fastOptions(holder, events), rollout: { timeoutMs: 240_000, pollMs: 250 }, ...extra };
}

const templateFiles = (t: KubeObject) => (t.spec!.template as { spec: { files: FileEntry[] } }).spec.files;

async function refusal(p: Promise<unknown>, code: KcpErrorCode): Promise<Error> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!isKcpError(err, code)) throw new Error(`expected a ${code} refusal, got ${err instanceof Error ? err.stack : String(err)}`);
  return err;
}

/**
 * The real API with the cluster autoscaler writing between our read and our MachineDeployment write: it
 * records its node-group bounds as annotations on the MachineDeployment (its Cluster API provider's
 * contract), which changes the resourceVersion our write carries, so the apiserver answers 409.
 */
function autoscalerInBetween(api: WorkerApi, kc: k8s.KubeConfig, version: CapiVersion): WorkerApi & { writes: number } {
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const wrapped = {
    ...api,
    writes: 0,
    async replaceMachineDeployment(...args: Parameters<WorkerApi["replaceMachineDeployment"]>) {
      if (wrapped.writes++ === 0) {
        const [ref] = args;
        await custom.patchNamespacedCustomObject({ group: MD_GROUP, version, namespace: ref.namespace, plural: MD_PLURAL, name: ref.name,
          body: { metadata: { annotations: { "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size": "2", "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size": "5" } } } },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
      }
      return api.replaceMachineDeployment(...args);
    },
  };
  return wrapped;
}

/**
 * The templates a run pruned, or, when `template` was kept because a MachineSet still named it when the
 * run pruned (Cluster API v1.14 deletes the old, empty MachineSet a moment after the rollout completes),
 * what a rerun prunes once no MachineSet names it any more.
 */
async function prunedOnceNoMachineSetNames(pruned: string[], template: string, rerun: () => Promise<{ pruned: string[] }>): Promise<string[]> {
  if (pruned.includes(template)) return pruned;
  const custom = mgmt.api.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  await until(`no MachineSet to name ${template}`, 60_000, async () => {
    const sets = (await custom.listNamespacedCustomObject({ group: MD_GROUP, version: "v1beta2", namespace: NAMESPACE, plural: "machinesets" })) as { items: KubeObject[] };
    return sets.items.some((s) => (s.spec?.template as { spec?: { bootstrap?: { configRef?: { name?: string } } } }).spec?.bootstrap?.configRef?.name === template) ? undefined : true;
  });
  return (await rerun()).pruned;
}

/** What the real controllers made of the MachineDeployment: its Machines, each with its KubeadmConfig and bootstrap data. */
async function machinesOf(md: string) {
  const custom = mgmt.api.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  const core = mgmt.api.kubeConfig.makeApiClient(k8s.CoreV1Api);
  const machines = await listMachines(mgmt.api, names.cluster, { machineDeployment: md });
  return Promise.all(machines.map(async (m: MachineObject) => {
    const config = (await custom.getNamespacedCustomObject({ group: "bootstrap.cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "kubeadmconfigs", name: m.spec.bootstrap.configRef!.name })) as KubeObject;
    const secret = await core.readNamespacedSecret({ namespace: NAMESPACE, name: m.spec.bootstrap.dataSecretName! });
    return {
      name: m.metadata.name,
      deleting: Boolean(m.metadata.deletionTimestamp),
      clonedFrom: config.metadata.annotations?.["cluster.x-k8s.io/cloned-from-name"],
      files: ((config.spec?.files ?? []) as FileEntry[]).map((f) => f.path),
      bootstrapData: Buffer.from(secret.data!.value, "base64").toString(),
    };
  }));
}

test("v1beta2: a new template with our files, others byte for byte; repointed through the autoscaler's 409; the real rollout replaces every machine with one bootstrapped from it; idempotent; rotation prunes; remove restores the base", async () => {
  const api = workerApi(mgmt.api);
  const version = "v1beta2";
  const target = { namespace: NAMESPACE, name: names.machineDeployment, apiVersion: version } as const;
  const base = (await api.getTemplate({ namespace: NAMESPACE, name: names.bootstrapTemplate }, version))!;
  const others = JSON.stringify(templateFiles(base));
  const before = await machinesOf(names.machineDeployment);
  expect(before).toHaveLength(2);
  const events: WorkerEvent[] = [];

  const writer = autoscalerInBetween(api, mgmt.api.kubeConfig, version);
  const first = await writeWorkerTrust(writer, target, { endpoints, bundlePem: bundleA }, options("stack/run-1", events));
  expect(first).toMatchObject({ version, written: true, previousTemplate: names.bootstrapTemplate });
  expect(first.conflicts).toBeGreaterThanOrEqual(1);
  expect(events.some((e) => e.phase === "conflict" && /the object has been modified/.test(e.message))).toBe(true);
  expect(first.template).toMatch(new RegExp(`^${names.bootstrapTemplate}-rt-[0-9a-f]{12}$`));
  const created = (await api.getTemplate({ namespace: NAMESPACE, name: first.template }, version))!;
  expect(JSON.stringify(templateFiles(created).slice(0, OTHERS_FILES.length))).toBe(others);
  const ownership = expectTrustEntries(templateFiles(created).slice(OTHERS_FILES.length), bundleA, ["docker.io"]);
  expect(JSON.parse(created.metadata.annotations![OWNERSHIP_ANNOTATION])).toEqual(ownership);
  expect(created.metadata.annotations![BASE_ANNOTATION]).toBe(names.bootstrapTemplate);
  expect(JSON.stringify(templateFiles((await api.getTemplate({ namespace: NAMESPACE, name: names.bootstrapTemplate }, version))!))).toBe(others);

  // When the wait returned, the real controllers had replaced both machines: each new one has a
  // KubeadmConfig cloned from our template and bootstrap data (cloud-init) that writes our CA file.
  const after = await machinesOf(names.machineDeployment);
  expect(after).toHaveLength(2);
  expect(after.map((m) => m.name).filter((n) => before.some((b) => b.name === n))).toEqual([]);
  for (const m of after) {
    expect(m).toMatchObject({ deleting: false, clonedFrom: first.template });
    expect(m.files).toEqual([...OTHERS_FILES.map((f) => f.path), ...ownership.paths]);
    expect(m.bootstrapData).toContain(`path: ${CA_PATH}`);
    expect(m.bootstrapData).toContain(bundleA.split("\n")[1]);
  }
  expect(configRefName(await api.getMachineDeployment(target, version))).toBe(first.template);
  expect(events.map((e) => e.phase).filter((p) => !["conflict", "rollout", "written", "template-created", "verified"].includes(p)))
    .toEqual(["lease-acquired", "rollout-done", "released"]);
  expect(await api.getLease(leaseRef(target, "MachineDeployment"))).toBeUndefined();

  // Same bundle: no new template, no write, no rollout.
  const again = await writeWorkerTrust(api, target, { endpoints, bundlePem: bundleA }, options("stack/run-2"));
  expect(again).toMatchObject({ written: false, template: first.template, pruned: [] });
  expect((await machinesOf(names.machineDeployment)).map((m) => m.name).sort()).toEqual(after.map((m) => m.name).sort());

  // Rotation: a new template from the same base, rolled out; the one no MachineDeployment names is deleted,
  // only after no MachineSet creates machines from it any more.
  const rotated = await writeWorkerTrust(api, target, { endpoints, bundlePem: bundleB }, options("stack/run-3"));
  expect(rotated.template).not.toBe(first.template);
  expect(await prunedOnceNoMachineSetNames(rotated.pruned, first.template, () => writeWorkerTrust(api, target, { endpoints, bundlePem: bundleB }, options("stack/run-3b")))).toEqual([first.template]);
  expect(await api.getTemplate({ namespace: NAMESPACE, name: first.template }, version)).toBeUndefined();
  for (const m of await machinesOf(names.machineDeployment)) {
    expect(m).toMatchObject({ deleting: false, clonedFrom: rotated.template });
    expect(m.bootstrapData).toContain(bundleB.split("\n")[1]);
  }

  // Remove: back to the unchanged base, rolled out, ours deleted.
  const removed = await removeWorkerTrust(api, target, options("stack/run-4"));
  expect(removed).toMatchObject({ template: names.bootstrapTemplate, written: true });
  expect(await prunedOnceNoMachineSetNames(removed.pruned, rotated.template, () => removeWorkerTrust(api, target, options("stack/run-4b")))).toEqual([rotated.template]);
  expect(await api.listTemplates(NAMESPACE, version, "app.kubernetes.io/managed-by=registry-trust")).toEqual([]);
  for (const m of await machinesOf(names.machineDeployment)) {
    expect(m).toMatchObject({ deleting: false, clonedFrom: names.bootstrapTemplate });
    expect(m.bootstrapData).not.toContain(CA_PATH);
  }
});

test("v1beta1 through the real conversion webhook: the same write and rollout in the v1beta1 shapes (configRef apiVersion, status.updatedReplicas)", async () => {
  const name = "wk-md-v1beta1";
  await createWorkerPool(mgmt.api, names.cluster, name, `${name}-bootstrap`, 1, "v1beta1");
  const api = workerApi(mgmt.api);
  const target = { namespace: NAMESPACE, name, apiVersion: "v1beta1" } as const;
  const r = await writeWorkerTrust(api, target, { endpoints, bundlePem: bundleA }, options("v1/run-1"));
  expect(r).toMatchObject({ version: "v1beta1", written: true });
  const md = await api.getMachineDeployment(target, "v1beta1");
  // v1beta2 stores only apiGroup + kind + name; Cluster API's conversion back to v1beta1 fills apiVersion with
  // the version the CRD's contract label names (v1beta2), whatever version the writer used.
  expect((md.spec!.template as { spec: { bootstrap: { configRef: Record<string, string> } } }).spec.bootstrap.configRef)
    .toMatchObject({ apiVersion: "bootstrap.cluster.x-k8s.io/v1beta2", kind: "KubeadmConfigTemplate", name: r.template });
  expect(md.status).toMatchObject({ observedGeneration: r.generation, updatedReplicas: 1, readyReplicas: 1, replicas: 1 });
  const machines = await machinesOf(name);
  expect(machines).toHaveLength(1);
  expect(machines[0]).toMatchObject({ deleting: false, clonedFrom: r.template });
});

test("refused before anything changes: MachineDeployment not found", async () => {
  const api = workerApi(mgmt.api);
  const missing = await refusal(writeWorkerTrust(api, { namespace: NAMESPACE, name: "nope", apiVersion: "v1beta2" }, { endpoints, bundlePem: bundleA }, options("r/1")),
    "MACHINE_DEPLOYMENT_NOT_FOUND");
  expect(missing.message).toMatch(/MachineDeployment default\/nope not found/);
  expect(await api.getLease(leaseRef({ namespace: NAMESPACE, name: "nope" }, "MachineDeployment"))).toBeUndefined();
});

/** Two bundles of 20 CAs each, over Cluster API's 10,240 characters for a file's content. */
const [bigA] = [caBundles(pki, 20).join("")];

test("a bundle over 10,240 characters goes to a Secret owned by the MachineDeployment (contentFrom); the bootstrap provider resolves it into each new machine's bootstrap data; remove prunes it", async () => {
  const name = "wk-md-big";
  await createWorkerPool(mgmt.api, names.cluster, name, `${name}-bootstrap`, 1);
  const api = workerApi(mgmt.api);
  const core = mgmt.api.kubeConfig.makeApiClient(k8s.CoreV1Api);
  const target = { namespace: NAMESPACE, name, apiVersion: "v1beta2" } as const;
  const ours = async () => (await core.listNamespacedSecret({ namespace: NAMESPACE, labelSelector: `${MD_LABEL}=${name}` })).items.map((s) => s.metadata!.name).sort();
  expect(bigA.length).toBeGreaterThan(10_240);
  const first = await writeWorkerTrust(api, target, { endpoints, bundlePem: bigA }, options("big/1"));
  const t1 = (await api.getTemplate({ namespace: NAMESPACE, name: first.template }, "v1beta2"))!;
  expect(templateFiles(t1).filter((f) => f.path.endsWith("/ca.crt"))).toEqual([
    { path: CA_PATH, owner: "root:root", permissions: "0644", contentFrom: { secret: { name: first.ownership.secret, key: "ca.crt" } } },
  ]);
  const md = await api.getMachineDeployment(target, "v1beta2");
  const s1 = await core.readNamespacedSecret({ namespace: NAMESPACE, name: first.ownership.secret! });
  expect(Buffer.from(s1.data!["ca.crt"], "base64").toString()).toBe(bigA);
  expect(s1.metadata!.ownerReferences).toEqual([expect.objectContaining({ kind: "MachineDeployment", name, uid: md.metadata.uid })]);
  const [machine] = await machinesOf(name);
  expect(machine.clonedFrom).toBe(first.template);
  // The bootstrap data carries the bundle itself: CABPK read the Secret when it rendered the machine's cloud-init.
  expect(machine.bootstrapData).toContain(`path: ${CA_PATH}`);
  expect(machine.bootstrapData).toContain(bigA.split("\n")[1]);

  await removeWorkerTrust(api, target, options("big/2"));
  expect(await ours()).toEqual([]);
});

test("RBAC: missing verbs give a FORBIDDEN naming the user, what was attempted and every permission needed", async () => {
  const api = workerApi(mgmt.api);
  const name = "wk-md-rbac";
  await createWorkerPool(mgmt.api, names.cluster, name, `${name}-bootstrap`, 1);
  const target = { namespace: NAMESPACE, name, apiVersion: "v1beta2" } as const;
  await grant(mgmt.api, "md-rbac", [
    { apiGroups: ["cluster.x-k8s.io"], resources: ["machinedeployments"], verbs: ["get", "list"] },
    { apiGroups: ["bootstrap.cluster.x-k8s.io"], resources: ["kubeadmconfigtemplates"], verbs: ["get", "list", "create", "delete"] },
    { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "update", "delete"] },
    { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "delete"] },
  ]);
  const limited = clientNodeWorkerApi(k8s, userKubeConfig(mgmt.api, "md-rbac"));
  const needs = "Grant the identity in the kubeconfig get/list/update on machinedeployments.cluster.x-k8s.io, list on machinesets and machines.cluster.x-k8s.io, " +
    "get/list/create/delete on kubeadmconfigtemplates.bootstrap.cluster.x-k8s.io, get/create/update/delete on leases.coordination.k8s.io, " +
    "get/list/create/delete on secrets and get on configmaps in that namespace.";
  const update = await refusal(writeWorkerTrust(limited, target, { endpoints, bundlePem: bundleA }, options("r/rbac-1")), "FORBIDDEN");
  expect(update.message).toMatch(new RegExp(`^forbidden while trying to update MachineDeployment default/${name}: .*User "md-rbac" cannot update resource "machinedeployments"`));
  expect(update.message).toContain(needs);
  const secret = await refusal(writeWorkerTrust(limited, target, { endpoints, bundlePem: bigA }, options("r/rbac-2")), "FORBIDDEN");
  expect(secret.message).toMatch(new RegExp(`^forbidden while trying to create Secret default/${name}-registry-trust-md-ca-[0-9a-f]{12}: .*cannot create resource "secrets"`));
  expect(configRefName(await api.getMachineDeployment(target, "v1beta2"))).toBe(`${name}-bootstrap`);
  expect(await api.getLease(leaseRef(target, "MachineDeployment"))).toBeUndefined();
});
