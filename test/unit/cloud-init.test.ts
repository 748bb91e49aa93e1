/**
 * The cloud-init fragment: structure, the script it carries is renderNodeScript's byte for byte, refusal
 * of bad input, and validation by Debian's real `cloud-init schema` (a schema error makes it exit 1,
 * which the last test proves on a broken fragment).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { CloudInitInput, renderCloudInit } from "../../core/bootstrap/cloud-init";
import { NodeScriptError, renderNodeScript } from "../../core/node/render";
import { TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
const dir = mkdtempSync(join(tmpdir(), "registry-trust-cloud-init-"));
afterAll(() => {
  pki.cleanup();
  rmSync(dir, { recursive: true, force: true });
});
const root = pki.root("Cloud-init Root");
const input: CloudInitInput = {
  os: "ubuntu",
  runtimes: ["containerd"],
  registries: [{ host: "registry.test", port: 5000, mirrorOf: ["docker.io"] }],
  bundlePem: root.certPem,
  servingChainPem: pki.leaf(root).certPem,
};

interface Fragment { merge_how: unknown; write_files: Record<string, string>[]; runcmd: string[][] }

describe("renderCloudInit", () => {
  const f = renderCloudInit(input);
  const doc = parse(f.text) as Fragment;

  test("a #cloud-config with one b64 write_files entry and one runcmd that runs it", () => {
    expect(f.text.startsWith("#cloud-config\n")).toBe(true);
    expect(Object.keys(doc).sort()).toEqual(["merge_how", "runcmd", "write_files"]);
    expect(doc.write_files).toEqual([{ path: "/run/registry-trust/install-default.sh", owner: "root:root", permissions: "0700", encoding: "b64", content: expect.any(String) }]);
    expect(doc.runcmd).toEqual([["sh", "/run/registry-trust/install-default.sh"]]);
    expect(f.scriptPath).toBe(doc.write_files[0].path);
  });

  test("the script is the node install script, with network probes off for boot and the offline check on", () => {
    const script = Buffer.from(doc.write_files[0].content, "base64").toString();
    expect(script).toBe(f.script);
    expect(script).toBe(renderNodeScript({ ...input, action: "install", probeTls: false }));
    expect(script).toContain("rt_verify_offline");
    expect(script).not.toMatch(/^rt_probe_(tls|pull) /m);
    const probing = renderCloudInit({ ...input, probeTls: true, probeImage: "registry.test:5000/lab/demo:1" }).script;
    expect(probing).toMatch(/^rt_probe_tls 'registry.test:5000' /m);
    expect(probing).toMatch(/^rt_probe_pull 'registry.test:5000\/lab\/demo:1'$/m);
  });

  test("lists are prepended when merged with other user-data parts, so the install runs before their runcmd", () => {
    expect(doc.merge_how).toEqual([{ name: "list", settings: ["prepend"] }, { name: "dict", settings: ["no_replace", "recurse_list"] }]);
  });

  test("the owner names the script, so two stacks' fragments do not overwrite each other", () => {
    expect(renderCloudInit({ ...input, owner: "team-a" }).scriptPath).toBe("/run/registry-trust/install-team-a.sh");
  });

  test("bad input is refused with every problem, as the node script renderer refuses it", () => {
    expect(() => renderCloudInit({ ...input, runtimes: [], bundlePem: "garbage" })).toThrow(NodeScriptError);
    try {
      renderCloudInit({ ...input, runtimes: [], bundlePem: "garbage" });
    } catch (e) {
      expect((e as NodeScriptError).problems.length).toBeGreaterThanOrEqual(2);
    }
  });
});

describe("Debian's cloud-init schema", () => {
  const schema = (text: string) => {
    const file = join(dir, `f${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, text);
    try {
      return { code: 0, out: execFileSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }) };
    } catch (e) {
      const err = e as { status: number; stdout: string; stderr: string };
      return { code: err.status, out: `${err.stdout}${err.stderr}` };
    }
  };
  test.each([
    ["containerd on ubuntu", input],
    ["every runtime, OS detected, two registries, probes on", { ...input, os: "auto", runtimes: ["containerd", "docker", "crio", "k3s"], registries: [...input.registries, { host: "10.0.0.5", port: 443, mirrorOf: [] }], probeTls: true, probeImage: "registry.test:5000/lab/demo:1" }],
  ] as [string, CloudInitInput][])("accepts the fragment: %s", (_name, i) => {
    const r = schema(renderCloudInit(i).text);
    expect(r).toEqual({ code: 0, out: expect.stringContaining("Valid cloud-config") });
  });
  test("refuses a fragment whose runcmd is broken (the check can fail)", () => {
    const broken = `#cloud-config\n${stringify({ ...(parse(renderCloudInit(input).text) as Fragment), runcmd: 3 })}`;
    const r = schema(broken);
    expect(r.code).toBe(1);
    expect(r.out).toContain("runcmd: 3 is not of type 'array'");
  });
});
