/**
 * NodeTrust under the real Pulumi engine: `pulumi up` through the Automation API (inline program) of one
 * @pulumi/command remote.Command per lab node, over SSH into real nodes with their own containerd, checked
 * with CRI pulls (the kubelet's path). Needs root and the lab's packages (like test/lab) and the built
 * engine (`npm run pulumi:binaries`). Without a Pulumi install the command plugin is registry-trust's own
 * stand-in (standins/pulumi-resource-command, docs/pulumi-engine.md); with one, the upstream plugin runs this.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EngineEvent, Stack } from "@pulumi/pulumi/automation";
import { NodeTrust, NodeTrustArgs } from "../../components/node-trust";
import { NodeConfig, RegistryEndpoint } from "../../core/config/model";
import { assembleBundle, bundleHash } from "../../core/x509/bundle";
import { startLab, REGISTRY_HOST, type Lab } from "../../lab/lab";
import { LabNode } from "../../lab/node";
import { createCa } from "../../lab/pki";
import { Engine, inlineStack, offlineEngine, runPulumi } from "./engine";
import { runNodeTrustUp } from "./node-trust-runner";

jest.setTimeout(180_000);

const PROJECT = "rt-node-trust-engine";
const X509_UNKNOWN_AUTHORITY = "x509: certificate signed by unknown authority";
const COMMAND_TYPE = "command:remote:Command";

let engine: Engine;
let lab: Lab;
let privateKey: string;
let registries: RegistryEndpoint[];
let bundleA: string;
let bundleB: string;
const output: string[] = [];
const events: EngineEvent[] = [];

beforeAll(async () => {
  engine = await offlineEngine(["command"]);
  lab = await startLab({ nodes: 2 });
  privateKey = fs.readFileSync(lab.nodes[0].privateKeyPath, "utf8");
  registries = [{ host: REGISTRY_HOST, port: lab.registry.port, mirrorOf: [] }];
  bundleA = assembleBundle([lab.registry.caPem]).pem;
  // A second CA next to the registry's: the bundle a CA rotation would push.
  const next = await createCa(fs.mkdtempSync(path.join(os.tmpdir(), "rt-next-ca-")), "registry-trust e2e next CA");
  bundleB = assembleBundle([lab.registry.caPem, next.pem]).pem;
});
afterAll(async () => {
  await lab?.stop();
  engine?.cleanup();
});

function nodeConfig(node: LabNode, hostKey = node.hostKey): NodeConfig {
  return { name: node.name, host: node.host, port: node.port, user: node.user, os: "auto", runtimes: ["containerd"], hostKey };
}

const stackFor = (name: string, program: () => Promise<Record<string, unknown>>): Promise<Stack> => inlineStack(engine, PROJECT, name, program);

const opts = { color: "never" as const, onOutput: (s: string) => output.push(s), onEvent: (e: EngineEvent) => events.push(e) };

function trustArgs(nodes: NodeConfig[], bundle: string, extra: Partial<NodeTrustArgs> = {}): NodeTrustArgs {
  return { nodes, registries, bundlePem: bundle, bundleHash: bundleHash(bundle), sshPrivateKey: privateKey, dialErrorLimit: 2, perDialTimeoutSeconds: 5, ...extra };
}

function trustProgram(nodes: () => NodeConfig[], bundle: () => string, extra: () => Partial<NodeTrustArgs> = () => ({})) {
  return async () => {
    const trust = new NodeTrust("trust", trustArgs(nodes(), bundle(), extra()));
    return { results: trust.results };
  };
}

/**
 * An `up` expected to fail, as a program directory (node-trust-runner.ts): a failure on the program's side (the
 * SSH pre-check) would hang an inline program's `up`. Returns the error text.
 */
async function failingUp(stackName: string, args: NodeTrustArgs): Promise<string> {
  const outcome = await runNodeTrustUp(engine, stackName, args);
  if (process.env.E2E_DEBUG) console.log(outcome.error);
  expect(outcome.error).toBeDefined();
  return outcome.error!;
}

/**
 * Every file the install touches on a node, by content: "before" must come back after destroy. Symlinks count
 * by their target's content (-xtype f): update-ca-certificates may turn a copied PEM in /etc/ssl/certs into a
 * link to the same certificate, which is the same trust.
 */
async function trustFiles(node: LabNode): Promise<string> {
  const r = await node.exec(
    "find /etc/ssl/certs /usr/local/share/ca-certificates /etc/containerd /etc/ca-certificates.conf -xtype f -exec sha256sum {} + | sort -k2",
  );
  expect(r.code).toBe(0);
  return r.stdout;
}

async function pull(node: LabNode): Promise<string> {
  const cri = node.cri();
  try {
    return await cri.pullImage(lab.registry.image).then(() => "pulled", (e: Error) => e.message);
  } finally {
    cri.close();
  }
}

/** The step ops (create, update, delete, replace, ...) the engine reported for the node commands since `from`. */
function commandOps(from: number): string[] {
  return events
    .slice(from)
    .map((e) => e.resourcePreEvent?.metadata)
    .filter((m) => m?.type === COMMAND_TYPE)
    .map((m) => String(m!.op));
}

