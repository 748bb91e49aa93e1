import { runProgram } from "../support/run-program";
import { stackValues } from "../support/stack-files";

/** Stack config as the engine passes it: namespaced keys, scalars as text, structures as JSON. */
function engineConfig(values: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [`registry-trust:${k}`, typeof v === "object" ? JSON.stringify(v) : String(v)]));
}

describe("index.ts under mocks", () => {
  test("bad stack config is refused before any resource is registered, with every problem listed", () => {
    const outcome = runProgram("index.ts", engineConfig({ registries: [{ host: "registry.test", port: 0 }], caGeneration: -1, caMode: "generated" }));
    expect(outcome.resources).toEqual([]);
    expect(outcome.errors).toHaveLength(1);
    const [error] = outcome.errors;
    expect(error).toMatch(/^RunError: Invalid stack configuration \(3 problems\); nothing was changed:/);
    expect(error).toContain("registry-trust:registries[0].port = 0: must be an integer from 1 to 65535.");
    expect(error).toContain('registry-trust:caMode = "generated": must be one of generate, import. Did you mean "generate"?');
    expect(error).toContain("registry-trust:caGeneration = \"-1\": must be an integer from 1 to 10000.");
  });

  test("the dev stack registers its PKI and exports the bundle", () => {
    const outcome = runProgram("index.ts", engineConfig(stackValues("dev")));
    expect(outcome.errors).toEqual([]);
    expect(outcome.resources.map((r) => r.name).sort()).toEqual([
      "registry", "registry-ca-g1", "registry-ca-g1-key", "registry-serving", "registry-serving-csr", "registry-serving-key",
    ]);
    expect(outcome.outputs).toEqual(expect.arrayContaining(["bundlePem", "bundleHash", "caCertificates", "servingCertificate"]));
    expect(outcome.outputs).not.toContain("servingKeyPem");
  });

  test("the prod stack (imported bundle, external certificate) creates no key material", () => {
    const outcome = runProgram("index.ts", engineConfig(stackValues("prod")));
    expect(outcome.errors).toEqual([]);
    expect(outcome.resources.map((r) => r.type)).toEqual(["registry-trust:index:RegistryPki"]);
  });
});
