// The WorkerTrust dynamic provider as Pulumi runs it: serialized under ts-node and tsx, loaded back with
// require-from-string in a plain node process, and driven through diff/create/update/delete against the
// real Cluster API v1.14 controllers (lab/capi.ts), which roll each repointed template out through real
// MachineSets and Machines before the provider call returns.
import * as fs from "node:fs";
import type { WorkerTrustInputs } from "../../components/worker-trust-provider";
import { FileEntry } from "../../core/kcp/plan";
import { configRefName } from "../../core/workers/template";
import { bundleHash } from "../../core/x509/bundle";
import { TestPki } from "../../lab/openssl-pki";
import { ApiServer } from "../../lab/apiserver";
import { ManagementCluster, startManagementCluster } from "../../lab/capi";
import { caBundles } from "./kcp-support";
import { createManagedCluster, machineTemplates, managedClusterNames, NAMESPACE, waitForClusterRolledOut, workerApi } from "../../lab/capi-objects";
import { SerializedProvider, loadSerializedProvider, serializeProvider } from "./serialized-provider";

jest.setTimeout(300_000);

const pki = new TestPki();
const [bundleA, bundleB] = caBundles(pki, 2);
let provider: SerializedProvider;

let mgmt: ManagementCluster;
let env: ApiServer;
const names = managedClusterNames("pool");

beforeAll(async () => {
  provider = await loadSerializedProvider("worker-trust");
  mgmt = await startManagementCluster();
  env = mgmt.api;
  await createManagedCluster(env, names, { controlPlaneReplicas: 1, workerReplicas: 1 });
  await waitForClusterRolledOut(env, names, 300_000);
}, 420_000);
afterAll(async () => {
  await mgmt?.stop();
  pki.cleanup();
  provider?.cleanup();
});

const call: SerializedProvider["call"] = (method, ...args) => provider.call(method, ...args);

function inputs(bundlePem: string, extra: Partial<WorkerTrustInputs> = {}): WorkerTrustInputs {
  return {
    kubeconfig: fs.readFileSync(env.kubeconfigPath, "utf8"),
    namespace: NAMESPACE,
    name: names.machineDeployment,
    endpoints: [{ host: "registry.test", port: 5000, mirrorOf: [] }],
    bundlePem,
    bundleHash: bundleHash(bundlePem),
    holder: "registry-trust/test",
    rolloutTimeoutSeconds: 240,
    ...extra,
  };
}

test("the serialized provider captures client-node only as a require() inside its methods, and no x509 parser", async () => {
  const text = provider.text;
  expect(text).toContain('require("@kubernetes/client-node")');
  expect(text).not.toMatch(/asn1/i);
  const stdout = await serializeProvider("worker-trust", "tsx");
  expect(stdout).toContain('require("@kubernetes/client-node")');
  expect(stdout).not.toMatch(/asn1/i);
});

test("create, diff, update and delete through the serialized provider against the real controllers", async () => {
  const api = workerApi(env);
  const md = { namespace: NAMESPACE, name: names.machineDeployment };
  const caOf = async (name: string) =>
    ((await api.getTemplate({ namespace: NAMESPACE, name }, "v1beta2"))!.spec!.template as { spec: { files: FileEntry[] } }).spec.files.find((f) => f.path.endsWith("/ca.crt"))?.content;
  const machinesFrom = () => machineTemplates(env, names.cluster, names.machineDeployment);
  expect(await machinesFrom()).toEqual([names.bootstrapTemplate]);

  const c = await call("create", inputs(bundleA));
  expect(c.id).toBe(`default/${names.machineDeployment}`);
  expect(c.outs).toMatchObject({ servedVersion: "v1beta2", bundleHash: bundleHash(bundleA) });
  expect(c.outs.template).toMatch(new RegExp(`^${names.bootstrapTemplate}-rt-[0-9a-f]{12}$`));
  expect(configRefName(await api.getMachineDeployment(md, "v1beta2"))).toBe(c.outs.template);
  expect(await caOf(c.outs.template)).toBe(bundleA);
  // The call returned once the real controllers had replaced the machine with one made from our template.
  expect(await machinesFrom()).toEqual([c.outs.template]);

  expect(await call("diff", c.id, c.outs, inputs(bundleA))).toMatchObject({ changes: false, replaces: [] });
  expect(await call("diff", c.id, c.outs, inputs(bundleA, { kubeconfig: env.kubeconfigPath }))).toMatchObject({ changes: false });
  expect(await call("diff", c.id, c.outs, inputs(bundleB))).toEqual({ changes: true, replaces: [], deleteBeforeReplace: true });
  expect(await call("diff", c.id, c.outs, inputs(bundleA, { name: "other" }))).toMatchObject({ changes: true, replaces: ["name"] });

  const u = await call("update", c.id, c.outs, inputs(bundleB, { kubeconfig: env.kubeconfigPath }));
  expect(u.outs.template).not.toBe(c.outs.template);
  expect(await caOf(u.outs.template)).toBe(bundleB);
  expect(await api.getTemplate({ namespace: NAMESPACE, name: c.outs.template }, "v1beta2")).toBeUndefined();

  expect(u.outs.secretName).toBeUndefined();

  // Over 10,240 characters: the serialized provider creates the Secret the new template takes it from.
  const big = caBundles(pki, 20).join("");
  const b = await call("update", c.id, u.outs, inputs(big));
  expect(b.outs.secretName).toMatch(new RegExp(`^${names.machineDeployment}-registry-trust-md-ca-[0-9a-f]{12}$`));
  const t = (await api.getTemplate({ namespace: NAMESPACE, name: b.outs.template }, "v1beta2"))!;
  const ca = (t.spec!.template as { spec: { files: FileEntry[] } }).spec.files.find((f) => f.path.endsWith("/ca.crt"))!;
  expect(ca.contentFrom).toEqual({ secret: { name: b.outs.secretName, key: "ca.crt" } });
  const secret = await api.getSecret({ namespace: NAMESPACE, name: b.outs.secretName });
  expect(Buffer.from(secret!.data!["ca.crt"], "base64").toString()).toBe(big);

  expect(await call("delete", c.id, b.outs)).toBeNull();
  expect(configRefName(await api.getMachineDeployment(md, "v1beta2"))).toBe(names.bootstrapTemplate);
  expect(await api.getTemplate({ namespace: NAMESPACE, name: b.outs.template }, "v1beta2")).toBeUndefined();
  expect(await api.getSecret({ namespace: NAMESPACE, name: b.outs.secretName })).toBeUndefined();
  expect(await machinesFrom()).toEqual([names.bootstrapTemplate]);
});

test("a missing MachineDeployment: create fails clearly, delete has nothing to remove", async () => {
  await expect(call("create", inputs(bundleA, { name: "missing" }))).rejects.toThrow(/MachineDeployment default\/missing not found/);
  expect(await call("delete", "default/missing", inputs(bundleA, { name: "missing" }))).toBeNull();
});
