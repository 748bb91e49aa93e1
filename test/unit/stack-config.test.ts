import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../../core/config/issues";
import { parseStackConfig } from "../../core/config/validate";
import { TestPki } from "../../lab/openssl-pki";
import { REPO, rawFrom, stackValues } from "../support/stack-files";

const parse = (values: Record<string, unknown>, secretKeys: string[] = []) => parseStackConfig(rawFrom(values, secretKeys), { baseDir: REPO });

function issuesOf(values: Record<string, unknown>, secretKeys: string[] = []) {
  try {
    parse(values, secretKeys);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return { issues: (e as ConfigError).issues, message: (e as ConfigError).message };
  }
  throw new Error("config was accepted");
}

const minimal = { registries: [{ host: "registry.test", port: 5000 }] };
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHgsSXB27KRGxzrx4ETWC3ACMGW/F9auj4bConhNs+M7";

describe("committed stacks", () => {
  test("dev generates its CA with short-lived certificates and opts out of host key pinning", () => {
    const c = parse(stackValues("dev"));
    expect(c.policy.requireHostKeys).toBe(false);
    expect(c.ca).toMatchObject({ mode: "generate", generation: 1, retainGenerations: 1, keyAlgorithm: "ECDSA-P256" });
    expect(c.registries.map((r) => `${r.host}:${r.port}`)).toEqual(["registry.dev.example.internal:5000", "10.20.0.15:5000"]);
    expect(c.nodes.find((n) => n.name === "dev-worker-0")?.runtimes).toEqual(["containerd", "docker"]);
  });
  test("staging retains two generations, pins host keys and uses a bastion", () => {
    const c = parse(stackValues("staging"));
    expect(c.ca).toMatchObject({ mode: "generate", generation: 3, retainGenerations: 2, keyAlgorithm: "ECDSA-P384" });
    expect(c.nodes.every((n) => n.hostKey && n.proxy?.host === "bastion.staging.example.internal")).toBe(true);
    expect(c.clusters[0].controlPlanes).toEqual([{ namespace: "clusters", name: "stg-workload-control-plane" }]);
  });
  test("prod imports the enterprise bundle and its served chain verifies against it", () => {
    const c = parse(stackValues("prod"));
    expect(c.production).toBe(true);
    expect(c.ca.mode).toBe("import");
    expect(c.serving.mode).toBe("external");
    expect(c.serving.chainPem).toContain("BEGIN CERTIFICATE");
    expect(c.policy.requireHostKeys).toBe(true);
  });
});

