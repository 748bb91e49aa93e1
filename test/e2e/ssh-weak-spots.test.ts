/**
 * The command plugin's weak spots (upstream pulumi-command 1.2.1, which ours follows: docs/pulumi-engine.md)
 * and how NodeTrust defends against them, under the real engine with a real lab node next to the bad one.
 * Each case must end in a failure that names the bad node, with nothing run on the healthy node, within the
 * jest timeout: without the defences, the silent host, the hung bastion and the silent node behind a bastion
 * would hang forever (the plugin bounds neither the SSH handshake nor anything through a bastion), and an RSA
 * pin or a stale agent socket would fail every run. Needs root, the lab's packages and the built engine, like node-trust-engine.test.ts.
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as command from "@pulumi/command";
import { NodeTrustArgs } from "../../components/node-trust";
import { NodeConfig, RegistryEndpoint } from "../../core/config/model";
import { assembleBundle, bundleHash } from "../../core/x509/bundle";
import { REGISTRY_HOST, startLab, type Lab } from "../../lab/lab";
import { LabNode } from "../../lab/node";
import { Engine, inlineStack, offlineEngine } from "./engine";
import { runNodeTrustUp } from "./node-trust-runner";
import { freePort } from "../../lab/daemon";

// The bound every case must fail within.
jest.setTimeout(90_000);

const PROJECT = "rt-ssh-weak-spots";

let engine: Engine;
let lab: Lab;
let healthy: LabNode;
let privateKey: string;
let registries: RegistryEndpoint[];
let bundle: string;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rt-ssh-weak-"));
const servers: net.Server[] = [];
const accepted = new Set<net.Socket>();
const daemons: ChildProcess[] = [];

beforeAll(async () => {
  engine = await offlineEngine(["command"]);
  lab = await startLab({ nodes: 1 });
  healthy = lab.nodes[0];
  privateKey = fs.readFileSync(healthy.privateKeyPath, "utf8");
  registries = [{ host: REGISTRY_HOST, port: lab.registry.port, mirrorOf: [] }];
  bundle = assembleBundle([lab.registry.caPem]).pem;
}, 300_000);
afterAll(async () => {
  for (const d of daemons) d.kill();
  for (const c of accepted) c.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await lab?.stop();
  engine?.cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A host that accepts TCP on loopback and never writes a byte. */
async function silentHost(): Promise<number> {
  const s = net.createServer((c) => accepted.add(c));
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return (s.address() as net.AddressInfo).port;
}

/** An sshd (as lab/node.ts starts them) with only an RSA host key, accepting the lab's client key. */
async function rsaOnlySshd(host: string): Promise<{ port: number; hostKey: string }> {
  const key = path.join(tmp, `ssh_host_rsa_key-${host}`);
  execFileSync("ssh-keygen", ["-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", key]);
  const port = await freePort(host);
  const config = path.join(tmp, `sshd_config-${host}`);
  fs.writeFileSync(config, [
    `ListenAddress ${host}:${port}`, `HostKey ${key}`, "PidFile none",
    `AuthorizedKeysFile ${healthy.privateKeyPath}.pub`, "PermitRootLogin prohibit-password", "PasswordAuthentication no",
    "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "LogLevel ERROR", "",
  ].join("\n"));
  fs.mkdirSync("/run/sshd", { recursive: true });
  const d = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config], { stdio: "ignore" });
  daemons.push(d);
  // Ready when it accepts a connection (a condition, not a sleep).
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((r) => net.connect({ host, port }).on("connect", function (this: net.Socket) { this.destroy(); r(true); }).on("error", () => r(false)));
    if (ok) break;
    if (i > 200 || d.exitCode !== null) throw new Error("the RSA-only sshd did not start");
    await new Promise((r) => setTimeout(r, 25));
  }
  const [type, blob] = fs.readFileSync(`${key}.pub`, "utf8").trim().split(/\s+/);
  return { port, hostKey: `${type} ${blob}` };
}

const healthyConfig = (): NodeConfig => ({ name: healthy.name, host: healthy.host, port: healthy.port, user: healthy.user, os: "auto", runtimes: ["containerd"], hostKey: healthy.hostKey });

/** Every trust file on the healthy node, by content: must not change when the run fails. */
async function trustFiles(node: LabNode): Promise<string> {
  const r = await node.exec("find /etc/ssl/certs /usr/local/share/ca-certificates /etc/containerd /etc/ca-certificates.conf -xtype f -exec sha256sum {} + | sort -k2");
  expect(r.code).toBe(0);
  return r.stdout;
}

/**
 * Runs `pulumi up` of NodeTrust over the healthy node and `bad` (or only the healthy node) as a program directory
 * (node-trust-runner.ts), and expects it to fail naming `named`, with no Command run anywhere and the healthy
 * node's trust files unchanged.
 */
