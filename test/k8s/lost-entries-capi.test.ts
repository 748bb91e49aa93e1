// Our entries must not be lost silently (issue 12, item 4), against the real Cluster API v1.14 controllers
// (lab/capi.ts) on a real etcd + kube-apiserver: the dynamic providers, serialized and run as Pulumi's
// dynamic-provider host runs them, show in `read` (pulumi refresh) and `diff` (pulumi preview) an entry
// someone removed; the worker sequencer keeps another stack's entries, keeps a template a MachineSet still
// creates machines from, and names the field manager that repointed the MachineDeployment under it.
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import type { ControlPlaneTrustInputs } from "../../components/control-plane-trust-provider";
import type { WorkerTrustInputs } from "../../components/worker-trust-provider";
import { isKcpError, KcpErrorCode } from "../../core/kcp/errors";
import { KcpObject } from "../../core/kcp/api";
import { FileEntry } from "../../core/kcp/plan";
import { KubeObject, MD_GROUP, MD_PLURAL } from "../../core/workers/api";
import { WorkerEvent, WorkerOptions, writeWorkerTrust } from "../../core/workers/sequencer";
import { bundleHash } from "../../core/x509/bundle";
import { TestPki } from "../../lab/openssl-pki";
import { ApiServer } from "../../lab/apiserver";
import { ManagementCluster, startManagementCluster } from "../../lab/capi";
import { caBundles, fastOptions, replaceAsAnotherWriter } from "./kcp-support";
import { createManagedCluster, managedClusterNames, NAMESPACE, OTHERS_FILES, waitForClusterRolledOut, workerApi } from "../../lab/capi-objects";
import { SerializedProvider, loadSerializedProvider } from "./serialized-provider";

jest.setTimeout(300_000);

const pki = new TestPki();
const [bundleA, bundleB, bundleC] = caBundles(pki, 3);
const names = managedClusterNames("lost");
const regA = [{ host: "registry-a.test", port: 5000, mirrorOf: [] as string[] }];
const regB = [{ host: "registry-b.test", port: 5443, mirrorOf: [] as string[] }];
const CA_A = "/etc/containerd/certs.d/registry-a.test:5000/ca.crt";
const CA_B = "/etc/containerd/certs.d/registry-b.test:5443/ca.crt";
let mgmt: ManagementCluster;
let env: ApiServer;
let custom: k8s.CustomObjectsApi;
const providers: SerializedProvider[] = [];

beforeAll(async () => {
  mgmt = await startManagementCluster();
  env = mgmt.api;
  custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  await createManagedCluster(env, names, { controlPlaneReplicas: 1, workerReplicas: 1 });
  await waitForClusterRolledOut(env, names, 300_000);
}, 420_000);
afterAll(async () => {
  await mgmt?.stop();
  pki.cleanup();
  for (const p of providers) p.cleanup();
});

const kcpRef = { group: "controlplane.cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "kubeadmcontrolplanes", name: names.controlPlane };
const mdRef = { group: MD_GROUP, version: "v1beta2", namespace: NAMESPACE, plural: MD_PLURAL, name: names.machineDeployment };
const kcpFiles = (kcp: KcpObject) => (kcp.spec!.kubeadmConfigSpec!.files ?? []) as FileEntry[];
const templateFiles = (t: KubeObject) => ((t.spec!.template as { spec: { files?: FileEntry[] } }).spec.files ?? []);
const configRef = (md: KubeObject) => (md.spec!.template as { spec: { bootstrap: { configRef: { name: string } } } }).spec.bootstrap.configRef;

async function refusal(p: Promise<unknown>, code: KcpErrorCode): Promise<Error> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!isKcpError(err, code)) throw new Error(`expected a ${code} refusal, got ${err instanceof Error ? err.stack : String(err)}`);
  return err;
}

/** A platform's GitOps tool putting the MachineDeployment back on `template`: a full update under its own field manager. */
async function gitopsRepoints(template: string): Promise<void> {
  await replaceAsAnotherWriter<KubeObject>(custom, mdRef, (md) => {
    configRef(md).name = template;
    return md;
  });
}

