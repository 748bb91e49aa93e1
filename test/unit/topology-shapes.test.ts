// core/topology/shapes.ts: what goes into the variable for each shape, with others' entries kept, on real
// certificates. Expected values are written from the shapes' contracts (TKG Service trust, CAREN
// imageRegistries), not computed by the code under test.
import { createHash } from "node:crypto";
import { bundleSecretName, planVariable, splitPems, validateVariableSpec, withoutOurs } from "../../core/topology/shapes";
import { TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
const a = pki.root("Shapes CA A").certPem;
const b = pki.root("Shapes CA B").certPem;
const endpoints = [{ host: "registry.test", port: 5000, mirrorOf: [] as string[] }];
const sha = (s: string) => createHash("sha256").update(s).digest("hex");
afterAll(() => pki.cleanup());

test("bad configuration is refused naming the field, the value and the fix", () => {
  expect(() => validateVariableSpec({ variable: "", shape: "files", endpoints })).toThrow(/^variable: "" is not a ClusterClass variable name.*set it to the name/);
  expect(() => validateVariableSpec({ variable: "trust", shape: "tkg", endpoints })).toThrow(/^shape: "tkg" is not one of files, pems, tkg-trust, caren-registries/);
  expect(() => validateVariableSpec({ variable: "trust", shape: "files", endpoints: [] })).toThrow(/^endpoints: at least one/);
});

test("files: others' entries kept in place, ours (CA from a Secret named by the bundle's hash, hosts.toml) appended; a rotation replaces only ours", () => {
  const other = { path: "/etc/other/x", content: "x" };
  const p1 = planVariable("c1", [other], { variable: "v", shape: "files", endpoints, bundlePem: a }, undefined);
  const secret = `c1-registry-trust-${sha(a).slice(0, 12)}`;
  expect(p1.secret).toEqual({ name: secret, key: "ca.crt", data: a, shared: false });
  const value = p1.value as Array<Record<string, unknown>>;
  expect(value[0]).toBe(other);
  expect(value[1]).toEqual({ path: "/etc/containerd/certs.d/registry.test:5000/ca.crt", owner: "root:root", permissions: "0644", contentFrom: { secret: { name: secret, key: "ca.crt" } } });
  expect(value[2].path).toBe("/etc/containerd/certs.d/registry.test:5000/hosts.toml");
  const p2 = planVariable("c1", p1.value, { variable: "v", shape: "files", endpoints, bundlePem: b }, p1.ownership);
  expect((p2.value as Array<{ path: string }>).map((f) => f.path)).toEqual(value.map((f) => f.path));
  expect(p2.ownership.secret).toBe(bundleSecretName("c1", sha(b)));
  expect(withoutOurs(p2.value, p2.ownership, [value[1].path as string, value[2].path as string])).toEqual([other]);
});

test("pems: one entry per certificate; a rotation removes the previous bundle's, not a foreign PEM", () => {
  const foreign = pki.root("Foreign CA").certPem;
  const p1 = planVariable("c1", [foreign], { variable: "v", shape: "pems", endpoints, bundlePem: a + b }, undefined);
  expect(p1.value).toEqual([foreign, a, b]);
  expect(splitPems(a + b)).toEqual([a, b]);
  const p2 = planVariable("c1", p1.value, { variable: "v", shape: "pems", endpoints, bundlePem: b }, p1.ownership);
  expect(p2.value).toEqual([foreign, b]);
});

test("tkg-trust: a key of <cluster>-user-trusted-ca-secret holding the PEM base64-encoded (base64 again on the wire), named in additionalTrustedCAs next to others'", () => {
  const p = planVariable("c1", { additionalTrustedCAs: [{ name: "corp-ca" }] }, { variable: "trust", shape: "tkg-trust", endpoints, bundlePem: a }, undefined);
  const key = `registry-trust-${sha(a).slice(0, 12)}`;
  expect(p.value).toEqual({ additionalTrustedCAs: [{ name: "corp-ca" }, { name: key }] });
  expect(p.secret).toMatchObject({ name: "c1-user-trusted-ca-secret", key, shared: true });
  expect(Buffer.from(p.secret!.data, "base64").toString()).toBe(a);
  expect(() => planVariable("c1", ["x"], { variable: "trust", shape: "tkg-trust", endpoints, bundlePem: a }, undefined)).toThrow(/not an object, so it is not of shape tkg-trust/);
});

test("caren-registries: our endpoint's entry points at our Secret; another registry's entry kept; an entry for our URL made by someone else is refused", () => {
  const mirror = { url: "https://mirror.corp", credentials: { secretRef: { name: "mirror-creds" } } };
  const p = planVariable("c1", [mirror], { variable: "imageRegistries", shape: "caren-registries", endpoints, bundlePem: a }, undefined);
  expect(p.value).toEqual([mirror, { url: "https://registry.test:5000", credentials: { secretRef: { name: bundleSecretName("c1", sha(a)) } } }]);
  const theirs = [{ url: "https://registry.test:5000", credentials: { secretRef: { name: "hand-made" } } }];
  expect(() => planVariable("c1", theirs, { variable: "imageRegistries", shape: "caren-registries", endpoints, bundlePem: a }, undefined)).toThrow(/Secret hand-made, which registry-trust did not write/);
});
