import { createPrivateKey } from "node:crypto";
import { inspectBundle } from "../../core/x509/bundle";
import { parsePemCertificates } from "../../core/x509/pem";
import { ProblemCode } from "../../core/x509/problems";
import { Verdict, verifyServing } from "../../core/x509/verify";
import { goVerify, reasonOf } from "../support/goverify";
import { Issued, TestPki } from "../../lab/openssl-pki";

const DAY = 86_400_000;
const pki = new TestPki();
afterAll(() => pki.cleanup());

interface Case {
  readonly name: string;
  readonly bundle: () => Issued[];
  readonly chain: () => Issued[];
  readonly host: string;
  readonly now?: Date;
  readonly trusted: boolean;
  /** Every code reported (errors and warnings), the one Go reports first. */
  readonly codes: ProblemCode[];
}

const root = pki.root("Registry Root G1");
const otherRoot = pki.root("Some Other Root");
const inter = pki.issue({ cn: "Registry Issuing CA", issuer: root, ca: true });
const leaf = pki.leaf(root);

const cases: Case[] = [
  { name: "valid leaf signed by the bundled root", bundle: () => [root], chain: () => [leaf], host: "registry.test", trusted: true, codes: [] },
  { name: "valid chain through a served intermediate", bundle: () => [root], chain: () => [pki.leaf(inter), inter], host: "registry.test", trusted: true, codes: [] },
  { name: "IP host matches an IP SAN", bundle: () => [root], chain: () => [leaf], host: "127.0.0.1", trusted: true, codes: [] },
  { name: "IP host in brackets", bundle: () => [root], chain: () => [pki.leaf(root, ["IP:::1"])], host: "[::1]", trusted: true, codes: [] },
  { name: "host name is case-insensitive and may end with a dot", bundle: () => [root], chain: () => [leaf], host: "REGISTRY.test.", trusted: true, codes: [] },
  { name: "wildcard covers one label", bundle: () => [root], chain: () => [pki.leaf(root, ["DNS:*.corp.test"])], host: "registry.corp.test", trusted: true, codes: [] },
  { name: "wildcard does not cover two labels", bundle: () => [root], chain: () => [pki.leaf(root, ["DNS:*.test"])], host: "a.registry.test", trusted: false, codes: ["HOSTNAME_MISMATCH"] },
  { name: "wildcard does not cover the bare domain", bundle: () => [root], chain: () => [pki.leaf(root, ["DNS:*.registry.test"])], host: "registry.test", trusted: false, codes: ["HOSTNAME_MISMATCH"] },
  { name: "partial-label wildcard is not a wildcard", bundle: () => [root], chain: () => [pki.leaf(root, ["DNS:reg*.test"])], host: "registry.test", trusted: false, codes: ["HOSTNAME_MISMATCH"] },
  { name: "host name mismatch", bundle: () => [root], chain: () => [leaf], host: "other.test", trusted: false, codes: ["HOSTNAME_MISMATCH"] },
  { name: "IP host never matches a DNS SAN", bundle: () => [root], chain: () => [pki.leaf(root, ["DNS:127.0.0.2"])], host: "127.0.0.2", trusted: false, codes: ["HOSTNAME_MISMATCH"] },
  { name: "Common Name without SANs is ignored", bundle: () => [root], chain: () => [pki.leaf(root, [])], host: "registry.test", trusted: false, codes: ["CN_ONLY_NO_SAN"] },
  { name: "unknown authority", bundle: () => [otherRoot], chain: () => [leaf], host: "registry.test", trusted: false, codes: ["UNKNOWN_AUTHORITY"] },
  { name: "intermediate not served and not bundled", bundle: () => [root], chain: () => [pki.leaf(inter)], host: "registry.test", trusted: false, codes: ["UNKNOWN_AUTHORITY"] },
  {
    name: "missing intermediate named by the leaf's AIA", bundle: () => [root],
    chain: () => [pki.leaf(inter, undefined, { extra: ["authorityInfoAccess=caIssuers;URI:http://pki.test/issuing.crt"] })],
    host: "registry.test", trusted: false, codes: ["MISSING_INTERMEDIATE"],
  },
  { name: "intermediate in the bundle instead of served", bundle: () => [root, inter], chain: () => [pki.leaf(inter)], host: "registry.test", trusted: true, codes: [] },
  { name: "expired leaf", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { notBefore: new Date(Date.now() - 40 * DAY), notAfter: new Date(Date.now() - DAY) })], host: "registry.test", trusted: false, codes: ["EXPIRED"] },
  { name: "leaf not yet valid", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 40 * DAY) })], host: "registry.test", trusted: false, codes: ["NOT_YET_VALID"] },
  { name: "expired root", bundle: () => [root], chain: () => [leaf], host: "registry.test", now: new Date(Date.now() + 3700 * DAY), trusted: false, codes: ["EXPIRED", "EXPIRED"] },
  { name: "leaf expiring soon is a warning", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { notAfter: new Date(Date.now() + 5 * DAY) })], host: "registry.test", trusted: true, codes: ["EXPIRES_SOON"] },
  {
    name: "issuer with CA:FALSE", bundle: () => [root],
    chain: () => { const notCa = pki.issue({ cn: "Not A CA", issuer: root, ca: false, keyUsage: "critical,keyCertSign,digitalSignature", eku: "" }); return [pki.leaf(notCa), notCa]; },
    host: "registry.test", trusted: false, codes: ["UNKNOWN_AUTHORITY", "ISSUER_NOT_CA"],
  },
  {
    name: "v3 issuer without basicConstraints", bundle: () => [root],
    chain: () => { const noBc = pki.issue({ cn: "No BC", issuer: root, keyUsage: "critical,keyCertSign", eku: "" }); return [pki.leaf(noBc), noBc]; },
    host: "registry.test", trusted: false, codes: ["UNKNOWN_AUTHORITY", "ISSUER_NOT_CA"],
  },
  {
    name: "v1 intermediate (no extensions) may not sign", bundle: () => [root],
    chain: () => { const v1 = pki.issue({ cn: "Legacy v1 Intermediate", issuer: root, v1: true }); return [pki.leaf(v1), v1]; },
    host: "registry.test", trusted: false, codes: ["ISSUER_NOT_CA"],
  },
  {
    name: "served chain of look-alike intermediates exhausts the path-building budget", bundle: () => [root],
    chain: () => [pki.leaf(inter), ...lookAlikes()],
    host: "registry.test", trusted: false, codes: ["CHAIN_BUILD_BUDGET_EXCEEDED"],
  },
  {
    name: "CA requires an explicit policy the leaf does not carry", bundle: () => [root],
    chain: () => { const i = pki.issue({ cn: "Policy CA", issuer: root, ca: true, extra: ["policyConstraints=requireExplicitPolicy:0"] }); return [pki.leaf(i), i]; },
    host: "registry.test", trusted: false, codes: ["POLICY_INVALID"],
  },
  {
    name: "CA requires an explicit policy and the chain carries one", bundle: () => [root],
    chain: () => {
      const i = pki.issue({ cn: "Policy CA", issuer: root, ca: true, extra: ["policyConstraints=requireExplicitPolicy:0", "certificatePolicies=2.5.29.32.0"] });
      return [pki.leaf(i, undefined, { extra: ["certificatePolicies=1.3.6.1.4.1.99999.7"] }), i];
    },
    host: "registry.test", trusted: true, codes: [],
  },
  { name: "v1 root (no extensions) may sign", bundle: () => [v1root], chain: () => [pki.leaf(v1root)], host: "registry.test", trusted: true, codes: [] },
  {
    name: "issuer keyUsage without keyCertSign", bundle: () => [root],
    chain: () => { const ku = pki.issue({ cn: "KU CA", issuer: root, ca: true, keyUsage: "critical,digitalSignature,cRLSign" }); return [pki.leaf(ku), ku]; },
    host: "registry.test", trusted: false, codes: ["UNKNOWN_AUTHORITY", "ISSUER_KEY_USAGE"],
  },
  {
    name: "path length exceeded", bundle: () => [pathRoot],
    chain: () => { const i = pki.issue({ cn: "Under pathlen 0", issuer: pathRoot, ca: true }); return [pki.leaf(i), i]; },
    host: "registry.test", trusted: false, codes: ["PATH_LEN_EXCEEDED"],
  },
  { name: "leaf EKU without serverAuth", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { eku: "clientAuth" })], host: "registry.test", trusted: false, codes: ["EKU_NOT_SERVER_AUTH"] },
  {
    name: "intermediate EKU without serverAuth", bundle: () => [root],
    chain: () => { const i = pki.issue({ cn: "Client-only CA", issuer: root, ca: true, eku: "clientAuth" }); return [pki.leaf(i), i]; },
    host: "registry.test", trusted: false, codes: ["EKU_NOT_SERVER_AUTH"],
  },
  { name: "leaf without EKU is fine", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { eku: "" })], host: "registry.test", trusted: true, codes: [] },
  { name: "SHA-1 signature", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { md: "sha1" })], host: "registry.test", trusted: false, codes: ["UNKNOWN_AUTHORITY", "INSECURE_SIGNATURE_ALGORITHM"] },
  { name: "same CA name, different key (old generation bundled)", bundle: () => [twinA], chain: () => [pki.leaf(twinB)], host: "registry.test", trusted: false, codes: ["UNKNOWN_AUTHORITY", "BAD_SIGNATURE"] },
  { name: "both generations bundled", bundle: () => [twinA, twinB], chain: () => [pki.leaf(twinB)], host: "registry.test", trusted: true, codes: [] },
  { name: "unknown critical extension", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { extra: ["1.3.6.1.4.1.99999.1=critical,ASN1:NULL"] })], host: "registry.test", trusted: false, codes: ["UNHANDLED_CRITICAL_EXTENSION"] },
  { name: "unknown non-critical extension is fine", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { extra: ["1.3.6.1.4.1.99999.1=ASN1:NULL"] })], host: "registry.test", trusted: true, codes: [] },
  { name: "name constraints refuse the leaf", bundle: () => [constrained], chain: () => [pki.leaf(constrained)], host: "registry.test", trusted: false, codes: ["NAME_CONSTRAINT_VIOLATION"] },
  { name: "name constraints permit the leaf", bundle: () => [constrained], chain: () => [pki.leaf(constrained, ["DNS:registry.corp.example"])], host: "registry.corp.example", trusted: true, codes: [] },
  { name: "IP name constraint refuses an address outside the subnet", bundle: () => [ipConstrained], chain: () => [pki.leaf(ipConstrained, ["IP:127.0.0.1"])], host: "127.0.0.1", trusted: false, codes: ["NAME_CONSTRAINT_VIOLATION"] },
  { name: "RSA 1024: Go accepts, our policy refuses", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { key: "rsa1024" })], host: "registry.test", trusted: true, codes: ["WEAK_KEY"] },
  { name: "ECDSA P-224: policy refuses", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { key: "ec224" })], host: "registry.test", trusted: true, codes: ["WEAK_KEY"] },
  { name: "Ed25519 leaf", bundle: () => [root], chain: () => [pki.leaf(root, undefined, { key: "ed25519" })], host: "registry.test", trusted: true, codes: [] },
  { name: "pinned self-signed leaf in the bundle", bundle: () => [selfSigned], chain: () => [selfSigned], host: "registry.test", trusted: true, codes: [] },
];