describe("SSH host keys: pinned by default, ed25519 or ECDSA", () => {
  // Public host keys as ssh-keygen wrote them (OpenSSH 9.2p1), see test/fixtures/ssh.
  const fixture = (t: string) => readFileSync(join(REPO, "test", "fixtures", "ssh", `host_${t}.pub`), "utf8").trim();
  const node = (extra: Record<string, unknown> = {}) => ({ name: "n1", host: "10.0.0.1", ...extra });

  test("an unpinned node or bastion is refused unless the stack opts out; the fix says how to pin", () => {
    const { issues } = issuesOf({ ...minimal, nodes: [node(), node({ name: "n2", host: "10.0.0.2", hostKey: KEY, proxy: { host: "bastion.test" } })] });
    expect(issues.map((i) => i.path)).toEqual(["registry-trust:nodes[0].hostKey", "registry-trust:nodes[1].proxy.hostKey"]);
    expect(issues[0].fix).toMatch(/ssh-keyscan -t ed25519 10\.0\.0\.1/);
    expect(issues[0].fix).toMatch(/allowUnpinnedHostKeys/);
    const c = parse({ ...minimal, allowUnpinnedHostKeys: true, nodes: [node()] });
    expect(c.policy.requireHostKeys).toBe(false);
    expect(parse({ ...minimal, nodes: [node({ hostKey: KEY })] }).policy.requireHostKeys).toBe(true);
  });
  test("production cannot opt out", () => {
    const { issues } = issuesOf({ ...minimal, production: true, allowUnpinnedHostKeys: true, nodes: [node({ hostKey: KEY })] });
    expect(issues.map((i) => i.path)).toEqual(["registry-trust:allowUnpinnedHostKeys"]);
  });
  test("an RSA pin is refused with the reason (ssh-rsa only, refused by OpenSSH >= 8.8) and the fix; ed25519 and ECDSA pins pass", () => {
    const { issues } = issuesOf({ ...minimal, nodes: [node({ hostKey: fixture("rsa") }), node({ name: "n2", host: "10.0.0.2", hostKey: KEY, proxy: { host: "b.test", hostKey: fixture("rsa") } })] });
    expect(issues.map((i) => i.path)).toEqual(["registry-trust:nodes[0].hostKey", "registry-trust:nodes[1].proxy.hostKey"]);
    expect(issues[0].problem).toMatch(/RSA/);
    expect(issues[0].problem).toMatch(/OpenSSH 8\.8/);
    expect(issues[0].problem).toMatch(/ed25519/);
    const c = parse({ ...minimal, nodes: [node({ hostKey: fixture("ed25519") }), node({ name: "n2", host: "10.0.0.2", hostKey: fixture("ecdsa") })] });
    expect(c.nodes.map((n) => n.hostKey?.split(" ")[0])).toEqual(["ssh-ed25519", "ecdsa-sha2-nistp256"]);
  });
  test("a pin whose blob is not of its named type is refused", () => {
    const ecdsaBlob = fixture("ecdsa").split(" ")[1];
    const { issues } = issuesOf({ ...minimal, nodes: [node({ hostKey: `ssh-ed25519 ${ecdsaBlob}` })] });
    expect(issues[0].path).toBe("registry-trust:nodes[0].hostKey");
  });
  test("the removed requireHostKeys key is refused with the migration", () => {
    const { issues } = issuesOf({ ...minimal, requireHostKeys: true, nodes: [node({ hostKey: KEY })] });
    expect(issues.map((i) => i.path)).toEqual(["registry-trust:requireHostKeys"]);
    expect(issues[0].fix).toContain("pulumi config rm registry-trust:requireHostKeys");
  });
});

