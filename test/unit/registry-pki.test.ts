import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { GeneratedCaConfig, ServingConfig } from "../../core/config/model";
import { parsePemCertificates } from "../../core/x509/pem";
import { verifyServing } from "../../core/x509/verify";
import { runProgram } from "../support/run-program";
import { TlsMocks, valueOf } from "../../lab/tls-mocks";

const mocks = new TlsMocks();
pulumi.runtime.setMocks(mocks, "registry-trust", "unit", false);
afterAll(() => mocks.pki.cleanup());

// Imported after setMocks so that the SDK is in mock mode when the component module loads.
import { RegistryPki, RegistryPkiArgs } from "../../components/registry-pki";

const endpoints = [{ host: "registry.test", port: 5000 }, { host: "127.0.0.1", port: 5000 }];
const serving: ServingConfig = { mode: "generate", keyAlgorithm: "ECDSA-P256", validityDays: 90, renewBeforeDays: 30, hasKey: false };
const ca = (generation: number, retainGenerations = 1): GeneratedCaConfig => ({
  mode: "generate", generation, retainGenerations, keyAlgorithm: "ECDSA-P384", validityDays: 1825, commonName: "Unit CA",
});

interface Child { type: string; name: string; parent?: pulumi.Resource }
function build(name: string, args: RegistryPkiArgs) {
  const children: Child[] = [];
  const pki = new RegistryPki(name, args, {
    transformations: [(a) => {
      if (a.resource instanceof RegistryPki) return undefined;
      children.push({ type: a.type, name: a.name, parent: a.opts.parent });
      return undefined;
    }],
  });
  return { pki, children };
}

describe("RegistryPki, generated mode", () => {
  const { pki, children } = build("gen", { endpoints, ca: ca(3), serving });

  test("one CA per retained generation, named by generation, plus the serving certificate, all parented to the component", async () => {
    await valueOf(pki.bundlePem);
    expect(children.map((c) => `${c.type} ${c.name}`).sort()).toEqual([
      "tls:index/certRequest:CertRequest gen-serving-csr",
      "tls:index/locallySignedCert:LocallySignedCert gen-serving",
      "tls:index/privateKey:PrivateKey gen-ca-g2-key",
      "tls:index/privateKey:PrivateKey gen-ca-g3-key",
      "tls:index/privateKey:PrivateKey gen-serving-key",
      "tls:index/selfSignedCert:SelfSignedCert gen-ca-g2",
      "tls:index/selfSignedCert:SelfSignedCert gen-ca-g3",
    ]);
    for (const c of children) expect(c.parent).toBe(pki);
    expect(pki.generations).toEqual([3, 2]);
  });

  test("keys use explicit curves, never the provider's P-224 default", () => {
    const keys = mocks.ofType("tls:index/privateKey:PrivateKey").filter((r) => r.name.startsWith("gen-"));
    expect(keys.map((k) => [k.name, k.inputs.algorithm, k.inputs.ecdsaCurve]).sort()).toEqual([
      ["gen-ca-g2-key", "ECDSA", "P384"], ["gen-ca-g3-key", "ECDSA", "P384"], ["gen-serving-key", "ECDSA", "P256"],
    ]);
  });

  test("the serving certificate is issued by the newest generation with SANs for every endpoint and the configured lifetime", async () => {
    const [leaf] = parsePemCertificates((await valueOf(pki.servingCertPem))!, "leaf").certs;
    expect(leaf.issuer).toBe("CN=Unit CA G3");
    expect(leaf.dnsNames).toEqual(["registry.test"]);
    expect(leaf.ipAddresses).toEqual(["127.0.0.1"]);
    const lsc = mocks.ofType("tls:index/locallySignedCert:LocallySignedCert").find((r) => r.name === "gen-serving")!;
    expect(lsc.inputs).toMatchObject({ validityPeriodHours: 90 * 24, earlyRenewalHours: 30 * 24 });
    expect(lsc.inputs.allowedUses).toContain("server_auth");
  });

  test("the bundle is newest generation first, verifies the serving certificate, and its hash is sha256 of the PEM", async () => {
    const bundle = await valueOf(pki.bundlePem);
    const certs = parsePemCertificates(bundle, "bundle").certs;
    expect(certs.map((c) => c.subject)).toEqual(["CN=Unit CA G3", "CN=Unit CA G2"]);
    expect(await valueOf(pki.bundleHash)).toBe(createHash("sha256").update(bundle).digest("hex"));
    const chain = parsePemCertificates((await valueOf(pki.servingChainPem))!, "chain").certs;
    for (const e of endpoints) expect(verifyServing({ bundle: certs, chain, host: e.host }).ok).toBe(true);
    const summaries = await valueOf(pki.caCertificates);
    expect(summaries.map((s) => s.subject)).toEqual(["CN=Unit CA G3", "CN=Unit CA G2"]);
    expect(summaries[0].sha256).toBe(certs[0].fingerprint256);
  });

  test("the serving key is a secret", async () => {
    expect(await pulumi.isSecret(pki.servingKeyPem)).toBe(true);
    expect(await valueOf(pki.servingKeyPem)).toContain("PRIVATE KEY");
  });
});