/** 101 CA certificates named like `inter` under keys that did not sign the leaf: Go gives up after 100 checks. */
let lookAlikeCache: Issued[] | undefined;
const lookAlikes = () => (lookAlikeCache ??= Array.from({ length: 101 }, () => pki.issue({ cn: "Registry Issuing CA", issuer: root, ca: true })));
const v1root = pki.issue({ cn: "Legacy v1 Root", v1: true });
const pathRoot = pki.root("Pathlen0 Root", { pathLen: 0 });
const twinA = pki.root("Registry CA");
const twinB = pki.root("Registry CA");
const constrained = pki.root("Constrained Root", { extra: ["nameConstraints=critical,permitted;DNS:corp.example"] });
const ipConstrained = pki.root("IP Constrained Root", { extra: ["nameConstraints=critical,permitted;IP:10.0.0.0/255.0.0.0"] });
const selfSigned = pki.issue({ cn: "registry.test", ca: false, san: ["DNS:registry.test"] });

const pemOf = (xs: Issued[]) => xs.map((x) => x.certPem).join("");

interface Materialised { readonly c: Case; readonly bundle: string; readonly chain: string; readonly verdict: Verdict }
const materialised = new Map<string, Materialised>();
function run(c: Case): Materialised {
  let m = materialised.get(c.name);
  if (!m) {
    const bundle = pemOf(c.bundle());
    const chain = pemOf(c.chain());
    const verdict = verifyServing({
      bundle: parsePemCertificates(bundle, "bundle").certs,
      chain: parsePemCertificates(chain, "chain").certs,
      host: c.host,
      now: c.now,
    });
    m = { c, bundle, chain, verdict };
    materialised.set(c.name, m);
  }
  return m;
}