describe("the dynamic providers read the live object: refresh and preview show an entry someone removed", () => {
  test("ControlPlaneTrust: our CA file removed from the KCP by another writer", async () => {
    const provider = await loadSerializedProvider("control-plane-trust");
    providers.push(provider);
    const inputs: ControlPlaneTrustInputs = {
      kubeconfig: fs.readFileSync(env.kubeconfigPath, "utf8"), namespace: NAMESPACE, name: names.controlPlane, endpoints: regA,
      bundlePem: bundleA, bundleHash: bundleHash(bundleA), holder: "registry-trust/refresh", waitForRollout: false,
    };
    const c = await provider.call("create", inputs);
    expect(await provider.call("diff", c.id, c.outs, inputs)).toMatchObject({ changes: false });
    expect((await provider.call("read", c.id, c.outs)).props.drift).toBe("");

    // Someone removes our CA file (kubectl edit, a GitOps sync): a full update under their field manager.
    await replaceAsAnotherWriter<KcpObject>(custom, kcpRef, (kcp) => {
      kcp.spec!.kubeadmConfigSpec!.files = kcpFiles(kcp).filter((f) => f.path !== CA_A);
      return kcp;
    });

    const refreshed = await provider.call("read", c.id, c.outs);
    expect(refreshed.id).toBe(c.id);
    expect(refreshed.props.drift).toContain(`KubeadmControlPlane ${NAMESPACE}/${names.controlPlane}`);
    expect(refreshed.props.drift).toContain(CA_A);
    // Preview with unchanged inputs: an update, whether or not a refresh ran first.
    expect(await provider.call("diff", c.id, c.outs, inputs)).toMatchObject({ changes: true, replaces: [] });
    expect(await provider.call("diff", c.id, refreshed.props, inputs)).toMatchObject({ changes: true, replaces: [] });

    // The update puts it back; read and diff agree again.
    const u = await provider.call("update", c.id, refreshed.props, inputs);
    expect(u.outs.drift).toBe("");
    expect(kcpFiles((await custom.getNamespacedCustomObject(kcpRef)) as KcpObject).find((f) => f.path === CA_A)?.content).toBe(bundleA);
    expect((await provider.call("read", c.id, u.outs)).props.drift).toBe("");
    expect(await provider.call("diff", c.id, u.outs, inputs)).toMatchObject({ changes: false });
    await provider.call("delete", c.id, u.outs);
  });

  test("WorkerTrust: the MachineDeployment repointed at its original template", async () => {
    const provider = await loadSerializedProvider("worker-trust");
    providers.push(provider);
    const inputs: WorkerTrustInputs = {
      kubeconfig: fs.readFileSync(env.kubeconfigPath, "utf8"), namespace: NAMESPACE, name: names.machineDeployment, endpoints: regA,
      bundlePem: bundleA, bundleHash: bundleHash(bundleA), holder: "registry-trust/refresh", waitForRollout: false,
    };
    const c = await provider.call("create", inputs);
    expect(await provider.call("diff", c.id, c.outs, inputs)).toMatchObject({ changes: false });
    await gitopsRepoints(names.bootstrapTemplate);
    const refreshed = await provider.call("read", c.id, c.outs);
    expect(refreshed.props.template).toBe(names.bootstrapTemplate);
    expect(refreshed.props.drift).toContain(`MachineDeployment ${NAMESPACE}/${names.machineDeployment} (KubeadmConfigTemplate ${names.bootstrapTemplate})`);
    expect(await provider.call("diff", c.id, c.outs, inputs)).toMatchObject({ changes: true, replaces: [] });
    // Back to how it was for the next cases: our template named again, then removed by delete.
    const u = await provider.call("update", c.id, refreshed.props, inputs);
    expect(u.outs.template).toBe(c.outs.template);
    await provider.call("delete", c.id, u.outs);
    expect(configRef((await custom.getNamespacedCustomObject(mdRef)) as KubeObject).name).toBe(names.bootstrapTemplate);
  });
});