describe("NodeTrust on a lab node through the real engine", () => {
  let stack: Stack;
  let node: LabNode;
  let before: string;
  const bundle = { pem: "" };

  beforeAll(async () => {
    node = lab.nodes[0];
    bundle.pem = bundleA;
    stack = await stackFor("lab", trustProgram(() => [nodeConfig(node)], () => bundle.pem));
    before = await trustFiles(node);
  });

  it("up installs the bundle: the node reports it and a CRI pull through its containerd succeeds", async () => {
    expect(await pull(node)).toContain(X509_UNKNOWN_AUTHORITY);
    const res = await stack.up(opts);
    expect(res.summary.result).toBe("succeeded");
    expect(res.summary.resourceChanges).toEqual({ create: 3 }); // stack, component, one command
    const [report] = res.outputs.results.value as Array<{ node: string; action: string; bundleSha256: string }>;
    expect(report).toMatchObject({ node: node.name, action: "install", bundleSha256: bundleHash(bundleA) });
    expect(await pull(node)).toBe("pulled");
  });

  it("a second up changes nothing: preview shows only `same`", async () => {
    const preview = await stack.preview(opts);
    expect(Object.keys(preview.changeSummary)).toEqual(["same"]);
    const res = await stack.up(opts);
    expect(res.summary.resourceChanges).toEqual({ same: 3 });
  });

  it("a new bundle is an in-place update: no replace, no remove in between, the node trusts throughout", async () => {
    bundle.pem = bundleB;
    const from = events.length;
    const results: string[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        results.push(await pull(node));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const res = await stack.up(opts).finally(async () => {
      polling = false;
      await poller;
    });
    expect(res.summary.resourceChanges).toEqual({ same: 2, update: 1 });
    expect(commandOps(from)).toEqual(["update"]);
    const [report] = res.outputs.results.value as Array<{ action: string; bundleSha256: string }>;
    expect(report).toMatchObject({ action: "install", bundleSha256: bundleHash(bundleB) });
    expect(results.length).toBeGreaterThan(0);
    expect(results.filter((r) => r !== "pulled")).toEqual([]);
  });

  it("keeps the SSH private key out of the state file and the engine's output (only in Pulumi's secret encoding)", async () => {
    const keyBody = privateKey.split("\n").filter((l) => l && !l.startsWith("-----"));
    const raw = fs.readFileSync(path.join(engine.backendDir, ".pulumi", "stacks", PROJECT, "lab.json"), "utf8");
    const exported = runPulumi(engine, ["stack", "export", "--stack", "lab"], stack.workspace.workDir);
    const logs = output.join("");
    for (const text of [raw, exported, logs]) {
      expect(text).not.toMatch(/PRIVATE KEY/);
      for (const line of keyBody) expect(text).not.toContain(line);
    }
    // The connection (which holds the key) is stored as a passphrase ciphertext under the secret signature.
    const cmd = JSON.parse(raw).checkpoint.latest.resources.find((r: { type: string }) => r.type === COMMAND_TYPE);
    expect(cmd.outputs.connection).toMatchObject({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270" });
    expect(cmd.inputs.connection).toMatchObject({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270" });
    // ... and decrypts to the key (the round trip works).
    expect(JSON.stringify((await stack.exportStack()).deployment)).toContain(keyBody[0]);
  });

  it("destroy runs the remove script: the node's trust files are back to before", async () => {
    const from = events.length;
    const res = await stack.destroy(opts);
    expect(res.summary.resourceChanges).toEqual({ delete: 3 });
    expect(commandOps(from)).toEqual(["delete"]);
    expect(await trustFiles(node)).toBe(before);
    expect(await pull(node)).toContain(X509_UNKNOWN_AUTHORITY);
    await stack.workspace.removeStack("lab");
  });
});

test.each([
  ["the program's pre-check", 10],
  ["the command plugin itself (pre-check off)", 0],
])("a wrong pinned hostKey fails that node, named, and touches nothing: caught by %s", async (_, sshPrecheckSeconds) => {
  const [other, node] = lab.nodes;
  const before = await trustFiles(node);
  // node-2 pinned with node-1's key: what an impostor at node-2's address would present.
  const name = `wrong-key-${sshPrecheckSeconds}`;
  const err = await failingUp(name, trustArgs([nodeConfig(node, other.hostKey)], bundleA, { sshPrecheckSeconds }));
  // Either the pre-check's message or the failed resource (trust-<node>) names the node.
  expect(err).toContain(node.name);
  expect(await trustFiles(node)).toBe(before);
  expect(await pull(node)).toContain(X509_UNKNOWN_AUTHORITY);
});

test("a node behind a bastion (connection.proxy): a dead bastion fails the node, a live one carries install and remove", async () => {
  const [bastion, node] = lab.nodes;
  const before = await trustFiles(node);
  const proxied = (port: number): NodeConfig[] => [{ ...nodeConfig(node), proxy: { host: bastion.host, port, user: "root", hostKey: bastion.hostKey } }];
  // A bastion address where nothing listens fails the node, by the pre-check and by the plugin alone.
  for (const sshPrecheckSeconds of [10, 0]) {
    const err = await failingUp("proxy-dead", trustArgs(proxied(1), bundleA, { sshPrecheckSeconds }));
    expect(err).toContain(node.name);
    expect(await trustFiles(node)).toBe(before);
  }

  const stack = await stackFor("proxy", trustProgram(() => proxied(bastion.port), () => bundleA));
  const res = await stack.up(opts);
  const [report] = res.outputs.results.value as Array<{ node: string; bundleSha256: string }>;
  expect(report).toMatchObject({ node: node.name, bundleSha256: bundleHash(bundleA) });
  expect(await pull(node)).toBe("pulled");
  await stack.destroy(opts);
  expect(await trustFiles(node)).toBe(before);
  await stack.workspace.removeStack("proxy");
});
