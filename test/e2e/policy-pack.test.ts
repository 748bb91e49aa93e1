// The policy pack (policy/) under the real Pulumi engine: `pulumi preview --policy-pack policy/` through the
// Automation API, offline (test/e2e/engine.ts; run `npm run pulumi:binaries` first, this test never builds).
// The stacks are inline programs around the real RegistryPki and NodeTrust; the policy pack itself runs as
// its own Node.js process, started by the engine through the language host's RunPlugin
// (standins/pulumi-language-nodejs), and learns the stack config from the engine's ConfigureStack call.
import { generateKeyPairSync } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { Stack } from "@pulumi/pulumi/automation";
import * as tls from "@pulumi/tls";
import { NodeTrust } from "../../components/node-trust";
import { RegistryPki } from "../../components/registry-pki";
import { NodeConfig, RegistryEndpoint } from "../../core/config/model";
import { Engine, inlineStack, offlineEngine } from "./engine";

jest.setTimeout(300_000);

const PROJECT = "rt-policy-pack";
const POLICY_PACK = path.resolve(__dirname, "..", "..", "policy");
const registry: RegistryEndpoint = { host: "registry.test", port: 5000, mirrorOf: [] };
const mirror: RegistryEndpoint = { host: "mirror.test", port: 5001, mirrorOf: [] };
// The command plugin checks that keys are ones its SSH client can read; nothing is dialled in a preview.
const ssh = generateKeyPairSync("ed25519");
const sshKey = ssh.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
const wire = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
const HOST_KEY = `ssh-ed25519 ${Buffer.concat([wire(Buffer.from("ssh-ed25519")), wire(Buffer.from(ssh.publicKey.export({ format: "jwk" }).x!, "base64url"))]).toString("base64")}`;

/** What a stack's program builds: RegistryPki, NodeTrust on one node, optionally a weak extra key. */
interface Shape {
  readonly endpoints: readonly RegistryEndpoint[];
  readonly generation: number;
  readonly retain: number;
  readonly caValidityDays: number;
  readonly hostKey?: string;
  readonly weakKey?: boolean;
}

const program = (s: Shape) => async () => {
  const pki = new RegistryPki("registry", {
    endpoints: s.endpoints,
    ca: { mode: "generate", generation: s.generation, retainGenerations: s.retain, keyAlgorithm: "ECDSA-P384", validityDays: s.caValidityDays, commonName: "Policy e2e CA" },
    serving: { mode: "generate", keyAlgorithm: "ECDSA-P256", validityDays: 90, renewBeforeDays: 30, hasKey: false },
  });
  // Preview never dials the node: only the connection settings the policies read matter here.
  const node: NodeConfig = { name: "n1", host: "127.0.0.1", port: 22, user: "root", os: "debian", runtimes: ["containerd"], hostKey: s.hostKey };
  new NodeTrust("nodes", {
    nodes: [node], registries: [...s.endpoints], bundlePem: pki.bundlePem, bundleHash: pki.bundleHash, servingChainPem: pki.servingChainPem,
    sshPrivateKey: pulumi.secret(sshKey),
    // An unpinned node is a lab's opt-out (the stack config's allowUnpinnedHostKeys); the policies must see it.
    requireHostKeys: s.hostKey !== undefined,
    // No sshd answers at 127.0.0.1:22 here, and the policies only read the connection settings.
    sshPrecheckSeconds: 0,
  });
  if (s.weakKey) new tls.PrivateKey("deploy-key", { algorithm: "RSA", rsaBits: 2048 });
  return {};
};

let engine: Engine;
beforeAll(async () => {
  engine = await offlineEngine(["tls", "command"]);
});
afterAll(() => engine?.cleanup());

async function stackFor(name: string, shape: Shape, config: Record<string, string>): Promise<Stack> {
  const stack = await inlineStack(engine, PROJECT, name, program(shape));
  await stack.setAllConfig(Object.fromEntries(Object.entries(config).map(([k, value]) => [k, { value }])));
  return stack;
}

