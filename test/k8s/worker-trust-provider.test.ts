// The WorkerTrust dynamic provider as Pulumi runs it: serialized under ts-node and tsx, loaded back with
// require-from-string in a plain node process, and driven through diff/create/update/delete against the
// real apiserver while the simulated MachineDeployment controller writes.
import * as fs from "node:fs";
import * as path from "node:path";
import type { WorkerTrustInputs } from "../../components/worker-trust-provider";
import { FileEntry } from "../../core/kcp/plan";
import { configRefName } from "../../core/workers/template";
import { bundleHash } from "../../core/x509/bundle";
import { TestPki } from "../support/pki";
import { ApiServer, startApiServer } from "../../lab/apiserver";
import { caBundles } from "./kcp-support";
import { NAMESPACE, createMachineDeployment, createTemplate, templateRef, workerApi } from "../../lab/capi-objects";
import { SimMachineDeploymentController } from "../../lab/sim-md-controller";
import { SerializedProvider, loadSerializedProvider, serializeProvider } from "./serialized-provider";

jest.setTimeout(120_000);

const pki = new TestPki();
const [bundleA, bundleB] = caBundles(pki, 2);
const fixture = path.join(__dirname, "fixtures", "serialize-worker-trust.ts");
let provider: SerializedProvider;

let env: ApiServer;
let sim: SimMachineDeploymentController | undefined;

beforeAll(async () => {
  env = await startApiServer();
  provider = await loadSerializedProvider(fixture);
});
afterAll(async () => {
  await sim?.stop();
  await env?.stop();
  pki.cleanup();
  provider?.cleanup();
});

const call: SerializedProvider["call"] = (method, ...args) => provider.call(method, ...args);

function inputs(bundlePem: string, extra: Partial<WorkerTrustInputs> = {}): WorkerTrustInputs {
  return {
    kubeconfig: fs.readFileSync(env.kubeconfigPath, "utf8"),
    namespace: NAMESPACE,
    name: "pool",
    endpoints: [{ host: "registry.test", port: 5000, mirrorOf: [] }],
    bundlePem,
    bundleHash: bundleHash(bundlePem),
    holder: "registry-trust/test",
    rolloutTimeoutSeconds: 20,
    ...extra,
  };
}

test("the serialized provider captures client-node only as a require() inside its methods, and no x509 parser", async () => {
  const text = provider.text;
  expect(text).toContain('require("@kubernetes/client-node")');
  expect(text).not.toMatch(/asn1/i);
  const stdout = await serializeProvider(fixture, "tsx");
  expect(stdout).toContain('require("@kubernetes/client-node")');
  expect(stdout).not.toMatch(/asn1/i);
});

test("create, diff, update and delete through the serialized provider on the real apiserver", async () => {
  const api = workerApi(env);
  const md = { namespace: NAMESPACE, name: "pool" };
  const caOf = async (name: string) =>
    ((await api.getTemplate({ namespace: NAMESPACE, name }, "v1beta2"))!.spec!.template as { spec: { files: FileEntry[] } }).spec.files.find((f) => f.path.endsWith("/ca.crt"))?.content;
  await createTemplate(env, "v1beta2", "pool-base");
  await createMachineDeployment(env, "v1beta2", "pool", templateRef("v1beta2", "pool-base"));
  sim = new SimMachineDeploymentController(env, "v1beta2", "pool");

  const c = await call("create", inputs(bundleA));
  expect(c.id).toBe("default/pool");
  expect(c.outs).toMatchObject({ servedVersion: "v1beta2", bundleHash: bundleHash(bundleA) });
  expect(c.outs.template).toMatch(/^pool-base-rt-[0-9a-f]{12}$/);
  expect(configRefName(await api.getMachineDeployment(md, "v1beta2"))).toBe(c.outs.template);
  expect(await caOf(c.outs.template)).toBe(bundleA);

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
  expect(b.outs.secretName).toMatch(/^pool-registry-trust-md-ca-[0-9a-f]{12}$/);
  const t = (await api.getTemplate({ namespace: NAMESPACE, name: b.outs.template }, "v1beta2"))!;
  const ca = (t.spec!.template as { spec: { files: FileEntry[] } }).spec.files.find((f) => f.path.endsWith("/ca.crt"))!;
  expect(ca.contentFrom).toEqual({ secret: { name: b.outs.secretName, key: "ca.crt" } });
  const secret = await api.getSecret({ namespace: NAMESPACE, name: b.outs.secretName });
  expect(Buffer.from(secret!.data!["ca.crt"], "base64").toString()).toBe(big);

  expect(await call("delete", c.id, b.outs)).toBeNull();
  expect(configRefName(await api.getMachineDeployment(md, "v1beta2"))).toBe("pool-base");
  expect(await api.getTemplate({ namespace: NAMESPACE, name: b.outs.template }, "v1beta2")).toBeUndefined();
  expect(await api.getSecret({ namespace: NAMESPACE, name: b.outs.secretName })).toBeUndefined();
  await sim.stop();
  expect(sim.errors).toEqual([]);
});

test("a missing MachineDeployment: create fails clearly, delete has nothing to remove", async () => {
  await expect(call("create", inputs(bundleA, { name: "missing" }))).rejects.toThrow(/MachineDeployment default\/missing not found/);
  expect(await call("delete", "default/missing", inputs(bundleA, { name: "missing" }))).toBeNull();
});
