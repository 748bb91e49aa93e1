/**
 * doctor's input checks, its ssh invocation and its node probe. The probe runs for real here, under dash
 * against this machine (it only reads), and against a real TLS server on loopback; the lab test runs it
 * on real nodes over real ssh.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { AddressInfo, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, createServer } from "node:tls";
import { chainFromSClient } from "../../core/doctor/analyze";
import { parseDump } from "../../core/doctor/dump";
import { renderProbeScript } from "../../core/doctor/probe-script";
import { DoctorTarget, TargetError, parseImage, parseNode, parseRegistry } from "../../core/doctor/target";
import { sshArgs } from "../../cli/doctor";
import { main } from "../../cli/main";
import { TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
const tmp = mkdtempSync(join(tmpdir(), "rt-doctor-"));
afterAll(() => {
  pki.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

async function runCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(args, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

describe("target validation", () => {
  test("--node takes ssh://USER@HOST[:PORT]; port 22 by default; IPv6 in brackets", () => {
    expect(parseNode("ssh://root@10.0.0.5")).toEqual({ user: "root", host: "10.0.0.5", port: 22 });
    expect(parseNode("ssh://ops.admin@Node-1.example:2222")).toEqual({ user: "ops.admin", host: "node-1.example", port: 2222 });
    expect(parseNode("ssh://core@[fd00::5]:22")).toEqual({ user: "core", host: "fd00::5", port: 22 });
  });
  test.each([
    ["root@10.0.0.5", "is not an ssh URL; use ssh://USER@HOST[:PORT]"],
    ["ssh://10.0.0.5", "is not an ssh URL"],
    ["ssh://root:secret@10.0.0.5", 'has user "root:secret", which is not a login name'],
    ["ssh://-oProxyCommand=x@10.0.0.5", "which is not a login name"],
    ["ssh://root@host;id", "contains characters that are not allowed"],
    ["ssh://root@10.0.0.5:0", "port 0 must be an integer from 1 to 65535"],
    ["ssh://root@10.0.0.5/path", "is not an ssh URL"],
  ])("--node %s is refused: %s", (value, message) => {
    expect(() => parseNode(value)).toThrow(TargetError);
    expect(() => parseNode(value)).toThrow(message);
    expect(() => parseNode(value)).toThrow(`--node "${value}"`);
  });
  test("--registry is HOST[:PORT] as in image references", () => {
    expect(parseRegistry("Registry.Test:5000")).toEqual({ host: "registry.test", port: 5000 });
    expect(parseRegistry("registry.test")).toEqual({ host: "registry.test", port: 443 });
    expect(() => parseRegistry("https://registry.test")).toThrow('--registry "https://registry.test": host "https://registry.test" has a URL scheme; give only the host name');
    expect(() => parseRegistry("registry.test:")).toThrow("ends with ':' but has no port");
  });
  test("--image must be on --registry; normalised; tags and digests checked", () => {
    const reg = { host: "registry.test", port: 5000 };
    expect(parseImage("registry.test:5000/lab/demo:1", reg)).toBe("registry.test:5000/lab/demo:1");
    expect(parseImage("REGISTRY.test:5000/lab/demo", reg)).toBe("registry.test:5000/lab/demo");
    expect(parseImage(`registry.test:5000/lab/demo@sha256:${"a".repeat(64)}`, reg)).toBe(`registry.test:5000/lab/demo@sha256:${"a".repeat(64)}`);
    expect(() => parseImage("lab/demo:1", reg)).toThrow('--image "lab/demo:1" is on "lab", not on --registry registry.test:5000');
    expect(() => parseImage("demo", reg)).toThrow("names no registry (it would be pulled from docker.io, not registry.test:5000)");
    expect(() => parseImage("registry.test/lab/demo:1", reg)).toThrow('is on "registry.test", not on --registry registry.test:5000');
    expect(() => parseImage("registry.test:5000/Lab/demo:1", reg)).toThrow('has repository "Lab/demo"');
    expect(() => parseImage("registry.test:5000/lab/demo:$(id)", reg)).toThrow('has tag "$(id)"');
    expect(() => parseImage("registry.test:5000/lab/demo@sha256:xyz", reg)).toThrow('has digest "sha256:xyz"');
  });
});

describe("the command line: bad input and ssh failures exit 2", () => {
  test.each([
    [["--registry", "registry.test:5000"], "--node is required"],
    [["--node", "ssh://root@127.0.0.1", "--registry", "r.test:5000", "extra"], 'unexpected argument "extra"'],
    [["--node", "ssh://root@127.0.0.1"], "--registry is required"],
    [["--node", "root@127.0.0.1", "--registry", "r.test"], '--node "root@127.0.0.1" is not an ssh URL'],
    [["--node", "ssh://root@127.0.0.1", "--registry", "r.test:99999"], '--registry "r.test:99999": port 99999 must be an integer from 1 to 65535'],
    [["--node", "ssh://root@127.0.0.1", "--registry", "r.test:5000", "--image", "docker.io/library/x"], '--image "docker.io/library/x" is on "docker.io", not on --registry r.test:5000'],
    [["--node", "ssh://root@127.0.0.1", "--registry", "r.test", "--identity", "/nonexistent/id"], '--identity "/nonexistent/id": no such file'],
    [["--node", "ssh://root@127.0.0.1", "--registry", "r.test", "--known-hosts", "/etc"], '--known-hosts "/etc" is not a regular file'],
    [["--node", "ssh://root@127.0.0.1", "--registry", "r.test", "--json=yes"], "--json takes no value"],
  ])("%j → exit 2: %s", async (args, message) => {
    const r = await runCli(["doctor", ...args]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(message);
    expect(r.err).toContain("registry-trust doctor --node ssh://USER@HOST[:PORT]");
    expect(r.out).toBe("");
  });

  test("ssh runs in batch mode with the identity and only the given known_hosts, host key checking strict", () => {
    expect(sshArgs({ user: "ops", host: "fd00::5", port: 2222 }, "/keys/id", "/keys/known_hosts")).toEqual([
      "-p", "2222", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
      "-i", "/keys/id", "-o", "IdentitiesOnly=yes",
      "-o", "UserKnownHostsFile=/keys/known_hosts", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
      "--", "ops@fd00::5", "sh -s",
    ]);
    expect(sshArgs({ user: "root", host: "n1", port: 22 })).toEqual(["-p", "22", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "--", "root@n1", "sh -s"]);
  });

  test("a node nobody answers on (real ssh, a closed loopback port): exit 2 naming the node", async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createNetServer().listen(0, "127.0.0.1", () => {
        const port = (s.address() as AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    const r = await runCli(["doctor", "--node", `ssh://root@127.0.0.1:${closed}`, "--known-hosts", pki.file("known_hosts", ""), "--registry", "r.test:5000"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`registry-trust doctor: cannot connect to ssh://root@127.0.0.1:${closed} with ssh:`);
    expect(r.err).toContain("Connection refused");
    expect(r.out).toBe("");
  });
});

describe("the probe script", () => {
  const target = (port: number, image?: string): DoctorTarget => ({ node: { user: "root", host: "n", port: 22 }, registry: { host: "127.0.0.1", port }, image });

  test.each([
    ["with an image", target(5000, "127.0.0.1:5000/lab/demo:1")],
    ["without", target(443)],
    ["IPv6 registry", { ...target(5000), registry: { host: "fd00::1", port: 5000 } }],
  ])("passes shellcheck as POSIX sh (%s)", (_n, t) => {
    const file = join(tmp, "probe.sh");
    writeFileSync(file, renderProbeScript(t));
    expect(spawnSync("shellcheck", ["-s", "sh", file], { encoding: "utf8" }).stdout).toBe("");
  });

  test("writes nothing: output goes only to stdout or /dev/null, and no command that changes files appears", () => {
    const script = renderProbeScript(target(5000, "127.0.0.1:5000/lab/demo:1"));
    const code = script.split("\n").filter((l) => !/^\s*#/.test(l)).join("\n");
    const redirects = [...code.matchAll(/\d?>>?\s*(&\d|[^\s;)"]+)/g)].map((m) => m[1]);
    expect(redirects.filter((r) => r !== "/dev/null" && r !== "&1" && r !== "&2")).toEqual([]);
    expect(code).not.toMatch(/\b(rm|mv|cp|mkdir|touch|tee|install|chmod|chown|ln|truncate|dd|systemctl|update-ca-certificates|update-ca-trust)\s/);
    expect(code).not.toMatch(/sed\s+-i/);
  });

  test("run by dash on this machine: a complete dump and the served chain as the node sees it", async () => {
    const root = pki.root("Probe Root");
    const leaf = pki.leaf(root, ["IP:127.0.0.1"]);
    const server: Server = createServer({ cert: leaf.certPem + root.certPem, key: leaf.keyPem }, (s) => s.end());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      const before = Date.now();
      // Async: the TLS server in this process must keep answering while the probe runs.
      const out = await new Promise<string>((resolve, reject) => {
        const child = spawn("dash", ["-s"], { cwd: tmp, env: { PATH: process.env.PATH } });
        let stdout = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d));
        child.on("error", reject);
        child.on("close", () => resolve(stdout));
        child.stdin.end(renderProbeScript(target(port)));
      });
      const dump = parseDump(out);
      expect(dump.now.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
      expect(dump.commands.get("openssl")).toMatch(/\/openssl$/);
      expect(dump.files.get("/etc/os-release")?.content?.toString()).toMatch(/^ID=/m);
      expect(dump.chain?.rc).toBe(0);
      expect(chainFromSClient(dump.chain!.output).map((c) => c.subject)).toEqual(["CN=registry.test", "CN=Probe Root"]);
      expect(dump.pull).toBeUndefined();
      for (const f of dump.files.values()) expect(f.content?.toString() ?? "").not.toContain("PRIVATE KEY");
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  test("credentials in registry configuration are blanked before they leave the node", () => {
    const script = renderProbeScript(target(5000));
    const redact = script.split("\n").find((l) => l.startsWith("redact() {"))!;
    const file = join(tmp, "registries.yaml");
    writeFileSync(file, 'configs:\n  "r.test:5000":\n    auth:\n      username: puller\n      password: hunter2\n      auth: cHVsbGVyOmh1bnRlcjI=\n      identity_token: tok\n    tls:\n      ca_file: /etc/ca.crt\n');
    const out = execFileSync("dash", ["-c", `${redact}\nredact "$1"`, "redact", file], { encoding: "utf8" });
    expect(out).toBe('configs:\n  "r.test:5000":\n    auth:\n      username: puller\n      password: "redacted"\n      auth: "redacted"\n      identity_token: "redacted"\n    tls:\n      ca_file: /etc/ca.crt\n');
  });
});