async function expectRefused(stackName: string, bad: NodeConfig | undefined, named: string, extra: Partial<NodeTrustArgs> = {}): Promise<string> {
  const before = await trustFiles(healthy);
  const outcome = await runNodeTrustUp(engine, stackName, {
    nodes: bad ? [healthyConfig(), bad] : [healthyConfig()], registries, bundlePem: bundle, bundleHash: bundleHash(bundle), sshPrivateKey: privateKey,
    dialErrorLimit: 2, perDialTimeoutSeconds: 5, ...extra,
  });
  if (process.env.E2E_DEBUG) console.log(outcome.error);
  expect(outcome.error).toBeDefined();
  expect(outcome.error).toContain(named);
  // With the pre-check on, no Command even reaches the engine; with it off, the plugin's failed create must
  // have run nothing (the trust files below).
  if (extra.sshPrecheckSeconds !== 0) expect(outcome.attempted).toEqual([]);
  expect(await trustFiles(healthy)).toBe(before);
  return outcome.error!;
}

describe("lab cases: each fails naming the node, touching nothing, within the jest timeout", () => {
  test("a node with only an RSA host key, pinned: refused before anything runs (the plugin would offer only ssh-rsa)", async () => {
    const rsa = await rsaOnlySshd("127.0.0.81");
    await expectRefused("rsa-only", { name: "rsa-only", host: "127.0.0.81", port: rsa.port, user: "root", os: "auto", runtimes: ["containerd"], hostKey: rsa.hostKey }, "rsa-only");
  });

  test("a host that accepts TCP and never answers: the pre-check fails it", async () => {
    const port = await silentHost();
    await expectRefused("silent", { name: "silent", host: "127.0.0.1", port, user: "root", os: "auto", runtimes: ["containerd"], hostKey: healthy.hostKey }, "silent");
  });

  test("a bastion that hangs: the pre-check fails the node behind it", async () => {
    const port = await silentHost();
    await expectRefused("hung-bastion", {
      name: "behind-hung-bastion", host: healthy.host, port: healthy.port, user: "root", os: "auto", runtimes: ["containerd"], hostKey: healthy.hostKey,
      proxy: { host: "127.0.0.1", port, user: "root", hostKey: healthy.hostKey },
    }, "behind-hung-bastion");
  });

  test("a node behind a healthy bastion that accepts the tunnel and never answers: the pre-check fails it through the bastion", async () => {
    // Upstream opens the tunnel and waits for the node's banner without a bound: this run would hang for good.
    const port = await silentHost();
    const err = await expectRefused("hung-behind-bastion", {
      name: "silent-behind-bastion", host: "127.0.0.1", port, user: "root", os: "auto", runtimes: ["containerd"], hostKey: healthy.hostKey,
      proxy: { host: healthy.host, port: healthy.port, user: "root", hostKey: healthy.hostKey },
    }, "silent-behind-bastion");
    expect(err).toContain(`127.0.0.1:${port} through its bastion ${healthy.host}:${healthy.port}`);
  });

  describe("a stale agent socket (SSH_AUTH_SOCK pointing at a missing path)", () => {
    const saved = process.env.SSH_AUTH_SOCK;
    // The program runs in this process and the engine (with the plugin) inherits its environment.
    beforeEach(() => (process.env.SSH_AUTH_SOCK = path.join(tmp, "agent-gone.sock")));
    afterEach(() => (saved === undefined ? delete process.env.SSH_AUTH_SOCK : (process.env.SSH_AUTH_SOCK = saved)));

    test.each([
      ["by the program's pre-check", 10],
      ["by the command plugin itself, before it dials (pre-check off), as upstream", 0],
    ])("fails the node even with sshPrivateKey: %s", async (_, sshPrecheckSeconds) => {
      const err = await expectRefused(`stale-agent-${sshPrecheckSeconds}`, undefined, healthy.name, { sshPrecheckSeconds });
      // Both the pre-check and the plugin's own failure ("dial unix PATH: …") name the socket.
      expect(err).toContain("agent-gone.sock");
    });
  });
});

describe("the plugin against an RSA-only host, without NodeTrust: upstream's host key algorithm choice", () => {
  let rsa: { port: number; hostKey: string };
  const stackOf = (name: string, hostKey?: string) => inlineStack(engine, PROJECT, name, async () => {
    const cmd = new command.remote.Command("probe", {
      connection: { host: "127.0.0.82", port: rsa.port, user: "root", privateKey, dialErrorLimit: 0, perDialTimeout: 5, ...(hostKey ? { hostKey } : {}) },
      create: "echo reached",
    });
    return { stdout: cmd.stdout };
  });
  beforeAll(async () => {
    rsa = await rsaOnlySshd("127.0.0.82");
  });

  test("the RSA key pinned: the plugin offers only ssh-rsa (SHA-1) and OpenSSH refuses it", async () => {
    const stack = await stackOf("rsa-pinned", rsa.hostKey);
    const err = await stack.up({ color: "never" }).then(() => "succeeded", (e: Error) => String(e));
    expect(err).not.toBe("succeeded");
    // golang.org/x/crypto/ssh's words, the same in both plugins.
    expect(err).toMatch(/no common algorithm for host key/);
    await stack.destroy({ color: "never" });
    await stack.workspace.removeStack("rsa-pinned");
  });

  test("unpinned, the same host is reached (rsa-sha2-* negotiated): the pin, not the host, is the problem", async () => {
    const stack = await stackOf("rsa-unpinned");
    const res = await stack.up({ color: "never" });
    expect(res.outputs.stdout.value).toBe("reached");
    await stack.destroy({ color: "never" });
    await stack.workspace.removeStack("rsa-unpinned");
  });
});
