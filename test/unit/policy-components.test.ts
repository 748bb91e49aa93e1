import * as pulumi from "@pulumi/pulumi";
import { GeneratedCaConfig, NodeConfig, RegistryEndpoint, ServingConfig } from "../../core/config/model";
import { retentionFindings } from "../../core/policy/ca-retention";
import { insecureSettings } from "../../core/policy/insecure-settings";
import { certificateKeyProblems, privateKeyProblem } from "../../core/policy/key-strength";
import { REMOTE_COMMAND, ResourceView, TLS_PRIVATE_KEY, insideOurComponent } from "../../core/policy/resources";
import { isServingCertificateSource, servingSanProblem } from "../../core/policy/serving-sans";
import { hostKeyProblems } from "../../core/policy/ssh-host-keys";
import { stackFacts } from "../../core/policy/stack-facts";
import { CERTIFICATE_TYPES, DEFAULT_VALIDITY_LIMITS, validityProblem } from "../../core/policy/validity";
import { TlsMocks, unwrapSecrets, valueOf } from "../../lab/tls-mocks";

/*
 * The rules run on the inputs the real components register (RegistryPki, NodeTrust), captured through
 * Pulumi mocks with real keys and certificates, under the URNs the engine gives them.
 */

const mocks = new TlsMocks();
pulumi.runtime.setMocks(mocks, "registry-trust", "unit", false);
afterAll(() => mocks.pki.cleanup());

// Imported after setMocks so that the SDK is in mock mode when the component modules load.
import { NodeTrust } from "../../components/node-trust";
import { RegistryPki } from "../../components/registry-pki";

const registries: RegistryEndpoint[] = [{ host: "registry.test", port: 5000, mirrorOf: [] }, { host: "10.0.0.5", port: 443, mirrorOf: [] }];
const serving: ServingConfig = { mode: "generate", keyAlgorithm: "ECDSA-P256", validityDays: 90, renewBeforeDays: 30, hasKey: false };
const ca = (generation: number, retainGenerations: number): GeneratedCaConfig => ({
  mode: "generate", generation, retainGenerations, keyAlgorithm: "ECDSA-P384", validityDays: 1825, commonName: "Policy CA",
});
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Rob3N0a2V5dGVzdGhvc3RrZXl0ZXN0aG9zdGs";
const node = (name: string, host: string, extra: Partial<NodeConfig> = {}): NodeConfig => ({
  name, host, port: 22, user: "root", os: "debian", runtimes: ["containerd"], ...extra,
});

/** Every custom resource a component registers, as the policies see it. */
async function stack(build: (capture: pulumi.ResourceTransformation) => pulumi.Resource[]): Promise<ResourceView[]> {
  const seen: { resource: pulumi.Resource; type: string; name: string }[] = [];
  const roots = build((a) => {
    if (a.resource instanceof pulumi.CustomResource) seen.push({ resource: a.resource, type: a.type, name: a.name });
    return undefined;
  });
  for (const r of roots) await valueOf((r as RegistryPki).urn);
  const views: ResourceView[] = [];
  for (const s of seen) {
    const urn = await valueOf(s.resource.urn);
    const registered = mocks.resources.find((m) => m.type === s.type && m.name === s.name);
    if (registered) views.push({ type: s.type, name: s.name, urn, props: unwrapSecrets(registered.inputs) });
  }
  return views;
}