describe("rotation naming", () => {
  // Awaiting the bundle lets every child finish registering before the next case (and the PKI cleanup).
  async function names(generation: number, retain: number): Promise<string[]> {
    const { pki, children } = build(`rot${generation}r${retain}`, { endpoints, ca: ca(generation, retain), serving });
    await valueOf(pki.bundlePem);
    return children.filter((c) => c.type === "tls:index/selfSignedCert:SelfSignedCert").map((c) => c.name.replace(/^rot\d+r\d+-/, ""));
  }
  test("raising the generation adds a CA and keeps the retained one under the same name", async () => {
    expect(await names(2, 1)).toEqual(["ca-g2", "ca-g1"]);
    expect(await names(3, 1)).toEqual(["ca-g3", "ca-g2"]);
  });
  test("retention 0 keeps only the current CA; retention never reaches below generation 1", async () => {
    expect(await names(4, 0)).toEqual(["ca-g4"]);
    expect(await names(2, 5)).toEqual(["ca-g2", "ca-g1"]);
  });
});

describe("RegistryPki, imported mode", () => {
  const dir = join(__dirname, "..", "..", "stacks", "certs");
  const bundlePem = readFileSync(join(dir, "prod-enterprise-ca.pem"), "utf8");
  const chainPem = readFileSync(join(dir, "prod-registry-chain.pem"), "utf8");
  const external: ServingConfig = { ...serving, mode: "external", chainPem, hasKey: false };
  const prodEndpoints = [{ host: "registry.prod.example.internal", port: 443 }];

  test("distributes the imported bundle deduplicated, creates no key material", async () => {
    const { pki, children } = build("imp", { endpoints: prodEndpoints, ca: { mode: "import", bundlePem: bundlePem + bundlePem, source: "x" }, serving: external });
    const out = parsePemCertificates(await valueOf(pki.bundlePem), "b").certs;
    expect(out.map((c) => c.subject)).toEqual(["O=Example Corp, CN=Example Corp Root CA R2", "O=Example Corp, CN=Example Corp Root CA R1"]);
    expect(children).toEqual([]);
    expect(pki.generations).toEqual([]);
    expect((await valueOf(pki.servingCertificate))?.subject).toBe("O=Example Corp, CN=registry.prod.example.internal");
  });

  test("a bundle that does not verify the served chain fails the program with a ResourceError naming the problem", () => {
    const outcome = runProgram("test/fixtures/unverified-bundle-program.ts", {});
    expect(outcome.errors.join("\n")).toMatch(/The trust bundle does not verify the serving certificate; nothing was distributed:\n  registry\.prod\.example\.internal: ERROR UNKNOWN_AUTHORITY .*Example Corp Root CA R2/m);
  });
});
