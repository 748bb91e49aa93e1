import { retentionFindings } from "../../core/policy/ca-retention";
import { UNKNOWN, insideOurComponent, parentType } from "../../core/policy/resources";
import { covers, isServingCertificateSource, servingSanProblem } from "../../core/policy/serving-sans";
import { hostKeyProblems } from "../../core/policy/ssh-host-keys";
import { stackFacts } from "../../core/policy/stack-facts";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Rob3N0a2V5dGVzdGhvc3RrZXl0ZXN0aG9zdGs";
const urn = (chain: string, name: string) => `urn:pulumi:prod::registry-trust::${chain}::${name}`;

describe("URNs", () => {
  test("parent type and whether a resource sits inside one of our components", () => {
    const csr = urn("registry-trust:index:RegistryPki$tls:index/certRequest:CertRequest", "r-serving-csr");
    expect(parentType(csr)).toBe("registry-trust:index:RegistryPki");
    expect(insideOurComponent(csr)).toBe(true);
    expect(insideOurComponent(urn("my:index:App$command:remote:Command", "x"))).toBe(false);
    expect(insideOurComponent(urn("registry-trust:index:NodeTrust", "nodes"))).toBe(false);
    expect(parentType(urn("tls:index/privateKey:PrivateKey", "k"))).toBeUndefined();
  });
});

describe("SSH host keys on a remote.Command connection", () => {
  test.each([
    [{ connection: { host: "n1", user: "root", hostKey: KEY } }],
    [{ connection: { host: "n1", hostKey: KEY, proxy: { host: "b", hostKey: "ecdsa-sha2-nistp256 AAAAE2VjZHNh" } } }],
    [{ connection: UNKNOWN }],
    [{ connection: { host: "n1", hostKey: UNKNOWN } }],
  ])("%j passes", (props) => {
    expect(hostKeyProblems(props)).toEqual([]);
  });

  test.each([
    [{ connection: { host: "n1", user: "root" } }, [expect.stringMatching(/^connection root@n1: hostKey is not set, so any host key is accepted; pin it .*ssh-keyscan -t ed25519 n1 .*\(registry-trust: nodes\[\]\.hostKey\)$/)]],
    [{ connection: { host: "n1", hostKey: "  " } }, [expect.stringMatching(/^connection n1: hostKey is not set/)]],
    [{ connection: { host: "n1", hostKey: "n1 ssh-ed25519 AAAA" } }, [expect.stringMatching(/is not a public host key line/)]],
    [{ connection: { host: "n1", hostKey: KEY, proxy: { host: "b", user: "j", proxy: { host: "c" } } } }, [
      expect.stringMatching(/^connection\.proxy j@b: hostKey is not set.*\(registry-trust: nodes\[\]\.proxy\.hostKey\)$/),
      expect.stringMatching(/^connection\.proxy\.proxy c: hostKey is not set.*\(registry-trust: nodes\[\]\.proxy\.proxy\.hostKey\)$/),
    ]],
    [{ connection: { host: "n1", hostKey: "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC" } }, [expect.stringMatching(/^connection n1: hostKey is an RSA host key: .*"ssh-rsa" \(SHA-1\).*OpenSSH 8\.8.*ssh-keyscan -t ed25519 n1/)]],
    [{}, ["connection is missing"]],
  ])("%j fails", (props, problems) => {
    expect(hostKeyProblems(props)).toEqual(problems);
  });
});

