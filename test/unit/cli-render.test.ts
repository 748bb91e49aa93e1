import { spawnSync } from "node:child_process";
import { renderNodeScript } from "../../core/node/render";
import { cli } from "../support/cli";
import { TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
afterAll(() => pki.cleanup());

const root = pki.root("CLI Render Root");
const bundle = pki.file("bundle.pem", root.certPem);
const leaf = pki.leaf(root, ["DNS:registry.test"]);
const chain = pki.file("chain.pem", leaf.certPem);
const withKey = pki.file("with-key.pem", `${root.certPem}${leaf.keyPem}`);
const registry = { host: "registry.test", port: 5000, mirrorOf: [] };

/** dash (Debian's sh) parses the script without running it. */
function shSyntaxOk(script: string): boolean {
  return spawnSync("sh", ["-n"], { input: script }).status === 0;
}

describe("registry-trust render", () => {
  test("prints the install script the renderer produces, exit 0, nothing on stderr", async () => {
    const r = await cli(["render", "--os", "debian", "--runtime", "containerd", "--registry", "registry.test:5000", "--ca-bundle", bundle]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toBe(renderNodeScript({ os: "debian", runtimes: ["containerd"], registries: [registry], bundlePem: root.certPem, action: "install" }));
    expect(r.stdout.startsWith("#!/bin/sh\n")).toBe(true);
    expect(shSyntaxOk(r.stdout)).toBe(true);
  });

  test("repeated --runtime and --registry, --action remove", async () => {
    const r = await cli(["render", "--os", "rhel", "--runtime", "containerd", "--runtime", "docker", "--registry", "registry.test:5000", "--registry", "mirror.test",
      "--ca-bundle", bundle, "--action", "remove"]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toBe(renderNodeScript({
      os: "rhel", runtimes: ["containerd", "docker"], registries: [registry, { host: "mirror.test", port: 443, mirrorOf: [] }], bundlePem: root.certPem, action: "remove",
    }));
    expect(shSyntaxOk(r.stdout)).toBe(true);
  });

  test("--serving-chain and --probe-image reach the script", async () => {
    const image = "registry.test:5000/lab/demo:1";
    const r = await cli(["render", "--os", "auto", "--runtime", "containerd", "--registry", "registry.test:5000", "--ca-bundle", bundle,
      "--serving-chain", chain, "--probe-image", image]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toBe(renderNodeScript({
      os: "auto", runtimes: ["containerd"], registries: [registry], bundlePem: root.certPem, action: "install", servingChainPem: leaf.certPem, probeImage: image,
    }));
    expect(r.stdout).not.toBe(renderNodeScript({ os: "auto", runtimes: ["containerd"], registries: [registry], bundlePem: root.certPem, action: "install" }));
  });

  const base = ["render", "--os", "debian", "--runtime", "containerd", "--registry", "registry.test:5000"];
  test.each([
    [["render", "--runtime", "containerd", "--registry", "r.test", "--ca-bundle", "b"], "--os is required"],
    [["render", "--os", "windows", "--runtime", "containerd", "--registry", "r.test", "--ca-bundle", "b"], '--os "windows" is not one of: auto, debian'],
    [["render", "--os", "debian", "--registry", "r.test", "--ca-bundle", "b"], "--runtime is required"],
    [["render", "--os", "debian", "--runtime", "lxd", "--registry", "r.test", "--ca-bundle", "b"], '--runtime "lxd" is not one of: containerd'],
    [["render", "--os", "debian", "--runtime", "containerd", "--ca-bundle", "b"], "--registry is required"],
    [["render", "--os", "debian", "--runtime", "containerd", "--registry", "reg$(id).test", "--ca-bundle", "b"], "contains characters that are not allowed"],
    [["render", "--os", "debian", "--runtime", "containerd", "--registry", "https://registry.test/v2", "--ca-bundle", "b"], "has a URL scheme"],
    [["render", "--os", "debian", "--runtime", "containerd", "--registry", "registry.test:0", "--ca-bundle", "b"], "port 0 must be an integer from 1 to 65535"],
    [[...base], "--ca-bundle is required"],
    [[...base, "--ca-bundle", "nope.pem"], "--ca-bundle nope.pem: no such file"],
    [[...base, "--ca-bundle", withKey], "PRIVATE_KEY_IN_BUNDLE"],
    [[...base, "--ca-bundle", bundle, "--action", "upgrade"], '--action "upgrade" is not one of: install, remove'],
    [[...base, "--ca-bundle", bundle, "--serving-chain", "nope.pem"], "--serving-chain nope.pem: no such file"],
    [[...base, "--ca-bundle", bundle, "--probe-image", "demo:1;reboot"], 'probe image "demo:1;reboot" is not an image reference'],
    [[...base, "--ca-bundle", bundle, "--os", "rhel"], "--os given twice"],
    [[...base, "--ca-bundle", bundle, "extra"], 'unexpected argument "extra"'],
    [[...base, "--ca-bundle", bundle, "--skip-verify"], "unknown option --skip-verify"],
  ])("usage error %j → exit 2, reason on stderr, nothing on stdout", async (args, reason) => {
    const r = await cli(args);
    expect(r).toMatchObject({ code: 2, stdout: "" });
    expect(r.stderr).toContain(reason);
    expect(r.stderr).toContain("registry-trust render --os OS");
  });
});
