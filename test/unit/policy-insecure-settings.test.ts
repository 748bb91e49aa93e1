import { renderCloudInit } from "../../core/bootstrap/cloud-init";
import { RegistryEndpoint, Runtime } from "../../core/config/model";
import { renderNodeScript } from "../../core/node/render";
import { insecureSettings } from "../../core/policy/insecure-settings";
import { UNKNOWN } from "../../core/policy/resources";
import { TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
afterAll(() => pki.cleanup());
const bundlePem = pki.issue({ cn: "Policy CA", ca: true }).certPem;
const registries: RegistryEndpoint[] = [{ host: "registry.test", port: 5000, mirrorOf: ["docker.io"] }, { host: "10.0.0.5", port: 443, mirrorOf: [] }];
const runtimes: Runtime[] = ["containerd", "docker", "crio", "k3s"];
const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("what registry-trust itself renders is clean", () => {
  test("the node install and remove scripts for every runtime, as NodeTrust passes them (stdin, delete line)", () => {
    const install = renderNodeScript({ os: "auto", runtimes, registries, bundlePem, action: "install", probeImage: "registry.test:5000/library/pause:3.10" });
    const remove = renderNodeScript({ os: "auto", runtimes, registries, bundlePem, action: "remove" });
    expect(install).toContain("rt_plan_file");
    expect(insecureSettings({ stdin: install, create: "sudo -n sh -s # registry-trust", delete: `printf '%s' '${b64(remove)}' | base64 -d | sudo -n sh -s` })).toEqual([]);
  });

  test("the cloud-init fragment (script base64 in write_files)", () => {
    expect(insecureSettings({ data: { "cloud-init": renderCloudInit({ os: "debian", runtimes, registries, bundlePem }).text } })).toEqual([]);
  });
});

describe("insecure settings are found, with where they are", () => {
  test.each([
    ["containerd hosts.toml skip_verify", 'server = "https://registry.test:5000"\n[host."https://registry.test:5000"]\n  skip_verify = true\n', /skip_verify = true/],
    ["k3s registries.yaml insecure_skip_verify", "configs:\n  registry.test:5000:\n    tls:\n      insecure_skip_verify: true\n", /insecure_skip_verify: true/],
    ["CRI-O registries.conf insecure", '[[registry]]\nlocation = "registry.test:5000"\ninsecure = true\n', /registries\.conf/],
    ["Docker daemon.json insecure-registries", '{ "insecure-registries": ["registry.test:5000"] }', /daemon\.json/],
    ["a plain-HTTP mirror endpoint", 'server = "http://registry.test:5000"\n', /plain-HTTP .* "http:\/\/registry\.test:5000"/],
    ["curl -k in a probe", "curl -fsS -k https://registry.test:5000/v2/\n", /curl -k/],
  ])("%s, in a file the script carries base64-encoded", (_what, file, expected) => {
    const script = `#!/bin/sh\nrt_plan_file '/etc/some/file' 0644 '${b64(file)}'\n`;
    const found = insecureSettings({ stdin: script });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^stdin \(base64 payload at offset \d+\): /);
    expect(found[0]).toMatch(expected);
  });

  test("in a plain nested input, with its property path", () => {
    expect(insecureSettings({ spec: { containers: [{ args: ["--insecure-registry", "registry.test:5000"] }] } })).toEqual([
      expect.stringMatching(/^spec\.containers\[0\]\.args\[0\]: --insecure-registry/),
    ]);
  });

  test("the same switches set to false are not findings", () => {
    expect(insecureSettings({ a: "skip_verify = false\ninsecure = false\ninsecure_skip_verify: false" })).toEqual([]);
  });

  test("https endpoints, binary base64 (certificates), unknown values and a dynamic provider's code are not findings", () => {
    expect(insecureSettings({
      server: "https://registry.test:5000",
      bundle: bundlePem,
      later: UNKNOWN,
      __provider: "exports.handler = function () { /* see http://www.apache.org/licenses/LICENSE-2.0 */ }",
    })).toEqual([]);
  });
});
