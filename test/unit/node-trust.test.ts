import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { NodeConfig, RegistryEndpoint } from "../../core/config/model";
import { NODE_REPORT_PREFIX, NodeReport } from "../../core/node/types";
import { join } from "node:path";
import { TestPki } from "../../lab/openssl-pki";
import { spawnSync } from "node:child_process";
import { gunzipSync } from "node:zlib";
import { REPO } from "../support/stack-files";
import { valueOf } from "../../lab/tls-mocks";

type MockArgs = pulumi.runtime.MockResourceArgs;
const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const COMMAND = "command:remote:Command";
const UNREACHABLE = "127.0.0.99";
/** A node whose report names another bundle than the one sent. */
const WRONG_BUNDLE = "127.0.0.66";
/** A node without curl and openssl: its TLS probes are reported unverified. */
const NO_TOOLS = "127.0.0.77";
/** A node whose report lacks one of the checks its script was rendered with. */
const SHORT_REPORT = "127.0.0.78";
/** What a node's script reports when every check passes (the probes through each trust location), as a node prints it. */
const DEBIAN_CHECKS = ["tls:registry.test:5000@/etc/ssl/certs/ca-certificates.crt", "tls:registry.test:5000@/etc/containerd/certs.d/registry.test:5000/ca.crt"];
const RHEL_CRIO_CHECKS = [
  "tls:registry.test:5000@/etc/pki/tls/certs/ca-bundle.crt", "tls:registry.test:5000@/etc/containerd/certs.d/registry.test:5000/ca.crt", "tls:registry.test:5000@/etc/containers/certs.d/registry.test:5000/ca.crt",
];

/**
 * The engine and the command provider are mocked: a Command "runs" by answering with a report line as a
 * node would print it, except on UNREACHABLE, where it fails the way the provider fails to dial.
 */
class CommandMocks implements pulumi.runtime.Mocks {
  readonly resources: MockArgs[] = [];

  newResource(args: MockArgs): { id: string; state: Record<string, unknown> } {
    this.resources.push(args);
    if (args.type !== COMMAND) return { id: `${args.name}-id`, state: args.inputs };
    const connection = args.inputs.connection[SECRET_SIG] ? args.inputs.connection.value : args.inputs.connection;
    if (connection.host === UNREACHABLE) throw new Error(`after 3 failed attempts: dial tcp ${UNREACHABLE}:22: connect: connection refused`);
    const sent = /sha256:([0-9a-f]{64})/.exec(args.inputs.create)![1];
    const report: NodeReport = {
      action: "install", os: "debian", changed: [`/etc/containerd/certs.d/registry.test:5000/ca.crt`], restarted: [],
      verified: connection.host === "127.0.0.13" ? RHEL_CRIO_CHECKS : DEBIAN_CHECKS, bundleSha256: connection.host === WRONG_BUNDLE ? "f".repeat(64) : sent,
    };
    return { id: `${args.name}-id`, state: { ...args.inputs, stdout: `installing\n${NODE_REPORT_PREFIX}${JSON.stringify(report)}`, stderr: "" } };
  }

  call(): Record<string, unknown> {
    return {};
  }

