/**
 * The SSH pre-check through a bastion (core/ssh/precheck.ts with ssh2): a lab node (a real OpenSSH sshd) is
 * the bastion of another, as `connection.proxy` of the command plugin uses it. Given the private key the
 * plugin logs in with, the node behind the bastion is checked through a channel the bastion forwards: its
 * host key against its pin, and a node that accepts the channel but never speaks SSH fails within the
 * deadline, where the plugin would hang. Fingerprints are ssh-keygen's, not computed by the code under test.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { precheckHops, formatPrecheckFailures, type PrecheckTarget } from "../../core/ssh/precheck";
import { startLab, type Lab } from "../../lab/lab";
import type { LabNode } from "../../lab/node";

let lab: Lab;
let bastion: LabNode;
let node: LabNode;
let privateKey: string;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rt-bastion-"));
const servers: net.Server[] = [];
const accepted = new Set<net.Socket>();

beforeAll(async () => {
  lab = await startLab({ nodes: 2 });
  [bastion, node] = lab.nodes;
  privateKey = fs.readFileSync(bastion.privateKeyPath, "utf8");
}, 120_000);
afterAll(async () => {
  for (const c of accepted) c.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await lab?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
}, 30_000);

/** `ssh-keygen -lf` of a public key line: the fingerprint as OpenSSH prints it. */
const sshKeygenFingerprint = (line: string) => execFileSync("ssh-keygen", ["-lf", "-"], { input: line, encoding: "utf8" }).split(" ")[1];

/** A node behind the lab bastion, as NodeTrust describes one with `proxy`. */
const behindBastion = (name: string, host: string, port: number, hostKey?: string): PrecheckTarget => ({
  name, role: "bastion", hop: { host: bastion.host, port: bastion.port, hostKey: bastion.hostKey }, behind: { node: { host, port, hostKey }, user: "root" },
});

async function silentHost(): Promise<number> {
  const s = net.createServer((c) => accepted.add(c));
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return (s.address() as net.AddressInfo).port;
}

test("the node behind the bastion, pinned right: passes through the tunnel", async () => {
  expect(await precheckHops([behindBastion("node-2", node.host, node.port, node.hostKey)], { timeoutMs: 10_000, privateKey })).toEqual([]);
});

test("another node's key pinned for the node behind the bastion: a mismatch seen through the tunnel, naming both fingerprints", async () => {
  const [f] = await precheckHops([behindBastion("node-2", node.host, node.port, bastion.hostKey)], { timeoutMs: 10_000, privateKey });
  expect(f.throughBastion).toBe(true);
  expect(f.message).toContain(sshKeygenFingerprint(node.hostKey));
  expect(f.message).toContain(sshKeygenFingerprint(bastion.hostKey));
  expect(formatPrecheckFailures([f])).toContain(`node-2: ${node.host}:${node.port} through its bastion ${bastion.host}:${bastion.port}: host key mismatch`);
  // Without the private key only the bastion can be checked, and it is fine: the mismatch goes unseen.
  expect(await precheckHops([behindBastion("node-2", node.host, node.port, bastion.hostKey)], { timeoutMs: 10_000 })).toEqual([]);
});

test("a node behind the bastion that accepts the channel and never speaks SSH fails within the deadline", async () => {
  const port = await silentHost();
  const started = Date.now();
  const [f] = await precheckHops([behindBastion("silent", "127.0.0.1", port, node.hostKey)], { timeoutMs: 3_000, privateKey });
  expect(Date.now() - started).toBeLessThan(10_000);
  expect(f).toMatchObject({ throughBastion: true, target: { name: "silent" } });
  expect(f.message).toMatch(/\(banner\)$/);
});

test("nothing listens behind the bastion: the bastion's refusal to forward is the failure", async () => {
  const closed = await silentHost();
  await new Promise((r) => servers.pop()!.close(r));
  const [f] = await precheckHops([behindBastion("gone", "127.0.0.1", closed, node.hostKey)], { timeoutMs: 10_000, privateKey });
  expect(f.throughBastion).toBe(true);
  expect(f.message).toMatch(/^the bastion refused to forward to 127\.0\.0\.1:\d+/);
});

test("a key the bastion does not accept: the login fails, naming the user; the key is not in the message", async () => {
  const other = path.join(tmp, "other_ed25519");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", other]);
  const otherKey = fs.readFileSync(other, "utf8");
  const [f] = await precheckHops([behindBastion("node-2", node.host, node.port, node.hostKey)], { timeoutMs: 10_000, privateKey: otherKey });
  expect(f.message).toMatch(/^cannot log in to the bastion as root with the SSH private key/);
  expect(f.message).not.toContain(otherKey.split("\n")[1]);
});
