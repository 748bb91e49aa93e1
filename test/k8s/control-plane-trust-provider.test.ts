// The ControlPlaneTrust dynamic provider as Pulumi runs it: serialized with pulumi.runtime.serializeFunction
// under ts-node (as `pulumi up` loads the program), loaded back with require-from-string in a plain node
// process (as Pulumi's dynamic-provider host does), and driven through diff/create/update/delete against
// the real Cluster API v1.14 controllers (lab/capi.ts), whose KubeadmControlPlane controller rolls every
// change out (one control-plane machine, to keep the real rollouts short) before the call returns.
import * as fs from "node:fs";
import type { ControlPlaneTrustInputs } from "../../components/control-plane-trust-provider";
import { FileEntry, OWNERSHIP_ANNOTATION, ownershipKey } from "../../core/kcp/plan";
import { bundleHash } from "../../core/x509/bundle";
import { TestPki } from "../../lab/openssl-pki";
import { ApiServer } from "../../lab/apiserver";
import { ManagementCluster, startManagementCluster } from "../../lab/capi";
import { caBundles } from "./kcp-support";
import { createManagedCluster, listMachines, managedClusterNames, NAMESPACE, realApi, waitForClusterRolledOut } from "../../lab/capi-objects";
import { SerializedProvider, loadSerializedProvider, serializeProvider } from "./serialized-provider";

jest.setTimeout(300_000);

const pki = new TestPki();
const [bundleA, bundleB] = caBundles(pki, 2);
let provider: SerializedProvider;

let mgmt: ManagementCluster;
let env: ApiServer;
const names = managedClusterNames("provider");

beforeAll(async () => {
  provider = await loadSerializedProvider("control-plane-trust");
  mgmt = await startManagementCluster();
  env = mgmt.api;
  await createManagedCluster(env, names, { controlPlaneReplicas: 1, workerReplicas: 0 });
  await waitForClusterRolledOut(env, names, 300_000);
}, 420_000);
afterAll(async () => {
  await mgmt?.stop();
  pki.cleanup();
  provider?.cleanup();
});

/** Calls one provider method in a fresh node process on the serialized text; returns its JSON result. */
const call: SerializedProvider["call"] = (method, ...args) => provider.call(method, ...args);

function inputs(bundlePem: string, extra: Partial<ControlPlaneTrustInputs> = {}): ControlPlaneTrustInputs {
  return {
    kubeconfig: fs.readFileSync(env.kubeconfigPath, "utf8"),
    namespace: NAMESPACE,
    name: names.controlPlane,
    endpoints: [{ host: "registry.test", port: 5000, mirrorOf: ["docker.io"] }],
    bundlePem,
    bundleHash: bundleHash(bundlePem),
    holder: "registry-trust/test",
    rolloutTimeoutSeconds: 240,
    ...extra,
  };
}

const caFile = async () => {
  const kcp = await realApi(env).getKcp({ namespace: NAMESPACE, name: names.controlPlane }, "v1beta2");
  return { kcp, files: kcp.spec!.kubeadmConfigSpec!.files as FileEntry[] };
};

test("the serialized provider captures client-node only as a require() inside its methods, and no x509 parser", async () => {
  const text = provider.text;
  expect(text).toContain('require("@kubernetes/client-node")');
  expect(text).not.toMatch(/asn1/i);
  // tsx compiles imports differently from ts-node; the provider must serialize there too.
  const stdout = await serializeProvider("control-plane-trust", "tsx");
  expect(stdout).toContain('require("@kubernetes/client-node")');
  expect(stdout).not.toMatch(/asn1/i);
});

test("create, diff, update and delete through the serialized provider against the real controllers", async () => {
  const others = JSON.stringify((await caFile()).files);
  const machines = async () => (await listMachines(env, names.cluster, { controlPlane: true })).map((m) => m.metadata.name);
  const before = await machines();

  const c = await call("create", inputs(bundleA));
  expect(c.id).toBe(`default/${names.controlPlane}`);
  expect(c.outs).toMatchObject({ servedVersion: "v1beta2", bundleHash: bundleHash(bundleA) });
  expect(c.outs.ownedPaths).toEqual([
    "/etc/containerd/certs.d/registry.test:5000/ca.crt",
    "/etc/containerd/certs.d/registry.test:5000/hosts.toml",
    "/etc/containerd/certs.d/docker.io/hosts.toml",
  ]);
  let now = await caFile();
  expect(now.files.find((f) => f.path.endsWith("ca.crt"))!.content).toBe(bundleA);
  // Owned by the stack (the holder input), in its own annotation.
  expect(JSON.parse(now.kcp.metadata.annotations![ownershipKey("registry-trust/test")])).toMatchObject({ owner: "registry-trust/test", bundleHash: bundleHash(bundleA) });
  expect(now.kcp.status!.observedGeneration).toBeGreaterThanOrEqual(c.outs.generation);
  expect(now.kcp.status).toMatchObject({ upToDateReplicas: 1, readyReplicas: 1, replicas: 1 });
  // Rolled out for real: the control plane's machine was replaced before create returned.
  const afterCreate = await machines();
  expect(afterCreate).toHaveLength(1);
  expect(afterCreate.filter((m) => before.includes(m))).toEqual([]);

  expect(await call("diff", c.id, c.outs, inputs(bundleA))).toMatchObject({ changes: false, replaces: [] });
  // A new kubeconfig (rotated credentials, here: given as a path) is no change.
  expect(await call("diff", c.id, c.outs, inputs(bundleA, { kubeconfig: env.kubeconfigPath }))).toMatchObject({ changes: false });
  expect(await call("diff", c.id, c.outs, inputs(bundleB))).toEqual({ changes: true, replaces: [], deleteBeforeReplace: true });
  expect(await call("diff", c.id, c.outs, inputs(bundleA, { name: "other" }))).toMatchObject({ changes: true, replaces: ["name"], deleteBeforeReplace: true });

  const u = await call("update", c.id, c.outs, inputs(bundleB, { kubeconfig: env.kubeconfigPath }));
  expect(u.outs.generation).toBeGreaterThan(c.outs.generation);
  now = await caFile();
  expect(now.files.find((f) => f.path.endsWith("ca.crt"))!.content).toBe(bundleB);
  expect(JSON.stringify(now.files.slice(0, 3))).toBe(others);

  expect(await call("delete", c.id, u.outs)).toBeNull();
  now = await caFile();
  expect(JSON.stringify(now.files)).toBe(others);
  expect(now.kcp.metadata.annotations?.[OWNERSHIP_ANNOTATION]).toBeUndefined();
  expect(now.kcp.metadata.annotations?.[ownershipKey("registry-trust/test")]).toBeUndefined();
});

test("a missing KCP: create fails clearly, delete has nothing to remove", async () => {
  await expect(call("create", inputs(bundleA, { name: "missing" }))).rejects.toThrow(/KubeadmControlPlane default\/missing not found/);
  expect(await call("delete", "default/missing", inputs(bundleA, { name: "missing" }))).toBeNull();
});
