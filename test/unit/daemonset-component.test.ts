// BootstrapTrust under Pulumi's mocks: the cloud-init output, the ConfigMap and DaemonSet it registers
// through @pulumi/kubernetes, and the image refusal before anything is registered. The manifests
// themselves are checked in daemonset.test.ts, on the real apiserver and on a lab node.
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { TestPki } from "../../lab/openssl-pki";
import { until } from "../support/until";

const registered: pulumi.runtime.MockResourceArgs[] = [];
pulumi.runtime.setMocks({
  newResource(args) {
    registered.push(args);
    return { id: `${args.name}-id`, state: args.inputs };
  },
  call: () => ({}),
}, "registry-trust", "unit", false);

// Imported after setMocks so that the SDK is in mock mode when the component module loads.
import { BootstrapTrust, BootstrapTrustArgs } from "../../components/bootstrap-trust";

const pki = new TestPki();
afterAll(() => pki.cleanup());
const value = <T>(o: pulumi.Output<T>) => new Promise<T>((resolve) => o.apply((v) => resolve(v)));
const base: BootstrapTrustArgs = { registries: [{ host: "registry.test", port: 5000, mirrorOf: [] }], runtimes: ["containerd"], bundlePem: pki.root("BT Root").certPem };

test("exposes the cloud-init fragment and applies the ConfigMap and DaemonSet", async () => {
  const constructed: string[] = [];
  const bt = new BootstrapTrust("boot", { ...base, daemonSet: { image: "docker.io/library/busybox:1.36" } }, { transformations: [(a) => void constructed.push(a.name)] });
  const text = await value(bt.cloudInit);
  expect(text.startsWith("#cloud-config\n")).toBe(true);
  expect((parse(text) as { runcmd: string[][] }).runcmd).toEqual([["sh", "/run/registry-trust/install-default.sh"]]);
  const manifests = await value(bt.daemonSetManifests!);
  const cm = await until("the ConfigMap's registration", 10_000, async () => registered.find((r) => r.type === "kubernetes:core/v1:ConfigMap"));
  const ds = await until("the DaemonSet's registration", 10_000, async () => registered.find((r) => r.type === "kubernetes:apps/v1:DaemonSet"));
  expect(cm?.inputs).toMatchObject({ metadata: { name: "registry-trust", namespace: "kube-system" }, data: (manifests.configMap as { data: object }).data });
  expect(ds?.inputs.spec.template.spec.tolerations).toEqual([{ operator: "Exists" }]);
  // What the refusal test below relies on: the component itself and each child pass through transformations.
  expect(constructed).toEqual(expect.arrayContaining(["boot", cm!.name, ds!.name]));
});

test("without daemonSet only the fragment exists", async () => {
  const before = registered.length;
  const bt = new BootstrapTrust("only", base);
  await value(bt.cloudInit);
  expect(bt.daemonSetManifests).toBeUndefined();
  expect(registered.slice(before).filter((r) => r.type.startsWith("kubernetes:"))).toEqual([]);
});

test("a DaemonSet image on the registry being trusted is refused before anything is registered", async () => {
  // Transformations run synchronously in each resource's constructor (the component's own and its
  // children's), while registration is asynchronous: recording them shows at once that nothing was created.
  const constructed: string[] = [];
  const record: pulumi.ResourceTransformation = (a) => {
    constructed.push(a.name);
    return undefined;
  };
  expect(() => new BootstrapTrust("bad", { ...base, daemonSet: { image: "registry.test:5000/tools/busybox:1.36" } }, { transformations: [record] })).toThrow(/image "registry.test:5000\/tools\/busybox:1.36" is on registry.test:5000, a registry this DaemonSet makes trusted/);
  expect(constructed).toEqual([]);
});