describe("verifyServing: one case per problem class", () => {
  test.each(cases.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const { verdict } = run(c);
    expect({ trusted: verdict.trusted, codes: verdict.problems.map((p) => p.code) }).toEqual({ trusted: c.trusted, codes: c.codes });
    for (const p of verdict.problems) {
      expect(p.message.length).toBeGreaterThan(10);
      expect(p.fix.length).toBeGreaterThan(10);
      if (p.code !== "UNKNOWN_AUTHORITY") expect(p.cert?.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    }
  });
});

describe("verdicts agree with Go's crypto/x509 (the runtimes' verifier)", () => {
  test("every case: trusted or not, and for the same reason", () => {
    const all = cases.map(run);
    const answers = goVerify(all.map((m) => ({
      name: m.c.name, bundle: m.bundle, chain: m.chain, host: m.c.host, time: m.c.now?.toISOString().replace(/\.\d+Z$/, "Z"),
    })));
    const ours = all.map((m) => ({ name: m.c.name, trusted: m.verdict.trusted, reason: reasonOf(m.verdict.problems) }));
    const go = answers.map((a) => ({ name: a.name, trusted: a.trusted, reason: a.trusted ? undefined : a.reason }));
    expect(ours).toEqual(go);
  }, 120_000);
});

describe("serving key", () => {
  test("a key that does not match the certificate is refused", () => {
    const other = pki.leaf(root);
    const verdict = verifyServing({
      bundle: parsePemCertificates(root.certPem, "bundle").certs,
      chain: parsePemCertificates(leaf.certPem, "chain").certs,
      host: "registry.test",
      privateKey: createPrivateKey(other.keyPem),
    });
    expect(verdict.problems.map((p) => p.code)).toEqual(["KEY_MISMATCH"]);
    expect(verdict.ok).toBe(false);
  });
  test("the matching key passes", () => {
    const verdict = verifyServing({
      bundle: parsePemCertificates(root.certPem, "bundle").certs,
      chain: parsePemCertificates(leaf.certPem, "chain").certs,
      host: "registry.test",
      privateKey: createPrivateKey(leaf.keyPem),
    });
    expect(verdict.ok).toBe(true);
  });
});