describe("the worker sequencer", () => {
  const target = { namespace: NAMESPACE, name: names.machineDeployment, apiVersion: "v1beta2" } as const;
  const options = (holder: string, owner: string, extra: Partial<WorkerOptions> = {}): WorkerOptions =>
    ({ ...fastOptions<WorkerEvent>(holder), owner, rollout: { timeoutMs: 240_000, pollMs: 250 }, ...extra });
  const noWait = { rollout: { wait: false } };

  test("two stacks on one MachineDeployment keep each other's entries", async () => {
    const api = workerApi(env);
    await writeWorkerTrust(api, target, { endpoints: regA, bundlePem: bundleA }, options("proj/a/run-1", "proj/a", noWait));
    const b = await writeWorkerTrust(api, target, { endpoints: regB, bundlePem: bundleB }, options("proj/b/run-1", "proj/b", noWait));
    const both = (await api.getTemplate({ namespace: NAMESPACE, name: b.template }, "v1beta2"))!;
    expect(templateFiles(both).map((f) => f.path)).toEqual([...OTHERS_FILES.map((f) => f.path), CA_A, `${path.dirname(CA_A)}/hosts.toml`, CA_B, `${path.dirname(CA_B)}/hosts.toml`]);
    expect(templateFiles(both).find((f) => f.path === CA_A)?.content).toBe(bundleA);
    // Stack A rotates: B's entries stay as B wrote them.
    const a2 = await writeWorkerTrust(api, target, { endpoints: regA, bundlePem: bundleB }, options("proj/a/run-2", "proj/a", noWait));
    const now = (await api.getTemplate({ namespace: NAMESPACE, name: a2.template }, "v1beta2"))!;
    expect(templateFiles(now).find((f) => f.path === CA_A)?.content).toBe(bundleB);
    expect(templateFiles(now).find((f) => f.path === CA_B)?.content).toBe(bundleB);
  });

  test("a template a MachineSet still creates machines from is not pruned after the rollout (a rollback kept at 0 replicas)", async () => {
    const api = workerApi(env);
    // Stack A (which owns registry-a's entries here) rotates twice; the first rotation's template is the one kept.
    const first = await writeWorkerTrust(api, target, { endpoints: regA, bundlePem: bundleA }, options("proj/a/run-3", "proj/a", noWait));
    // A MachineSet made from that template, outside the MachineDeployment's selector: the MachineSet
    // controller reconciles it, and creates its machines from that template once scaled up.
    const sets = (await custom.listNamespacedCustomObject({ group: MD_GROUP, version: "v1beta2", namespace: NAMESPACE, plural: "machinesets", labelSelector: `cluster.x-k8s.io/deployment-name=${names.machineDeployment}` })) as { items: KubeObject[] };
    const template = JSON.parse(JSON.stringify(sets.items[0].spec!.template)) as { metadata?: { labels?: Record<string, string> }; spec: { bootstrap: { configRef: { name: string } } } };
    template.metadata = { labels: { "registry-trust.test/rollback": "kept" } };
    template.spec.bootstrap.configRef.name = first.template;
    await custom.createNamespacedCustomObject({ group: MD_GROUP, version: "v1beta2", namespace: NAMESPACE, plural: "machinesets", body: {
      apiVersion: `${MD_GROUP}/v1beta2`, kind: "MachineSet", metadata: { name: `${names.machineDeployment}-rollback`, namespace: NAMESPACE },
      spec: { clusterName: names.cluster, replicas: 0, selector: { matchLabels: { "registry-trust.test/rollback": "kept" } }, template },
    } });
    // A rotation, waited for through the real rollout; pruning comes after it.
    const second = await writeWorkerTrust(api, target, { endpoints: regA, bundlePem: bundleB }, options("proj/a/run-4", "proj/a"));
    expect(second.template).not.toBe(first.template);
    expect(second.pruned).not.toContain(first.template);
    expect(await api.getTemplate({ namespace: NAMESPACE, name: first.template }, "v1beta2")).toBeDefined();
  });

  test("repointed by another writer while its rollout runs: ENTRIES_REVERTED naming that field manager", async () => {
    const api = workerApi(env);
    const before = configRef((await custom.getNamespacedCustomObject(mdRef)) as KubeObject).name;
    let armed = false;
    let repointed = false;
    const events: WorkerEvent[] = [];
    const opts = options("proj/a/run-5", "proj/a", { onEvent: (e) => {
      events.push(e);
      if (e.phase === "verified") armed = true;
    } });
    const gitopsApi = {
      ...api,
      async getMachineDeployment(...args: Parameters<typeof api.getMachineDeployment>) {
        if (armed && !repointed) {
          repointed = true;
          await gitopsRepoints(before);
        }
        return api.getMachineDeployment(...args);
      },
    };
    // A bundle none of the earlier cases wrote: a new template, so the MachineDeployment really is repointed.
    const err = await refusal(writeWorkerTrust(gitopsApi, target, { endpoints: regA, bundlePem: bundleC }, opts), "ENTRIES_REVERTED");
    expect(repointed).toBe(true);
    expect(err.message).toContain(`it names KubeadmConfigTemplate ${before}`);
    // Only the manager that set the name: the rest of configRef (apiGroup, kind) is still the creator's.
    expect(err.message).toMatch(/spec\.template\.spec\.bootstrap\.configRef\.name is now owned by field manager "platform-gitops" \(Update at [^)]*\) \(metadata\.managedFields\)/);
    expect(events[events.length - 1].phase).toBe("released");
  });
});