describe("serving certificate SANs", () => {
  test("coverage: exact and trailing-dot DNS, one-label wildcards, IPv4 and IPv6 in any spelling", () => {
    const sans = { dnsNames: ["Registry.Test.", "*.mirrors.test"], ipAddresses: ["10.0.0.5", "fd00:0:0::1"] };
    expect(covers(sans, "registry.test")).toBe(true);
    expect(covers(sans, "a.mirrors.test")).toBe(true);
    expect(covers(sans, "a.b.mirrors.test")).toBe(false);
    expect(covers(sans, "mirrors.test")).toBe(false);
    expect(covers(sans, "10.0.0.5")).toBe(true);
    expect(covers(sans, "fd00::1")).toBe(true);
    expect(covers(sans, "10.0.0.6")).toBe(false);
    expect(covers({ dnsNames: ["10.0.0.7"], ipAddresses: [] }, "10.0.0.7")).toBe(false);
  });

  test("only RegistryPki's CertRequest and non-CA SelfSignedCert are checked", () => {
    const under = (t: string) => urn(`registry-trust:index:RegistryPki$${t}`, "x");
    expect(isServingCertificateSource("tls:index/certRequest:CertRequest", under("tls:index/certRequest:CertRequest"), {})).toBe(true);
    expect(isServingCertificateSource("tls:index/selfSignedCert:SelfSignedCert", under("tls:index/selfSignedCert:SelfSignedCert"), { isCaCertificate: false })).toBe(true);
    expect(isServingCertificateSource("tls:index/selfSignedCert:SelfSignedCert", under("tls:index/selfSignedCert:SelfSignedCert"), { isCaCertificate: true })).toBe(false);
    expect(isServingCertificateSource("tls:index/certRequest:CertRequest", urn("tls:index/certRequest:CertRequest", "x"), {})).toBe(false);
  });

  test("problems: a missing endpoint, endpoints unknown, and nothing while the SANs are unknown", () => {
    const facts = stackFacts({ "registry-trust:registries": '[{"host":"registry.test","port":5000},{"host":"10.0.0.9"}]' });
    expect(servingSanProblem(facts, { dnsNames: ["registry.test"], ipAddresses: ["10.0.0.9"] })).toBeUndefined();
    expect(servingSanProblem(facts, { dnsNames: ["registry.test"] })).toMatch(/does not cover 10\.0\.0\.9 from registry-trust:registries \(its SANs: DNS:registry\.test\)/);
    expect(servingSanProblem(stackFacts(undefined), { dnsNames: ["registry.test"] })).toMatch(/cannot check the SANs .* did not pass this stack's configuration/);
    expect(servingSanProblem(facts, { dnsNames: UNKNOWN, ipAddresses: [] })).toBeUndefined();
  });
});

describe("CA overlap retention", () => {
  const ca = (pki: string, g: number, isCaCertificate: boolean | typeof UNKNOWN = true) => ({
    type: "tls:index/selfSignedCert:SelfSignedCert", name: `${pki}-ca-g${g}`,
    urn: urn("registry-trust:index:RegistryPki$tls:index/selfSignedCert:SelfSignedCert", `${pki}-ca-g${g}`), props: { isCaCertificate },
  });
  const facts = stackFacts({});

  test("generation 1 alone, or N with N-1, passes; import mode ignores the setting", () => {
    expect(retentionFindings(facts, [ca("r", 1)])).toEqual([]);
    expect(retentionFindings(facts, [ca("r", 4), ca("r", 3)])).toEqual([]);
    expect(retentionFindings(stackFacts({ "registry-trust:caMode": "import", "registry-trust:caRetainGenerations": "0" }), [])).toEqual([]);
  });

  test("N without N-1 is named on the newest CA, per RegistryPki", () => {
    const findings = retentionFindings(facts, [ca("a", 3), ca("a", 2), ca("b", 5), ca("b", 3)]);
    expect(findings).toEqual([{ urn: ca("b", 5).urn, message: expect.stringMatching(/RegistryPki "b" puts CA generation 5 in the bundle without generation 4/) }]);
  });

  test("a retention setting below 1 or not an integer is a finding even at generation 1", () => {
    expect(retentionFindings(stackFacts({ "registry-trust:caRetainGenerations": "0" }), [ca("r", 1)])[0].message).toMatch(/caRetainGenerations is 0.*pulumi config set registry-trust:caRetainGenerations 1/);
    expect(retentionFindings(stackFacts({ "registry-trust:caRetainGenerations": "x" }), [])[0].message).toMatch(/is not an integer/);
  });
});