/** `pulumi preview --policy-pack policy/`: whether it succeeded, and everything it printed. */
async function preview(stack: Stack, policyPackConfig?: object): Promise<{ ok: boolean; text: string }> {
  const configs: string[] = [];
  if (policyPackConfig) {
    const file = path.join(engine.home, `policy-config-${stack.name}.json`);
    fs.writeFileSync(file, JSON.stringify(policyPackConfig));
    configs.push(file);
  }
  try {
    const r = await stack.preview({ policyPacks: [POLICY_PACK], policyPackConfigs: configs, color: "never" });
    return { ok: true, text: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    return { ok: false, text: `${err.stdout ?? ""}\n${err.stderr ?? ""}\n${err.message}` };
  }
}

const registries = (eps: readonly RegistryEndpoint[]) => JSON.stringify(eps.map((e) => ({ host: e.host, port: e.port })));
const compliant: Shape = { endpoints: [registry, mirror], generation: 2, retain: 1, caValidityDays: 1825, hostKey: HOST_KEY };

describe("pulumi preview --policy-pack policy/", () => {
  test("a violating production stack fails, with each policy's message", async () => {
    const stack = await stackFor("prod-bad", { endpoints: [registry], generation: 2, retain: 0, caValidityDays: 7300, weakKey: true }, {
      "registry-trust:production": "true",
      "registry-trust:caRetainGenerations": "0",
      "registry-trust:registries": registries([registry, mirror]),
    });
    const { ok, text } = await preview(stack);
    expect(ok).toBe(false);
    expect(text).toContain("registry-trust@v0.1.0");
    expect(text).toMatch(/\[mandatory\]\s+ssh-host-keys-pinned/);
    expect(text).toContain("nodes-n1: connection root@127.0.0.1: hostKey is not set, so any host key is accepted; pin it with the output of `ssh-keyscan -t ed25519 127.0.0.1 | cut -d' ' -f2-` (registry-trust: nodes[].hostKey)");
    expect(text).toMatch(/\[mandatory\]\s+ca-overlap-retention/);
    expect(text).toContain("registry-trust:caRetainGenerations is 0: a rotation would drop the CA");
    expect(text).toContain('RegistryPki "registry" puts CA generation 2 in the bundle without generation 1');
    expect(text).toContain("Required in production stacks (registry-trust:production is true)");
    expect(text).toMatch(/\[mandatory\]\s+serving-certificate-sans/);
    expect(text).toContain("registry-serving-csr: the serving certificate does not cover mirror.test:5001");
    expect(text).toMatch(/\[mandatory\]\s+max-certificate-validity/);
    expect(text).toContain("registry-ca-g2: CA certificate valid for 175200 hours (7300 days), more than the maximum of 87600 hours");
    expect(text).toMatch(/\[mandatory\]\s+key-strength/);
    expect(text).toContain("deploy-key: RSA key of 2048 bits: set rsaBits to 3072 or 4096");
  });

  test("a compliant production stack passes", async () => {
    const stack = await stackFor("prod-ok", compliant, { "registry-trust:production": "true", "registry-trust:registries": registries([registry, mirror]) });
    const { ok, text } = await preview(stack);
    expect(text).toContain("registry-trust@v0.1.0");
    expect(ok).toBe(true);
    expect(text).not.toMatch(/\[mandatory\]/);
  });

  test("outside production the production rules do not apply, the others still do; a lab's opt-out is reported, not refused", async () => {
    const stack = await stackFor("dev", { ...compliant, retain: 0, hostKey: undefined, weakKey: true }, {
      "registry-trust:registries": registries([registry, mirror]),
      "registry-trust:allowUnpinnedHostKeys": "true",
    });
    const { ok, text } = await preview(stack);
    expect(ok).toBe(false);
    expect(text).toMatch(/\[mandatory\]\s+key-strength/);
    expect(text).toMatch(/\[advisory\]\s+ssh-host-keys-opt-out/);
    expect(text).toContain("nodes-n1: connection root@127.0.0.1: hostKey is not set");
    expect(text).not.toMatch(/ssh-host-keys-pinned|ca-overlap-retention|serving-certificate-sans|max-certificate-validity/);
  });

  test("host keys are required in every stack unless it opts out", async () => {
    const stack = await stackFor("dev-pinless", { ...compliant, hostKey: undefined }, { "registry-trust:registries": registries([registry, mirror]) });
    const { ok, text } = await preview(stack);
    expect(ok).toBe(false);
    expect(text).toMatch(/\[mandatory\]\s+ssh-host-keys-pinned/);
    expect(text).toContain("nodes-n1: connection root@127.0.0.1: hostKey is not set");
  });

  test("validity maximums come from the policy pack config", async () => {
    const stack = await stackFor("strict", compliant, { "registry-trust:registries": registries([registry, mirror]) });
    const { ok, text } = await preview(stack, { "max-certificate-validity": { maxServingValidityHours: 720 } });
    expect(ok).toBe(false);
    expect(text).toContain("registry-serving: serving certificate valid for 2160 hours (90 days), more than the maximum of 720 hours (30 days)");
  });
});