  commands(prefix: string): MockArgs[] {
    return this.resources.filter((r) => r.type === COMMAND && r.name.startsWith(`${prefix}-`)).sort((x, y) => x.name.localeCompare(y.name));
  }
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

const mocks = new CommandMocks();
pulumi.runtime.setMocks(mocks, "registry-trust", "unit", false);
const pki = new TestPki();
afterAll(() => pki.cleanup());

// Imported after setMocks so that the SDK is in mock mode when the component module loads.
import { NodeTrust, NodeTrustArgs } from "../../components/node-trust";
import { renderNodeScriptPair } from "../../core/node/render";

/** What the node's create line feeds to sh: base64, then gzip. */
const unpack = (packed: string): string => gunzipSync(Buffer.from(packed, "base64")).toString("utf8");

const root = pki.root("Node Trust Unit CA");
const bundlePem = root.certPem;
const registries: RegistryEndpoint[] = [{ host: "registry.test", port: 5000, mirrorOf: [] }];
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Rob3N0a2V5dGVzdGhvc3RrZXl0ZXN0aG9zdGs";
const BASTION_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJhc3Rpb25rZXliYXN0aW9ua2V5YmFzdGlvbmtleWI";
const PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nunit-test-key-material\n-----END OPENSSH PRIVATE KEY-----\n";
const node = (name: string, host: string, extra: Partial<NodeConfig> = {}): NodeConfig => ({
  name, host, port: 22, user: "root", os: "debian", runtimes: ["containerd"], ...extra,
});
const nodes = [
  node("a", "127.0.0.11", { hostKey: HOST_KEY }),
  node("b", "127.0.0.12", { port: 2222, user: "deploy", hostKey: HOST_KEY, proxy: { host: "bastion.test", port: 2200, user: "jump", hostKey: BASTION_KEY } }),
  node("c", "127.0.0.13", { os: "rhel", runtimes: ["containerd", "crio"] }),
];
// Node c is unpinned: a lab's opt-out (requireHostKeys false), as the dev stack's allowUnpinnedHostKeys gives.
const baseArgs: NodeTrustArgs = { nodes, registries, bundlePem, bundleHash: sha256(bundlePem), sshPrivateKey: PRIVATE_KEY, requireHostKeys: false };
const RSA_HOST_KEY = readFileSync(join(REPO, "test", "fixtures", "ssh", "host_rsa.pub"), "utf8").trim();

/**
 * A failed registration surfaces in mock mode as unhandled rejections, which would abort the jest worker:
 * such cases run in their own process, the way the engine runs a program, with the same mocks.
 */
function runIsolated(args: NodeTrustArgs): { registered: string[]; results: Record<string, unknown>; errors: string[] } {
  const program = pki.file(`isolated-${Math.random().toString(36).slice(2)}.ts`, `
    import * as pulumi from ${JSON.stringify(join(REPO, "node_modules", "@pulumi", "pulumi"))};
    const errors: string[] = [];
    process.on("unhandledRejection", (e) => errors.push(e instanceof Error ? e.message : String(e)));
    const registered: string[] = [];
    pulumi.runtime.setMocks({
      newResource(a: pulumi.runtime.MockResourceArgs) {
        if (a.type !== ${JSON.stringify(COMMAND)}) return { id: a.name, state: a.inputs };
        registered.push(a.name);
        const c = a.inputs.connection["${SECRET_SIG}"] ? a.inputs.connection.value : a.inputs.connection;
        if (c.host === ${JSON.stringify(UNREACHABLE)}) throw new Error("after 3 failed attempts: dial tcp " + c.host + ":22: connect: connection refused");
        const sent = /sha256:([0-9a-f]{64})/.exec(a.inputs.create)![1];
        const all = ${JSON.stringify(DEBIAN_CHECKS)};
        const verified = c.host === ${JSON.stringify(NO_TOOLS)} ? [] : c.host === ${JSON.stringify(SHORT_REPORT)} ? all.slice(1) : all;
        const unverified = c.host === ${JSON.stringify(NO_TOOLS)} ? all : [];
        const report = { action: "install", os: "debian", changed: [], restarted: [], verified, unverified, bundleSha256: c.host === ${JSON.stringify(WRONG_BUNDLE)} ? "f".repeat(64) : sent };
        return { id: a.name, state: { ...a.inputs, stdout: ${JSON.stringify(NODE_REPORT_PREFIX)} + JSON.stringify(report) } };
      },
      call: () => ({}),
    }, "registry-trust", "unit", false);
    const { NodeTrust } = require(${JSON.stringify(join(REPO, "components", "node-trust"))});
    const t = new NodeTrust("t", ${JSON.stringify(args)});
    const results: Record<string, unknown> = {};
    for (const [n, o] of Object.entries(t.nodeResults)) (o as pulumi.Output<unknown>).apply((v) => (results[n] = v));
    // Printed once the program has finished (nothing left on the event loop), not after a guessed delay that
    // would drop a late failure (as test/support/mock-program.ts does).
    process.once("beforeExit", () => console.log(JSON.stringify({ registered: registered.sort(), results, errors: [...new Set(errors)] })));
  `);
  // The program fails (exit status non-zero) exactly when a resource fails; its last line says how.
  const run = spawnSync(process.execPath, [join(REPO, "node_modules", "tsx", "dist", "cli.mjs"), program], { cwd: REPO, encoding: "utf8" });
  return JSON.parse(run.stdout.trim().split("\n").pop()!);
}

interface Child { type: string; name: string; parent?: pulumi.Resource }
function build(name: string, args: NodeTrustArgs) {
  const children: Child[] = [];
  const trust = new NodeTrust(name, args, {
    transformations: [(a) => {
      if (!(a.resource instanceof NodeTrust)) children.push({ type: a.type, name: a.name, parent: a.opts.parent });
      return undefined;
    }],
  });
  return { trust, children };
}

function unwrap(v: any): any {
  return v && typeof v === "object" && v[SECRET_SIG] ? v.value : v;
}

describe("NodeTrust", () => {
  const { trust, children } = build("nt", baseArgs);
  const settled = valueOf(trust.results);

  test("one Command per node, named by node, parented to the component", async () => {
    await settled;
    expect(children.map((c) => `${c.type} ${c.name}`)).toEqual([`${COMMAND} nt-a`, `${COMMAND} nt-b`, `${COMMAND} nt-c`]);
    for (const c of children) expect(c.parent).toBe(trust);
    expect(Object.keys(trust.commands)).toEqual(["a", "b", "c"]);
  });

  test("connection: host, port, user, pinned host key, bastion proxy; the whole connection (with the key) is secret", async () => {
    await settled;
    const [a, b, c] = mocks.commands("nt");
    for (const r of [a, b, c]) expect(r.inputs.connection[SECRET_SIG]).toBeDefined();
    expect(unwrap(a.inputs.connection)).toMatchObject({ host: "127.0.0.11", port: 22, user: "root", hostKey: HOST_KEY, privateKey: PRIVATE_KEY, dialErrorLimit: 3 });
    expect(unwrap(a.inputs.connection).proxy).toBeUndefined();
    expect(unwrap(b.inputs.connection)).toMatchObject({
      host: "127.0.0.12", port: 2222, user: "deploy", hostKey: HOST_KEY,
      proxy: { host: "bastion.test", port: 2200, user: "jump", hostKey: BASTION_KEY, privateKey: PRIVATE_KEY },
    });
    expect(unwrap(c.inputs.connection).hostKey).toBeUndefined();
    for (const r of [a, b, c]) {
      const { connection, ...rest } = r.inputs;
      expect(JSON.stringify(rest)).not.toContain("unit-test-key-material");
    }
  });

  test("the script reaches the node on stdin, packed; the command lines hold no bundle, host or script text", async () => {
    await settled;
    const [a, b, c] = mocks.commands("nt");
    const hash = sha256(bundlePem);
    expect(a.inputs.create).toMatch(new RegExp(` base64 -d \\| gzip -dc \\| sh -s install # registry-trust bundle sha256:${hash}$`));
    expect(b.inputs.create).toMatch(new RegExp(` base64 -d \\| gzip -dc \\| sudo -n sh -s install # registry-trust bundle sha256:${hash}$`));
    expect(unpack(a.inputs.stdin)).toBe(renderNodeScriptPair({ os: "debian", runtimes: ["containerd"], registries, bundlePem, allowRuntimeRestart: true, probeTls: true }));
    expect(unpack(c.inputs.stdin)).toBe(renderNodeScriptPair({ os: "rhel", runtimes: ["containerd", "crio"], registries, bundlePem, allowRuntimeRestart: true, probeTls: true }));
    const certBody = bundlePem.split("\n")[1];
    for (const r of [a, b, c]) {
      for (const line of [r.inputs.create, r.inputs.delete]) {
        expect(line).not.toContain("registry.test");
        expect(line).not.toContain(certBody);
        expect(line).toMatch(/^[A-Za-z0-9 #:|'%./=+&>{};-]+$/);
      }
    }
  });

  test("delete runs the same stored stdin with `remove` (the provider feeds the stored stdin to delete too)", async () => {
    await settled;
    const [a, b] = mocks.commands("nt");
    expect(a.inputs.delete).toMatch(/ base64 -d \| gzip -dc \| sh -s remove$/);
    expect(b.inputs.delete).toMatch(/ base64 -d \| gzip -dc \| sudo -n sh -s remove$/);
  });

  test("each node's stored inputs stay small: the packed script is most of it (issue 16: <= 20 KB of state per node is the goal)", async () => {
    await settled;
    const [a] = mocks.commands("nt");
    const script = renderNodeScriptPair({ os: "debian", runtimes: ["containerd"], registries, bundlePem, allowRuntimeRestart: true, probeTls: true });
    const { connection, ...rest } = a.inputs;
    // Packed, the script is well under half its size, and nothing else in the inputs comes close to it.
    expect(a.inputs.stdin.length).toBeLessThan(script.length / 2);
    expect(JSON.stringify(rest).length).toBeLessThan(a.inputs.stdin.length + 1024);
  });

  test("no triggers (they replace: install new, then the old one's remove); previous output not pushed into the env", async () => {
    await settled;
    for (const r of mocks.commands("nt")) {
      expect(r.inputs.triggers).toBeUndefined();
      expect(r.inputs.update).toBeUndefined();
      expect(r.inputs.addPreviousOutputInEnv).toBe(false);
    }
  });

  test("per-node results come from each node's report line", async () => {
    const results = await settled;
    expect(results.map((r) => [r.node, r.host])).toEqual([["a", "127.0.0.11"], ["b", "127.0.0.12"], ["c", "127.0.0.13"]]);
    const a = await valueOf(trust.nodeResults.a);
    expect(a).toMatchObject({ action: "install", restarted: [], bundleSha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(a.verified).toEqual(DEBIAN_CHECKS);
  });

  test("a new bundle changes stdin and the command text, so the engine updates in place rather than replacing", async () => {
    const other = pki.root("Node Trust Unit CA 2").certPem;
    const bundle2 = `${other}${bundlePem}`;
    const { trust: t2 } = build("nt2", { ...baseArgs, nodes: [nodes[0]], bundlePem: bundle2, bundleHash: sha256(bundle2) });
    await valueOf(t2.results);
    const [before] = mocks.commands("nt");
    const [after] = mocks.commands("nt2");
    expect(after.inputs.stdin).not.toBe(before.inputs.stdin);
    expect(after.inputs.create).not.toBe(before.inputs.create);
    expect(after.inputs.create).toContain(sha256(bundle2));
  });
});

describe("NodeTrust checks what each node reports", () => {
  test("a node that reports another bundle than the one sent fails its result, naming both hashes", () => {
    const outcome = runIsolated({ ...baseArgs, nodes: [node("good", "127.0.0.31"), node("odd", WRONG_BUNDLE)] });
    expect(outcome.results).toEqual({ good: expect.objectContaining({ node: "good", bundleSha256: sha256(bundlePem) }) });
    expect(outcome.errors.join("\n")).toContain(`node odd (${WRONG_BUNDLE}) reports bundle sha256 ${"f".repeat(64)}, expected ${sha256(bundlePem)}`);
    expect(outcome.errors.join("\n")).not.toMatch(/node good/);
  });

  test("a node that could not run its checks fails, naming them, unless unverified nodes are allowed", () => {
    const strict = runIsolated({ ...baseArgs, nodes: [node("good", "127.0.0.31"), node("bare", NO_TOOLS)] });
    expect(strict.results).toEqual({ good: expect.objectContaining({ node: "good" }) });
    expect(strict.errors.join("\n")).toContain(`node bare (${NO_TOOLS}) did not verify ${DEBIAN_CHECKS.join(", ")}`);
    expect(strict.errors.join("\n")).toContain("allowUnverifiedNodes");
    const lax = runIsolated({ ...baseArgs, allowUnverified: true, nodes: [node("bare", NO_TOOLS)] });
    expect(lax.errors).toEqual([]);
    expect(lax.results).toEqual({ bare: expect.objectContaining({ verified: [], unverified: DEBIAN_CHECKS }) });
  });

  test("a report without one of the checks the script was rendered with fails, even with unverified nodes allowed", () => {
    const outcome = runIsolated({ ...baseArgs, allowUnverified: true, nodes: [node("short", SHORT_REPORT)] });
    expect(outcome.results).toEqual({});
    expect(outcome.errors.join("\n")).toContain(`node short (${SHORT_REPORT}) did not verify ${DEBIAN_CHECKS[0]}`);
  });
});

describe("NodeTrust with a node that cannot be reached", () => {
  test("fails only that node's resource, with the node and the reason named; the other node completes", () => {
    const outcome = runIsolated({ ...baseArgs, nodes: [node("up", "127.0.0.21"), node("down", UNREACHABLE)] });
    expect(outcome.registered).toEqual(["t-down", "t-up"]);
    expect(outcome.results).toEqual({ up: expect.objectContaining({ node: "up", host: "127.0.0.21", action: "install" }) });
    expect(outcome.errors.join("\n")).toMatch(/failed to register new resource t-down .*dial tcp 127\.0\.0\.99:22: connect: connection refused/);
    expect(outcome.errors.join("\n")).not.toMatch(/t-up/);
  });
});

describe("NodeTrust refuses bad configuration before registering anything", () => {
  test.each<[string, Partial<NodeTrustArgs>, RegExp]>([
    ["a host with shell metacharacters", { nodes: [node("x", "node$(id)")] }, /node "x": host "node\$\(id\)" contains characters that are not allowed/],
    ["a bad port", { nodes: [node("x", "10.0.0.1", { port: 70000 })] }, /node "x": port 70000 must be an integer from 1 to 65535/],
    ["a bad proxy", { nodes: [node("x", "10.0.0.1", { proxy: { host: "https://bastion", port: 22, user: "j" } })] }, /proxy host "https:\/\/bastion" has a URL scheme/],
    ["a missing host key when required", { nodes: [node("x", "10.0.0.1")], requireHostKeys: true }, /node "x": hostKey is required/],
    ["a missing host key by default", { nodes: [node("x", "10.0.0.1")], requireHostKeys: undefined }, /node "x": hostKey is required/],
    ["an RSA host key (ssh-rsa only, refused by OpenSSH >= 8.8)", { nodes: [node("x", "10.0.0.1", { hostKey: RSA_HOST_KEY })] }, /node "x": hostKey is an RSA host key.*OpenSSH 8\.8.*ed25519/],
    ["an RSA bastion key", { nodes: [node("x", "10.0.0.1", { hostKey: HOST_KEY, proxy: { host: "bastion.test", port: 22, user: "j", hostKey: RSA_HOST_KEY } })] }, /node "x": proxy.hostKey is an RSA host key/],
    ["a bastion without a pinned key when required", { nodes: [node("x", "10.0.0.1", { hostKey: HOST_KEY, proxy: { host: "bastion.test", port: 22, user: "j" } })], requireHostKeys: true }, /node "x": proxy.hostKey is required/],
    ["duplicate names", { nodes: [node("x", "10.0.0.1"), node("x", "10.0.0.2")] }, /node "x": the name is used twice/],
    ["no runtimes", { nodes: [node("x", "10.0.0.1", { runtimes: [] })] }, /node "x": runtimes is empty/],
    ["no registries", { registries: [] }, /registries is empty/],
  ])("%s", (_, extra, message) => {
    const before = mocks.resources.length;
    let thrown: unknown;
    try {
      build("bad", { ...baseArgs, ...extra });
    } catch (e) {
      thrown = e;
    }
    expect(pulumi.ResourceError.isInstance(thrown)).toBe(true);
    expect((thrown as Error).message).toMatch(message);
    expect((thrown as Error).message).toContain("nothing was touched");
    expect(mocks.resources.slice(before).filter((r) => r.type === COMMAND)).toEqual([]);
  });

  test("no private key and no SSH agent", () => {
    const sock = process.env.SSH_AUTH_SOCK;
    delete process.env.SSH_AUTH_SOCK;
    try {
      expect(() => build("noauth", { ...baseArgs, sshPrivateKey: undefined })).toThrow(/no SSH credentials/);
    } finally {
      if (sock !== undefined) process.env.SSH_AUTH_SOCK = sock;
    }
  });

  test("a bundle the renderer refuses fails the program with the node named, and registers no Command", () => {
    const outcome = runIsolated({ ...baseArgs, nodes: [nodes[0]], bundlePem: "not a certificate", bundleHash: sha256("x") });
    expect(outcome.errors.join("\n")).toMatch(/node a \(127\.0\.0\.11\): cannot render its script/);
    expect(outcome.registered).toEqual([]);
  });
});