describe("RegistryPki as registered passes every rule; a retention of 0 is caught at the first rotation", () => {
  let views: ResourceView[];
  beforeAll(async () => {
    views = await stack((capture) => {
      const pki = new RegistryPki("ok", { endpoints: registries, ca: ca(3, 1), serving }, { transformations: [capture] });
      return [pki];
    });
  });

  test("keys, certificate keys, validity and SANs", () => {
    expect(views.map((v) => v.type).sort()).toEqual([
      "tls:index/certRequest:CertRequest", "tls:index/locallySignedCert:LocallySignedCert",
      "tls:index/privateKey:PrivateKey", "tls:index/privateKey:PrivateKey", "tls:index/privateKey:PrivateKey",
      "tls:index/selfSignedCert:SelfSignedCert", "tls:index/selfSignedCert:SelfSignedCert",
    ]);
    const facts = stackFacts({ "registry-trust:registries": JSON.stringify(registries) });
    for (const v of views) {
      expect(insideOurComponent(v.urn)).toBe(true);
      if (v.type === TLS_PRIVATE_KEY) expect(privateKeyProblem(v.props)).toBeUndefined();
      expect(certificateKeyProblems(v.type, v.props)).toEqual([]);
      if (CERTIFICATE_TYPES.includes(v.type)) expect(validityProblem(v.props, DEFAULT_VALIDITY_LIMITS)).toBeUndefined();
      expect(insecureSettings(v.props)).toEqual([]);
    }
    const sources = views.filter((v) => isServingCertificateSource(v.type, v.urn, v.props));
    expect(sources.map((v) => v.name)).toEqual(["ok-serving-csr"]);
    expect(servingSanProblem(facts, sources[0].props)).toBeUndefined();
    expect(retentionFindings({ ...facts, caRetainGenerations: 1 }, views)).toEqual([]);
  });

  test("an endpoint in the stack config that RegistryPki was not given is a SAN violation on its CertRequest", () => {
    const csr = views.find((v) => v.name === "ok-serving-csr")!;
    const facts = stackFacts({ "registry-trust:registries": JSON.stringify([...registries, { host: "mirror.test", port: 5001 }]) });
    expect(servingSanProblem(facts, csr.props)).toMatch(/does not cover mirror\.test:5001 .*\(its SANs: DNS:registry\.test, IP:10\.0\.0\.5\)/);
  });

  test("generation 2 with retainGenerations 0: the bundle lacks generation 1, named on the new CA", async () => {
    const rotated = await stack((capture) => [new RegistryPki("noretain", { endpoints: registries, ca: ca(2, 0), serving }, { transformations: [capture] })]);
    const findings = retentionFindings(stackFacts({ "registry-trust:caRetainGenerations": "0" }), rotated);
    expect(findings).toEqual([
      { message: expect.stringMatching(/^registry-trust:caRetainGenerations is 0: a rotation would drop/) },
      { urn: rotated.find((v) => v.name === "noretain-ca-g2")!.urn, message: expect.stringMatching(/RegistryPki "noretain" puts CA generation 2 in the bundle without generation 1/) },
    ]);
  });
});

describe("NodeTrust's remote.Command connections", () => {
  test("a pinned node passes; an unpinned node and an unpinned bastion hop are named", async () => {
    const views = await stack((capture) => {
      const pki = new RegistryPki("pki", { endpoints: registries, ca: ca(1, 1), serving });
      const nodes = [
        node("pinned", "127.0.0.11", { hostKey: HOST_KEY }),
        node("open", "127.0.0.12", { user: "deploy" }),
        node("bastion", "127.0.0.13", { hostKey: HOST_KEY, proxy: { host: "bastion.test", port: 2200, user: "jump" } }),
      ];
      const trust = new NodeTrust("nodes", {
        nodes, registries, bundlePem: pki.bundlePem, bundleHash: pki.bundleHash, servingChainPem: pki.servingChainPem,
        sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nunit\n-----END OPENSSH PRIVATE KEY-----\n",
        // A lab's opt-out: the unpinned hops reach the Commands, where the policy must name them.
        requireHostKeys: false,
        // The mocked nodes run none of their checks (lab/tls-mocks.ts): this test is about the connections.
        allowUnverified: true,
      }, { transformations: [capture] });
      return [pki, trust];
    });
    const commands = views.filter((v) => v.type === REMOTE_COMMAND);
    expect(commands.map((c) => c.name).sort()).toEqual(["nodes-bastion", "nodes-open", "nodes-pinned"]);
    const problems = Object.fromEntries(commands.map((c) => [c.name, hostKeyProblems(c.props)]));
    expect(problems).toEqual({
      "nodes-pinned": [],
      "nodes-open": ["connection deploy@127.0.0.12: hostKey is not set, so any host key is accepted; pin it with the output of `ssh-keyscan -t ed25519 127.0.0.12 | cut -d' ' -f2-` (registry-trust: nodes[].hostKey)"],
      "nodes-bastion": ["connection.proxy jump@bastion.test: hostKey is not set, so any host key is accepted; pin it with the output of `ssh-keyscan -t ed25519 bastion.test | cut -d' ' -f2-` (registry-trust: nodes[].proxy.hostKey)"],
    });
    for (const c of commands) expect(insecureSettings(c.props)).toEqual([]);
  });
});
