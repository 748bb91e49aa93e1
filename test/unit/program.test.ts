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

  // The committed stacks name registries and clusters that do not exist here: the rotation preflight may
  // only warn about them (test/unit/rotation-program.test.ts covers its refusals).
  // The mocked nodes run none of their checks (lab/tls-mocks.ts): these tests are about the program.
  const offline = (stack: string) => engineConfig({ ...stackValues(stack), preflightAllowUnreachable: true, allowUnverifiedNodes: true });

  // The committed stacks reach nodes through the SSH agent; under mocks only its presence matters.
  const agent = { SSH_AUTH_SOCK: "/run/user/0/ssh-agent.sock" };

  test("the dev stack: its PKI, one SSH command per node, the bundle exported", () => {
    const outcome = runProgram("index.ts", offline("dev"), [], agent);
    expect(outcome.errors).toEqual([]);
    expect(outcome.resources.map((r) => `${r.type} ${r.name}`).sort()).toEqual([
      "command:remote:Command nodes-dev-cp-0",
      "command:remote:Command nodes-dev-worker-0",
      "registry-trust:index:BootstrapTrust bootstrap",
      "registry-trust:index:NodeTrust nodes",
      "registry-trust:index:RegistryPki registry",
      "tls:index/certRequest:CertRequest registry-serving-csr",
      "tls:index/locallySignedCert:LocallySignedCert registry-serving",
      "tls:index/privateKey:PrivateKey registry-ca-g1-key",
      "tls:index/privateKey:PrivateKey registry-serving-key",
      "tls:index/selfSignedCert:SelfSignedCert registry-ca-g1",
    ]);
    expect(outcome.outputs).toEqual(expect.arrayContaining(["bundlePem", "bundleHash", "caCertificates", "servingCertificate", "nodes", "controlPlaneTrust", "workerTemplates", "cloudInitFragment"]));
    expect(outcome.outputs).not.toContain("servingKeyPem");
  });

  test("the prod stack: no key material, its nodes and its control plane", () => {
    const outcome = runProgram("index.ts", offline("prod"), [], agent);
    expect(outcome.errors).toEqual([]);
    expect(outcome.resources.filter((r) => r.type.startsWith("tls:"))).toEqual([]);
    expect(outcome.resources.map((r) => r.name)).toEqual(expect.arrayContaining([
      "nodes-prod-cp-0", "nodes-prod-cp-1", "nodes-prod-worker-0", "prod-mgmt-clusters-prod-workload-control-plane",
    ]));
  });

  test("the staging stack: its control plane and its MachineDeployment each get their trust resource", () => {
    const outcome = runProgram("index.ts", offline("staging"), [], agent);
    expect(outcome.errors).toEqual([]);
    expect(outcome.resources.filter((r) => r.type === "registry-trust:index:ControlPlaneTrust" || r.type === "registry-trust:index:WorkerTrust").map((r) => `${r.type} ${r.name}`)).toEqual([
      "registry-trust:index:ControlPlaneTrust stg-mgmt-clusters-stg-workload-control-plane",
      "registry-trust:index:WorkerTrust stg-mgmt-clusters-stg-workload-md-0",
    ]);
  });

  test("without SSH credentials the node configuration is refused, naming how to fix it", () => {
    const outcome = runProgram("index.ts", offline("dev"), [], { SSH_AUTH_SOCK: "" });
    expect(outcome.errors.join("\n")).toContain("no SSH credentials: set sshPrivateKey");
    expect(outcome.resources.filter((r) => r.type === "command:remote:Command")).toEqual([]);
  });
});
