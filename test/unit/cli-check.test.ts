import { cli } from "../support/cli";
import { TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
afterAll(() => pki.cleanup());

const root = pki.root("CLI Root");
const bundle = pki.file("bundle.pem", root.certPem);
const leaf = pki.leaf(root, ["DNS:registry.test", "IP:127.0.0.1"]);
const cert = pki.file("leaf.pem", leaf.certPem);
const key = pki.file("leaf.key", leaf.keyPem);

describe("registry-trust check", () => {
  test("exit 0 when a runtime with the bundle trusts the certificate for the host", async () => {
    const r = await cli(["check", "--ca-bundle", bundle, "--cert", cert, "--key", key, "--host", "registry.test:5000"]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toContain("OK: a runtime with");
    expect(r.stdout).toContain("chain: CN=registry.test <- CN=CLI Root");
  });

  test("exit 1 with every problem listed", async () => {
    const expired = pki.leaf(pki.root("Elsewhere"), ["DNS:other.test"], { notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const r = await cli(["check", "--ca-bundle", bundle, "--cert", pki.file("bad.pem", expired.certPem), "--key", key, "--host", "registry.test"]);
    expect(r.code).toBe(1);
    for (const code of ["EXPIRED", "HOSTNAME_MISMATCH", "KEY_MISMATCH", "UNKNOWN_AUTHORITY"]) expect(r.stdout).toContain(`ERROR ${code}`);
    expect(r.stdout).toMatch(/^NOT OK: 4 problem\(s\) for registry.test/);
  });

  test("--json gives the verdict and the problems with their codes", async () => {
    const r = await cli(["check", "--ca-bundle", bundle, "--cert", cert, "--host", "10.9.9.9", "--json"]);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ ok: false, trusted: false, host: "10.9.9.9", port: 443 });
    expect(out.problems.map((p: { code: string }) => p.code)).toEqual(["HOSTNAME_MISMATCH"]);
  });

  test("--at evaluates at a future time, e.g. the planned switch date", async () => {
    const r = await cli(["check", "--ca-bundle", bundle, "--cert", cert, "--host", "registry.test", "--at", "2099-01-01T00:00:00Z"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("ERROR EXPIRED");
  });

  test("weak keys: runtimes would connect, our policy refuses", async () => {
    const weak = pki.leaf(root, ["DNS:registry.test"], { key: "rsa1024" });
    const r = await cli(["check", "--ca-bundle", bundle, "--cert", pki.file("weak.pem", weak.certPem), "--host", "registry.test"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("(runtimes would connect, but our policy refuses)");
    expect(r.stdout).toContain("ERROR WEAK_KEY");
  });

  test.each([
    [["check", "--cert", "x.pem", "--host", "h"], "--ca-bundle is required"],
    [["check", "--ca-bundle", "nope.pem", "--cert", "x.pem", "--host", "registry.test"], "--ca-bundle nope.pem: no such file"],
    [["check", "--ca-bundle", "a", "--cert", "b", "--host", "https://registry.test/v2"], '--host host "https://registry.test/v2" has a URL scheme'],
    [["check", "--ca-bundle", "a", "--cert", "b", "--host", "registry.test:99999"], "--host port 99999 must be an integer from 1 to 65535"],
    [["check", "--ca-bundle", "a", "--cert", "b", "--host", "reg$(id).test"], "contains characters that are not allowed"],
    [["check", "--bundle", "a"], "unknown option --bundle"],
    [["frobnicate"], 'unknown command "frobnicate"'],
  ])("usage error %j → exit 2, reason on stderr, nothing on stdout", async (args, reason) => {
    const r = await cli(args);
    expect(r).toMatchObject({ code: 2, stdout: "" });
    expect(r.stderr).toContain(reason);
    expect(r.stderr).toContain("Usage:");
  });
});
