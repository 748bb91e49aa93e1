import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expectedChecks, NodeScriptError, parseNodeReport, rancherRegistries, renderNodeScript, renderNodeScriptPair } from "../../core/node/render";
import { NodeScriptInput } from "../../core/node/types";
import { TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
afterAll(() => pki.cleanup());
const root = pki.root("Render Root");
const base: NodeScriptInput = {
  os: "auto",
  runtimes: ["containerd"],
  registries: [{ host: "registry.test", port: 5000, mirrorOf: ["docker.io"] }, { host: "10.0.0.5", port: 443, mirrorOf: [] }],
  bundlePem: root.certPem,
  action: "install",
  servingChainPem: pki.leaf(root).certPem,
  probeImage: "registry.test:5000/platform/pause:3.10",
};

function problems(input: Partial<NodeScriptInput>): string[] {
  try {
    renderNodeScript({ ...base, ...input });
  } catch (e) {
    expect(e).toBeInstanceOf(NodeScriptError);
    return [...(e as NodeScriptError).problems];
  }
  throw new Error("rendered");
}

describe("renderNodeScript refuses bad input before producing any text", () => {
  test("every problem is listed at once", () => {
    const p = problems({
      os: "windows" as never,
      runtimes: ["containerd", "rkt" as never],
      registries: [{ host: "registry.test$(reboot)", port: 0, mirrorOf: ["docker.io/library"] }],
      owner: "Team;rm",
      probeImage: "registry.test:5000/x:1; reboot",
      bundlePem: "garbage",
    });
    expect(p).toEqual([
      expect.stringContaining('os "windows"'),
      expect.stringContaining('runtime "rkt"'),
      expect.stringContaining('registry host "registry.test$(reboot)" contains characters that are not allowed'),
      expect.stringContaining("registry port 0"),
      expect.stringContaining('mirrorOf "docker.io/library"'),
      expect.stringContaining('owner "Team;rm"'),
      expect.stringContaining("probe image"),
      expect.stringContaining("PEM_GARBAGE"),
    ]);
  });
  test("a URL instead of a host name", () => {
    expect(problems({ registries: [{ host: "https://registry.test", port: 443, mirrorOf: [] }] })[0]).toContain("has a URL scheme");
  });
  test("a bundle with a private key in it never reaches a node", () => {
    expect(problems({ bundlePem: root.certPem + root.keyPem }).join()).toContain("PRIVATE_KEY_IN_BUNDLE");
  });
});

describe("rendered scripts", () => {
  const combos: Partial<NodeScriptInput>[] = [
    {},
    { action: "remove" },
    { os: "rhel", runtimes: ["crio", "podman"] },
    { os: "alpine", runtimes: ["docker"], probeImage: undefined, servingChainPem: undefined },
    { os: "suse", runtimes: ["k3s"], allowRuntimeRestart: false },
    { os: "flatcar", runtimes: ["rke2", "containerd"], action: "remove" },
    { os: "photon", runtimes: ["containerd", "docker", "crio", "k3s", "rke2"], owner: "prod-eu-1" },
  ];
  test.each(combos.map((c) => [JSON.stringify(c), c] as const))("pass shellcheck (POSIX sh): %s", (_n, c) => {
    const dir = mkdtempSync(join(tmpdir(), "rt-sc-"));
    try {
      const file = join(dir, "node.sh");
      writeFileSync(file, renderNodeScript({ ...base, ...c }));
      // SC1091: /etc/os-release is the node's file, read at run time.
      execFileSync("shellcheck", ["-s", "sh", "-e", "SC1091", file], { stdio: "pipe" });
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test("content travels base64; the script text holds no PEM and no unquoted value", () => {
    const script = renderNodeScript(base);
    expect(script).not.toContain("BEGIN CERTIFICATE");
    const body = script.slice(script.indexOf("\nrt_detect_os\n"));
    for (const line of body.split("\n").filter(Boolean)) {
      expect(line).toMatch(/^(rt_[a-z_]+|RT_HAS_INTERMEDIATES=1?)( ('[^']*'|"\$RT_[A-Z_]+"|"\$RT_WORK\/[a-z.]+"|[0-9]+|[a-z0-9]+|\/etc\/[a-z./*-]+))*$/);
    }
  });

  test("the install-or-remove script passes shellcheck and runs each action's own lines, in order", () => {
    const { action: _, ...input } = base;
    const pair = renderNodeScriptPair(input);
    const dir = mkdtempSync(join(tmpdir(), "rt-sc-"));
    try {
      writeFileSync(join(dir, "node.sh"), pair);
      execFileSync("shellcheck", ["-s", "sh", "-e", "SC1091", join(dir, "node.sh")], { stdio: "pipe" });
    } finally {
      rmSync(dir, { recursive: true });
    }
    const branch = (name: string) => pair.slice(pair.indexOf(`\n${name})\n`) + name.length + 3, pair.indexOf("\n;;\n", pair.indexOf(`\n${name})\n`)));
    const bodyOf = (script: string) => script.slice(script.indexOf("\nrt_detect_os\n") + 1).trimEnd();
    expect(branch("install")).toBe(bodyOf(renderNodeScript({ ...input, action: "install" })));
    expect(branch("remove")).toBe(bodyOf(renderNodeScript({ ...input, action: "remove" })));
  });

  test("the install-or-remove script refuses any other first argument before a step runs", () => {
    const { action: _, ...input } = base;
    const run = spawnSync("sh", ["-s", "upgrade"], { input: renderNodeScriptPair(input), encoding: "utf8", env: { PATH: process.env.PATH ?? "", TMPDIR: tmpdir() } });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain("'sh -s install' or 'sh -s remove', got 'upgrade'");
    expect(run.stdout).toBe("");
  });

  test("remove scripts carry no bundle and no verification", () => {
    const script = renderNodeScript({ ...base, action: "remove" });
    expect(script).not.toContain(Buffer.from(root.certPem).toString("base64").slice(0, 40));
    expect(script.slice(script.indexOf("\nrt_detect_os\n"))).not.toMatch(/^rt_(probe|verify)/m);
  });
});

describe("k3s/RKE2 registries.yaml (k3s cannot run here: checked structurally, and merged for real in test/lab)", () => {
  test("mirrors for mirrored upstreams, TLS config per endpoint", () => {
    const { yaml, keys } = rancherRegistries(base.registries, "/etc/rancher/k3s/registry-trust-default-ca.crt");
    expect(yaml).toBe([
      "mirrors:",
      "  docker.io:",
      "    endpoint:",
      "      - https://registry.test:5000",
      "configs:",
      "  registry.test:5000:",
      "    tls:",
      "      ca_file: /etc/rancher/k3s/registry-trust-default-ca.crt",
      "  10.0.0.5:",
      "    tls:",
      "      ca_file: /etc/rancher/k3s/registry-trust-default-ca.crt",
      "",
    ].join("\n"));
    expect(keys).toEqual(["docker.io", "registry.test:5000", "10.0.0.5"]);
  });
});

describe("parseNodeReport", () => {
  test("reads the last report line", () => {
    const r = parseNodeReport('noise\nREGISTRY_TRUST_REPORT {"action":"install","os":"debian","changed":["/a"],"restarted":[],"verified":[],"bundleSha256":"ab"}\n');
    expect(r).toEqual({ action: "install", os: "debian", changed: ["/a"], restarted: [], verified: [], bundleSha256: "ab" });
  });
  test("a script that died before the end has no report", () => {
    expect(() => parseNodeReport("registry-trust: ERROR: boom\n")).toThrow("printed no REGISTRY_TRUST_REPORT line");
  });
});

describe("expectedChecks: what a passing install reports as verified (NodeTrust compares)", () => {
  test("every trust location per endpoint; the OS store's bundle only once the OS family is known", () => {
    const one = { ...base, registries: [base.registries[0]] };
    const ca = "/etc/containerd/certs.d/registry.test:5000/ca.crt";
    expect(expectedChecks({ ...one, os: "debian" })).toEqual([
      "openssl-verify:/etc/ssl/certs/ca-certificates.crt", `openssl-verify:${ca}`,
      "tls:registry.test:5000@/etc/ssl/certs/ca-certificates.crt", `tls:registry.test:5000@${ca}`,
      "cri-pull:registry.test:5000/platform/pause:3.10",
    ]);
    expect(expectedChecks({ ...one, os: "auto", servingChainPem: undefined, probeImage: undefined })).toEqual([`tls:registry.test:5000@${ca}`]);
    expect(expectedChecks({ ...one, os: "auto", servingChainPem: undefined, probeImage: undefined, probeTls: false })).toEqual([]);
  });
  test("a probe image may name a bracketed IPv6 registry; allowUnverified reaches the script", () => {
    const script = renderNodeScript({ ...base, registries: [{ host: "fd00::1", port: 5000, mirrorOf: [] }], probeImage: "[fd00::1]:5000/a/b:1", allowUnverified: true });
    expect(script).toContain("rt_probe_pull '[fd00::1]:5000/a/b:1'");
    expect(script).toContain("\nRT_ALLOW_UNVERIFIED=1\n");
    expect(renderNodeScript(base)).toContain("\nRT_ALLOW_UNVERIFIED=''\n");
  });
});