describe("bad config is refused with every problem at once", () => {
  test("several problems, each naming key path, value, problem and fix", () => {
    const { issues, message } = issuesOf({
      registries: [{ host: "https://registry.test/v2", port: 70000 }],
      caGeneration: 0,
      caKeyAlgorithm: "ECDSA-P224",
      nodes: [{ host: "10.0.0.1; rm -rf /", hsotKey: "x" }],
    });
    expect(issues.map((i) => i.path)).toEqual(expect.arrayContaining([
      "registry-trust:registries[0].host",
      "registry-trust:registries[0].port",
      "registry-trust:caGeneration",
      "registry-trust:caKeyAlgorithm",
      "registry-trust:nodes[0].host",
      "registry-trust:nodes[0].hsotKey",
    ]));
    expect(message).toMatch(/^Invalid stack configuration \(\d+ problems\); nothing was changed:/);
    expect(message).toContain('registry-trust:registries[0].port = 70000: must be an integer from 1 to 65535.');
    expect(message).toContain('registry-trust:caKeyAlgorithm = "ECDSA-P224": must be one of ECDSA-P256, ECDSA-P384, RSA-3072, RSA-4096. Did you mean "ECDSA-P256"?');
    expect(message).toContain('registry-trust:nodes[0].hsotKey = "x": unknown field. Did you mean "hostKey"?');
    for (const i of issues) expect(i.fix.length).toBeGreaterThan(5);
  });
  test("no registry", () => {
    expect(issuesOf({}).issues.map((i) => i.path)).toEqual(["registry-trust:registries"]);
  });
  test("unknown top-level key", () => {
    expect(issuesOf({ ...minimal, caGenration: 2 }).message).toContain('Did you mean "caGeneration"?');
  });
  test("production requires pinned host keys and a retained generation", () => {
    const { issues } = issuesOf({ ...minimal, production: true, caRetainGenerations: 0, nodes: [{ host: "10.0.0.1" }] });
    expect(issues.map((i) => i.path).sort()).toEqual(["registry-trust:caRetainGenerations", "registry-trust:nodes[0].hostKey"]);
  });
  test("production pins the bastion's host key too", () => {
    const { issues, message } = issuesOf({ ...minimal, production: true, nodes: [{ host: "10.0.0.1", hostKey: KEY, proxy: { host: "bastion.example", user: "jump" } }] });
    expect(issues.map((i) => i.path)).toEqual(["registry-trust:nodes[0].proxy.hostKey"]);
    expect(message).toContain("ssh-keyscan -t ed25519 bastion.example");
    expect(issuesOf({ ...minimal, production: true, nodes: [{ host: "10.0.0.1", hostKey: KEY, proxy: { host: "bastion.example", hostKey: "not a key" } }] }).message)
      .toContain('registry-trust:nodes[0].proxy.hostKey = "not a key"');
  });
  test("import mode needs exactly one bundle source and an external serving certificate", () => {
    const { issues } = issuesOf({ ...minimal, caMode: "import" });
    expect(issues.map((i) => i.path).sort()).toEqual(["registry-trust:caBundle", "registry-trust:servingCertMode"]);
  });
  test("an imported bundle that is not a certificate is refused with its problem code", () => {
    const { message } = issuesOf({ ...minimal, caMode: "import", servingCertMode: "external", caBundle: "not a pem" });
    expect(message).toContain("PEM_GARBAGE");
  });
  test("an external serving chain the bundle does not trust is refused before anything is touched", () => {
    const pki = new TestPki();
    try {
      const trusted = pki.root("Trusted Root");
      const other = pki.root("Other Root");
      const chain = pki.file("chain.pem", pki.leaf(other, ["DNS:registry.test"]).certPem);
      const { message } = issuesOf({ ...minimal, caMode: "import", servingCertMode: "external", caBundle: trusted.certPem, servingCertChainFile: chain });
      expect(message).toContain("registry-trust:servingCertChainFile");
      expect(message).toContain("for registry.test:5000: ERROR UNKNOWN_AUTHORITY");
    } finally {
      pki.cleanup();
    }
  });
  test("a private key stored in plain text is refused without echoing it", () => {
    const key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHCn\n-----END PRIVATE KEY-----\n";
    const { issues, message } = issuesOf({ ...minimal, sshPrivateKey: key });
    expect(issues.map((i) => i.path)).toEqual(["registry-trust:sshPrivateKey"]);
    expect(message).not.toContain("MC4CAQAwBQYDK2VwBCIEIHCn");
    expect(parse({ ...minimal, sshPrivateKey: key }, ["sshPrivateKey"]).ssh.useAgent).toBe(false);
  });
  test("duplicate node names and hosts", () => {
    const { issues } = issuesOf({ ...minimal, allowUnpinnedHostKeys: true, nodes: [{ name: "a", host: "10.0.0.1" }, { name: "a", host: "10.0.0.2" }, { name: "b", host: "10.0.0.1" }] });
    expect(issues.map((i) => i.path)).toEqual(["registry-trust:nodes[1].name", "registry-trust:nodes[2].host"]);
  });
  test("a probe image on another registry", () => {
    const { issues } = issuesOf({ ...minimal, probeImage: "docker.io/library/pause:3.10" });
    expect(issues[0].problem).toContain("registry.test:5000");
  });
  test("CA validity shorter than the serving certificate", () => {
    const { issues } = issuesOf({ ...minimal, caValidityDays: 30, servingValidityDays: 90 });
    expect(issues.map((i) => i.path)).toEqual(["registry-trust:caValidityDays"]);
  });
  test("an expiry warning window as long as the serving certificate's validity", () => {
    const { issues } = issuesOf({ ...minimal, servingValidityDays: 30, servingRenewBeforeDays: 10 });
    expect(issues.map((i) => i.path)).toEqual(["registry-trust:expiryWarningDays"]);
  });
  test("a minimal config gets the documented defaults", () => {
    const c = parse(minimal);
    expect(c.ca).toMatchObject({ mode: "generate", generation: 1, retainGenerations: 1, keyAlgorithm: "ECDSA-P384" });
    expect(c.ssh).toEqual({ user: "root", port: 22, useAgent: true });
  });
});
