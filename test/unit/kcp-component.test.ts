// ControlPlaneTrust under Pulumi's mocks: the wiring (secret kubeconfig, inputs of the dynamic resource,
// refusals at program time). The provider itself runs against the real apiserver in
// test/k8s/control-plane-trust-provider.test.ts.
import * as pulumi from "@pulumi/pulumi";
import { TestPki } from "../../lab/openssl-pki";
import { runProgram } from "../support/run-program";

const registered: pulumi.runtime.MockResourceArgs[] = [];
pulumi.runtime.setMocks({
  newResource(args) {
    registered.push(args);
    return { id: `${args.name}-id`, state: { ...args.inputs, generation: 7, servedVersion: "v1beta2", ownedPaths: ["/p"], secretName: "cp-registry-trust-ca-0123456789ab" } };
  },
  call: () => ({}),
}, "registry-trust", "unit", false);

// Imported after setMocks so that the SDK is in mock mode when the component module loads.
import { ControlPlaneTrust, ControlPlaneTrustArgs } from "../../components/control-plane-trust";

const pki = new TestPki();
const bundlePem = pki.root("Component CA").certPem;
afterAll(() => pki.cleanup());

const value = <T>(o: pulumi.Output<T>) => new Promise<T>((resolve) => o.apply((v) => resolve(v)));

const base: ControlPlaneTrustArgs = {
  kubeconfig: "apiVersion: v1\nkind: Config\n",
  controlPlane: { namespace: "capi-system", name: "prod-cp" },
  endpoints: [{ host: "registry.test", port: 5000, mirrorOf: [] }],
  bundlePem,
};

test("registers one dynamic resource with the kubeconfig as a secret and the stack as lease holder", async () => {
  let props: Record<string, unknown> = {};
  const cpt = new ControlPlaneTrust("cp", base, { transformations: [(a) => {
    if (a.type.includes("dynamic")) props = a.props;
    return undefined;
  }] });
  expect(await value(cpt.generation)).toBe(7);
  expect(await value(cpt.secretName)).toBe("cp-registry-trust-ca-0123456789ab");
  expect(await pulumi.isSecret(props.kubeconfig as pulumi.Output<string>)).toBe(true);
  const res = registered.find((r) => r.name === "cp" && r.type.includes("dynamic"))!;
  expect(res.inputs).toMatchObject({ namespace: "capi-system", name: "prod-cp", holder: "registry-trust/unit", bundlePem });
  expect(res.inputs.bundleHash).toBe(await value(cpt.bundleHash));
  expect(res.inputs.__provider).toEqual(expect.any(String));
});

test("refuses, at program time, a bundle that fails validation", () => {
  // In a child process: the refusal also fails the resource's registration, which only the engine (here
  // the mock runner) may report.
  const outcome = runProgram("test/k8s/fixtures/invalid-bundle-program.ts", {});
  expect(outcome.errors).toEqual([expect.stringMatching(/^ResourceError: .*the trust bundle for KubeadmControlPlane capi-system\/prod-cp is refused, nothing was changed:\n.*CERT_UNPARSEABLE/s)]);
});

test("refuses no endpoints and invalid names with a ResourceError", () => {
  expect(() => new ControlPlaneTrust("none", { ...base, endpoints: [] })).toThrow(/no registry endpoints for control plane capi-system\/prod-cp/);
  expect(() => new ControlPlaneTrust("name", { ...base, controlPlane: { namespace: "ns", name: "Bad_Name" } })).toThrow(/not a valid namespace\/name/);
});
