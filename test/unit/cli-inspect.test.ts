import { readFileSync } from "node:fs";
import { AddressInfo } from "node:net";
import { Server, createServer } from "node:tls";
import { parsePemCertificates } from "../../core/x509/pem";
import { cli } from "../support/cli";
import { Issued, TestPki } from "../../lab/openssl-pki";

/*
 * inspect against real TLS servers on loopback (Node's TLS server, serving whatever chain a scenario
 * needs). The same command against the lab's Debian docker-registry is in test/lab/inspect-registry.test.ts.
 */

const pki = new TestPki();
const root = pki.root("Inspect Root");
const issuing = pki.issue({ cn: "Inspect Issuing CA", issuer: root, ca: true });
const bundle = pki.file("bundle.pem", root.certPem);
const servers: Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  pki.cleanup();
});

async function serve(leaf: Issued, ...chain: Issued[]): Promise<string> {
  const server = createServer({ cert: [leaf, ...chain].map((c) => c.certPem).join(""), key: leaf.keyPem });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const leafOf = (issuer: Issued, extra = {}) => pki.leaf(issuer, ["DNS:registry.test", "IP:127.0.0.1"], extra);

describe("registry-trust inspect", () => {
  test("a healthy registry: served chain shown, trusted with the bundle, chain saved for import", async () => {
    const url = await serve(leafOf(issuing), issuing);
    const saved = `${pki.dir}/saved.pem`;
    const r = await cli(["inspect", url, "--ca-bundle", bundle, "--save-chain", saved]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("serves 2 certificate(s):");
    expect(r.stdout).toContain("SANs:     DNS:registry.test, IP:127.0.0.1");
    expect(r.stdout).toContain("OK: a runtime with this bundle trusts this registry.");
    const savedCerts = parsePemCertificates(readFileSync(saved, "utf8"), "saved").certs;
    expect(savedCerts.map((c) => c.subject)).toEqual(["CN=registry.test", "CN=Inspect Issuing CA"]);
    expect(r.stdout).toContain(`fingerprint of the topmost one: ${savedCerts[1].fingerprint256}`);
    // The saved chain is what `check` and caMode import expect.
    expect((await cli(["check", "--ca-bundle", bundle, "--cert", saved, "--host", "127.0.0.1"])).code).toBe(0);
  });

  test("missing intermediate: the server sends only the leaf", async () => {
    const url = await serve(leafOf(issuing, { extra: ["authorityInfoAccess=caIssuers;URI:http://pki.test/issuing.crt"] }));
    const r = await cli(["inspect", url, "--ca-bundle", bundle, "--json"]);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.chain).toHaveLength(1);
    expect(out.problems.map((p: { code: string }) => p.code)).toEqual(["MISSING_INTERMEDIATE"]);
  });

  test("unknown authority relative to the bundle, hostname mismatch and expiry, all at once", async () => {
    const other = pki.root("Unrelated Root");
    const url = await serve(pki.leaf(other, ["DNS:registry.test"], { notBefore: new Date(Date.now() - 9 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) }));
    const r = await cli(["inspect", url, "--ca-bundle", bundle]);
    expect(r.code).toBe(1);
    for (const code of ["UNKNOWN_AUTHORITY", "HOSTNAME_MISMATCH", "EXPIRED"]) expect(r.stdout).toContain(`ERROR ${code}`);
  });

  test("without a bundle: the served chain is still checked, and trust is said to be unevaluated", async () => {
    const url = await serve(leafOf(issuing), issuing);
    const r = await cli(["inspect", url]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('note: the served chain ends at "CN=Inspect Issuing CA", issued by "CN=Inspect Root"');
    expect(r.stdout).toContain("note: no --ca-bundle given: trust was not evaluated.");
  });

  test("nothing listening: exit 1 with the reason on stderr", async () => {
    const r = await cli(["inspect", "https://127.0.0.1:1", "--timeout", "2000"]);
    expect(r).toMatchObject({ code: 1, stdout: "" });
    expect(r.stderr).toContain("cannot complete a TLS handshake with 127.0.0.1:1");
  });

  test.each([
    [["inspect", "http://127.0.0.1:5000"], "only https:// registries"],
    [["inspect", "https://127.0.0.1:5000/v2/"], "without path"],
    [["inspect"], "the registry URL is required"],
  ])("usage error %j → exit 2", async (args, reason) => {
    const r = await cli(args);
    expect(r).toMatchObject({ code: 2, stdout: "" });
    expect(r.stderr).toContain(reason);
  });
});