describe("bundle input", () => {
  const codes = (pem: string) => inspectBundle(pem, "ca.pem").problems.map((p) => p.code);
  test("empty", () => expect(codes("  \n")).toEqual(["EMPTY_INPUT"]));
  test("garbage without PEM blocks", () => expect(codes("hello, I am not a certificate")).toEqual(["PEM_GARBAGE"]));
  test("truncated base64", () => {
    const broken = root.certPem.replace(/\n[A-Za-z0-9+/]{10}/, "\n");
    expect(codes(broken)).toEqual(["CERT_UNPARSEABLE"]);
  });
  test("private key inside a bundle", () => expect(codes(root.certPem + root.keyPem)).toEqual(["PRIVATE_KEY_IN_BUNDLE"]));
  test("duplicates are reported and dropped", () => {
    const r = inspectBundle(root.certPem + otherRoot.certPem + root.certPem, "ca.pem");
    expect(r.problems.map((p) => p.code)).toEqual(["DUPLICATE_CERT"]);
    expect(r.certs).toHaveLength(2);
  });
  test("a server certificate in the bundle is flagged", () => expect(codes(leaf.certPem)).toEqual(["BUNDLE_ENTRY_NOT_CA"]));
  test("an expired CA in the bundle is flagged", () => {
    const old = pki.root("Old Root", { notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) });
    expect(codes(old.certPem)).toEqual(["BUNDLE_CA_EXPIRED"]);
  });
  test("a weak CA key in the bundle is flagged", () => expect(codes(pki.root("Weak Root", { key: "rsa1024" }).certPem)).toEqual(["WEAK_KEY"]));
  test("non-certificate blocks only", () => expect(codes("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")).toEqual(["EMPTY_INPUT"]));
});
