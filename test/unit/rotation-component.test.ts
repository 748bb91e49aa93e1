// ServingCertificate under Pulumi's mocks: the resource graph only (what is registered, after what, with
// which inputs secret). The generated script runs over real SSH against the lab registry in
// test/lab/serving-host-files.test.ts; the Secret is applied to a real apiserver in test/k8s/rotation-preflight.test.ts.
import * as pulumi from "@pulumi/pulumi";
import { TestPki } from "../../lab/openssl-pki";
import { until } from "../support/until";

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const registered: pulumi.runtime.MockResourceArgs[] = [];
/** The gates the test had opened when each resource was registered: an ordering recorded by the mock, not guessed from time. */
const opened = new Set<string>();
const openAtRegistration = new Map<string, string[]>();
pulumi.runtime.setMocks({
  newResource(args) {
    registered.push(args);
    openAtRegistration.set(args.name, [...opened]);
    return { id: `${args.name}-id`, state: { ...args.inputs, stdout: "installed\n", metadata: { ...args.inputs.metadata, resourceVersion: "7" } } };
  },
  call: () => ({}),
}, "registry-trust", "unit", false);

// Imported after setMocks so that the SDK is in mock mode when the component module loads.
import { ServingCertificate, ServingCertificateArgs } from "../../components/serving-certificate";
import { RotationRecord } from "../../components/rotation-record";
import { RECORD_KEY, recordName } from "../../core/rotation/record";
import { BUNDLE_ANNOTATION, STACK_ANNOTATION } from "../../core/rotation/serving-secret";
import * as k8s from "@pulumi/kubernetes";

const pki = new TestPki();
afterAll(() => pki.cleanup());
const leaf = pki.leaf(pki.root("Component CA G1"));
const HASH = "ab".repeat(32);
/** Waits until the mock saw a resource named `name` registered, and returns it. */
const registration = (name: string) => until(`${name} registered`, 10_000, async () => registered.find((r) => r.name === name));
const isSecret = (v: unknown) => typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG] !== undefined;

/** A stand-in for NodeTrust etc.: a resource the switch must come after. */
class Upstream extends pulumi.ComponentResource {
  constructor(name: string) {
    super("test:index:Upstream", name);
    this.registerOutputs({});
  }
}

function capture(): { opts: Map<string, pulumi.ResourceOptions>; transformations: pulumi.ResourceTransformation[] } {
  const opts = new Map<string, pulumi.ResourceOptions>();
  return { opts, transformations: [(a) => { opts.set(a.name, a.opts); return undefined; }] };
}

const hostFiles = {
  kind: "hostFiles" as const, host: "127.0.0.1", port: 2222, user: "root", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP6YhulsXp+ZQy2wmwAx9K+AUBGApTTQtZN/5Ell43ah",
  certPath: "/etc/registry/tls.crt", keyPath: "/etc/registry/tls.key", reloadCommand: ["/usr/local/bin/reload-registry"], verifyTimeoutSeconds: 0,
};
const base = (over: Partial<ServingCertificateArgs>): ServingCertificateArgs => ({
  target: hostFiles, endpoints: [{ host: "registry.test", port: 5000 }], chainPem: leaf.certPem, keyPem: pulumi.secret(leaf.keyPem), bundleHash: HASH, ...over,
});

