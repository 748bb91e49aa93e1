/**
 * The program-side SSH pre-check (core/ssh) against a real OpenSSH sshd with host keys from ssh-keygen
 * (fingerprints as `ssh-keygen -lf` prints them, not as our code computes them), and against the hosts the
 * command plugin would hang on: one that accepts TCP and never speaks, one that sends its banner and stalls.
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { parseHostKey } from "../../core/ssh/host-key";
import { checkAgentSocket, precheckHops, PrecheckTarget } from "../../core/ssh/precheck";
import { ProbeError, ProbeOptions, probeHostKey } from "../../core/ssh/transport";
import { freePort } from "../../lab/daemon";

const SSHD = "/usr/sbin/sshd";
const haveSshd = fs.existsSync(SSHD) && process.getuid?.() === 0;
const HOST = "127.0.0.71";
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-ssh-precheck-"));
const servers: net.Server[] = [];
const daemons: ChildProcess[] = [];
const accepted = new Set<net.Socket>();

afterAll(async () => {
  for (const d of daemons) d.kill();
  for (const c of accepted) c.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A TCP server on loopback whose connections get `onConnection`; resolves to its port. */
async function server(onConnection: (s: net.Socket) => void): Promise<number> {
  const s = net.createServer((c) => {
    accepted.add(c);
    onConnection(c);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return (s.address() as net.AddressInfo).port;
}

interface Sshd { port: number; keys: Record<string, { line: string; fingerprint: string }> }

/** sshd with the given host key types, each made by ssh-keygen; waits until it answers with a banner. */
async function startSshd(name: string, types: string[]): Promise<Sshd> {
  const keys: Sshd["keys"] = {};
  const lines: string[] = [];
  for (const t of types) {
    const file = path.join(dir, `${name}_${t}`);
    execFileSync("ssh-keygen", ["-q", "-t", t, "-N", "", "-f", file]);
    const [type, blob] = fs.readFileSync(`${file}.pub`, "utf8").trim().split(/\s+/);
    const fingerprint = execFileSync("ssh-keygen", ["-lf", `${file}.pub`], { encoding: "utf8" }).split(" ")[1];
    keys[t] = { line: `${type} ${blob}`, fingerprint };
    lines.push(`HostKey ${file}`);
  }
  const port = await freePort(HOST);
  const config = path.join(dir, `${name}_sshd_config`);
  fs.writeFileSync(config, [`ListenAddress ${HOST}:${port}`, ...lines, "PidFile none", "UsePAM no", "LogLevel ERROR", ""].join("\n"));
  fs.mkdirSync("/run/sshd", { recursive: true });
  const d = spawn(SSHD, ["-D", "-e", "-f", config], { stdio: "ignore" });
  daemons.push(d);
  // Ready when it answers: poll the condition itself.
  for (let i = 0; ; i++) {
    try {
      await probeHostKey({ host: HOST, port, timeoutMs: 2000, hostKeyAlgorithms: ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512"] });
      return { port, keys };
    } catch (e) {
      if (i > 100 || d.exitCode !== null) throw new Error(`sshd did not start: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const target = (name: string, port: number, hostKey?: string, host = HOST): PrecheckTarget => ({ name, role: "node", hop: { host, port, hostKey } });

(haveSshd ? describe : describe.skip)("against OpenSSH's sshd", () => {
  let all: Sshd;
  let rsaOnly: Sshd;
  beforeAll(async () => {
    all = await startSshd("all", ["ed25519", "ecdsa", "rsa"]);
    rsaOnly = await startSshd("rsa", ["rsa"]);
  });

  test.each(["ed25519", "ecdsa", "rsa"])("the probe sees the %s host key sshd proves it holds (fingerprint as ssh-keygen prints it)", async (t) => {
    const algorithm = { ed25519: "ssh-ed25519", ecdsa: "ecdsa-sha2-nistp256", rsa: "rsa-sha2-512" }[t]!;
    const seen = await probeHostKey({ host: HOST, port: all.port, timeoutMs: 5000, hostKeyAlgorithms: [algorithm] });
    expect(seen.algorithm).toBe(algorithm);
    expect(seen.fingerprint).toBe(all.keys[t].fingerprint);
    expect(seen.banner).toMatch(/^SSH-2\.0-OpenSSH_/);
  });

  test("pinned ed25519 and ECDSA keys pass, so does an unpinned host; another host's key is a mismatch naming both fingerprints", async () => {
    const failures = await precheckHops([
      target("good-ed25519", all.port, all.keys.ed25519.line),
      target("good-ecdsa", all.port, all.keys.ecdsa.line),
      target("unpinned: any key, RSA included", rsaOnly.port),
    ], { timeoutMs: 5000 });
    expect(failures).toEqual([]);
    const other = await startSshd("other", ["ed25519"]);
    const [f] = await precheckHops([target("wrong", other.port, all.keys.ed25519.line)], { timeoutMs: 5000 });
    expect(f.target.name).toBe("wrong");
    expect(f.message).toContain(other.keys.ed25519.fingerprint);
    expect(f.message).toContain(all.keys.ed25519.fingerprint);
  });

  test("a host with only an RSA host key fails an ed25519 pin: no common host key algorithm, as in the plugin", async () => {
    const [f] = await precheckHops([target("rsa-node", rsaOnly.port, all.keys.ed25519.line)], { timeoutMs: 5000 });
    expect(f.target.name).toBe("rsa-node");
    expect(f.message).toMatch(/rsa-sha2-512/);
    expect(f.message).toMatch(/ssh-ed25519/);
  });
});

describe("hosts that never finish the handshake fail within the deadline, naming the stage", () => {
  test("accepts TCP and never writes: the banner stage", async () => {
    const port = await server(() => undefined);
    await expect(probeHostKey({ host: "127.0.0.1", port, timeoutMs: 300, hostKeyAlgorithms: ["ssh-ed25519"] })).rejects.toMatchObject({ stage: "banner" });
  });

  test("sends a banner, then stalls: the key exchange stage", async () => {
    const port = await server((s) => s.write("SSH-2.0-OpenSSH_9.9 stall\r\n"));
    const err = await probeHostKey({ host: "127.0.0.1", port, timeoutMs: 300, hostKeyAlgorithms: ["ssh-ed25519"] }).catch((e: ProbeError) => e);
    expect(err).toBeInstanceOf(ProbeError);
    expect((err as ProbeError).stage).toBe("key exchange");
  });

  test("nothing listens: the connect stage; something else answers: not SSH", async () => {
    const closed = await freePort("127.0.0.1");
    await expect(probeHostKey({ host: "127.0.0.1", port: closed, timeoutMs: 2000, hostKeyAlgorithms: ["ssh-ed25519"] })).rejects.toMatchObject({ stage: "connect" });
    const http = await server((s) => s.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
    await expect(probeHostKey({ host: "127.0.0.1", port: http, timeoutMs: 2000, hostKeyAlgorithms: ["ssh-ed25519"] })).rejects.toMatchObject({ stage: "banner" });
  });

  test("precheckHops names every failed target and its bastion role", async () => {
    const silent = await server(() => undefined);
    const failures = await precheckHops([
      { name: "node a", role: "node", hop: { host: "127.0.0.1", port: silent } },
      { name: "node b", role: "bastion", hop: { host: "127.0.0.1", port: silent } },
    ], { timeoutMs: 300 });
    expect(failures.map((f) => [f.target.name, f.target.role])).toEqual([["node a", "node"], ["node b", "bastion"]]);
    expect(failures[0].message).toMatch(/\(banner\)$/);
  });
});

describe("precheckHops runs bounded and checks a shared bastion once", () => {
  test("at most `concurrency` probes at a time; one probe per distinct hop", async () => {
    let running = 0;
    let peak = 0;
    const seen: string[] = [];
    const probe = async (o: ProbeOptions) => {
      seen.push(`${o.host}:${o.port}`);
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setImmediate(r));
      running--;
      throw new ProbeError("banner", "silent");
    };
    const targets = Array.from({ length: 20 }, (_, i) => target(`n${i}`, 2200 + i, undefined, "127.0.0.1"));
    const viaBastion = Array.from({ length: 5 }, (_, i): PrecheckTarget => ({ name: `b${i}`, role: "bastion", hop: { host: "127.0.0.2", port: 22 } }));
    const failures = await precheckHops([...targets, ...viaBastion], { timeoutMs: 1000, concurrency: 4, probe });
    expect(peak).toBe(4);
    expect(seen).toHaveLength(21);
    expect(failures).toHaveLength(25);
  });

  test("a pin that cannot be used fails that target without a probe", async () => {
    const rsa = fs.readFileSync(path.join(__dirname, "..", "fixtures", "ssh", "host_rsa.pub"), "utf8").trim();
    const probe = jest.fn();
    const [f] = await precheckHops([target("r", 22, rsa, "127.0.0.1")], { timeoutMs: 1000, probe });
    expect(probe).not.toHaveBeenCalled();
    expect(f.message).toMatch(/RSA/);
  });
});

describe("host key pins", () => {
  test("fingerprints of ssh-keygen's own keys match `ssh-keygen -lf` (test/fixtures/ssh/fingerprints.txt)", () => {
    const fixtures = path.join(__dirname, "..", "fixtures", "ssh");
    const expected = fs.readFileSync(path.join(fixtures, "fingerprints.txt"), "utf8").trim().split("\n").map((l) => l.split(" ")[1]);
    expect(parseHostKey(fs.readFileSync(path.join(fixtures, "host_ed25519.pub"), "utf8")).fingerprint).toBe(expected[0]);
    expect(parseHostKey(fs.readFileSync(path.join(fixtures, "host_ecdsa.pub"), "utf8")).fingerprint).toBe(expected[1]);
    expect(() => parseHostKey(fs.readFileSync(path.join(fixtures, "host_rsa.pub"), "utf8"))).toThrow(/RSA host key.*OpenSSH 8\.8/);
  });
});

describe("the agent socket the plugin would dial", () => {
  test("a missing path is unusable; a listening socket is fine", async () => {
    expect(await checkAgentSocket(path.join(dir, "gone.sock"), 1000)).toMatch(/gone\.sock is unusable \(ENOENT\)/);
    const sock = path.join(dir, "agent.sock");
    const s = net.createServer((c) => c.end());
    servers.push(s);
    await new Promise<void>((r) => s.listen(sock, r));
    expect(await checkAgentSocket(sock, 1000)).toBeUndefined();
  });
});