test("hostFiles: one Command, after trust, registered only once trust resolved; the key only in its secret stdin", async () => {
  const upstream = new Upstream("nodes");
  let release!: (v: string) => void;
  const distributed = pulumi.output(new Promise<string>((r) => (release = r)));
  const c = capture();
  new ServingCertificate("switch", base({ after: [upstream], distributed: [distributed] }), { transformations: c.transformations });
  // The gate opens only once the component itself is registered, which its children's registrations wait for:
  // a Command not gated on trust would have been on its way before this.
  await registration("switch");
  opened.add("switch trust");
  release("all nodes verified");
  const cmd = await registration("switch-files");
  expect(openAtRegistration.get("switch-files")).toContain("switch trust");
  expect(cmd.type).toBe("command:remote:Command");
  expect(c.opts.get("switch-files")?.dependsOn).toEqual([upstream]);
  expect(c.opts.get("switch-files")?.retainOnDelete).toBe(true);
  expect(isSecret(cmd.inputs.stdin)).toBe(true);
  expect(cmd.inputs.stdin[SECRET_SIG] && cmd.inputs.stdin.value).toContain(Buffer.from(leaf.keyPem).toString("base64"));
  const keyBody = leaf.keyPem.split("\n")[1];
  expect(JSON.stringify({ ...cmd.inputs, stdin: undefined })).not.toContain(keyBody);
  expect(cmd.inputs.create).toMatch(/^sh -s # registry-trust serving certificate sha256:[0-9a-f]{64}$/);
  // @pulumi/command keeps the whole connection secret (it may hold the SSH key).
  expect(cmd.inputs.connection.value).toMatchObject({ host: "127.0.0.1", port: 2222, user: "root", hostKey: hostFiles.hostKey });
  expect(cmd.inputs.addPreviousOutputInEnv).toBe(false);
});

test("kubernetesSecret: a kubernetes.io/tls Secret with secret data and the rotation record, after trust", async () => {
  const upstream = new Upstream("kcp");
  const c = capture();
  const sc = new ServingCertificate("tls", base({
    target: { kind: "kubernetesSecret", cluster: "mgmt", namespace: "registry", name: "registry-tls", verifyTimeoutSeconds: 0 }, after: [upstream],
  }), { transformations: c.transformations });
  const secret = await registration("tls-secret");
  expect(secret.type).toBe("kubernetes:core/v1:Secret");
  expect(secret.inputs.type).toBe("kubernetes.io/tls");
  expect(secret.inputs.metadata).toMatchObject({
    name: "registry-tls", namespace: "registry",
    annotations: { [BUNDLE_ANNOTATION]: HASH, [STACK_ANNOTATION]: "registry-trust/unit", "pulumi.com/patchForce": "true" },
  });
  expect(isSecret(secret.inputs.stringData)).toBe(true);
  expect(secret.inputs.stringData.value).toEqual({ "tls.crt": leaf.certPem, "tls.key": leaf.keyPem });
  expect(c.opts.get("tls-secret")?.dependsOn).toEqual([upstream]);
  expect(await new Promise((r) => sc.servedFingerprint.apply(r))).toMatch(/^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/);
});

test("a reload command with shell syntax is refused before anything is registered", async () => {
  const c = capture();
  expect(() => new ServingCertificate("bad", base({ target: { ...hostFiles, reloadCommand: ["kill", "$(pidof registry)"] } }), { transformations: c.transformations }))
    .toThrow('reload command words with shell syntax: "$(pidof registry)"');
  // Transformations run synchronously in every resource's constructor, the component's own included:
  // none ran, so no resource was constructed and none can be registered later.
  expect([...c.opts.keys()]).toEqual([]);
});

test("the rotation record: a ConfigMap per namespace, written only once the rotation completed, after the switch", async () => {
  const sw = new Upstream("switch-done");
  const provider = new k8s.Provider("mgmt-k8s", { kubeconfig: "/nonexistent" });
  let complete!: (v: string) => void;
  const completed = pulumi.output(new Promise<string>((r) => (complete = r)));
  const c = capture();
  new RotationRecord("rotation", { clusters: [{ name: "mgmt", namespaces: ["clusters", "workers"], provider }], bundleHash: HASH, completed: [completed], after: [sw] }, { transformations: c.transformations });
  await registration("rotation");
  opened.add("rotation completed");
  complete("served");
  await registration("rotation-mgmt-workers");
  await registration("rotation-mgmt-clusters");
  const maps = registered.filter((r) => r.type === "kubernetes:core/v1:ConfigMap");
  for (const m of maps) expect(openAtRegistration.get(m.name)).toContain("rotation completed");
  expect(maps.map((m) => [m.name, m.inputs.metadata.namespace, m.inputs.metadata.name, m.inputs.data[RECORD_KEY]])).toEqual([
    ["rotation-mgmt-clusters", "clusters", recordName("registry-trust/unit"), HASH],
    ["rotation-mgmt-workers", "workers", recordName("registry-trust/unit"), HASH],
  ]);
  expect(c.opts.get("rotation-mgmt-clusters")?.dependsOn).toEqual([sw]);
});
