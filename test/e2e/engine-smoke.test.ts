// The real Pulumi engine, offline, no mocks: the CLI and plugins from scripts/pulumi-binaries.sh (run
// `npm run pulumi:binaries` first; this test never builds), driven through the Automation API with inline
// programs (which need no Node.js language host: the SDK serves the program to the engine itself).
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { Stack } from "@pulumi/pulumi/automation";
import * as tls from "@pulumi/tls";
import { Engine, inlineStack, offlineEngine, runPulumi, usesBuiltEngine } from "./engine";

jest.setTimeout(300_000);

const PROJECT = "rt-engine-smoke";

let engine: Engine;
beforeAll(async () => {
  engine = await offlineEngine(["tls", "kubernetes", "command"]);
});
afterAll(() => engine?.cleanup());

const stackFor = (name: string, program: () => Promise<Record<string, unknown>>): Promise<Stack> => inlineStack(engine, PROJECT, name, program);

function stateFile(stack: string): string {
  return path.join(engine.backendDir, ".pulumi", "stacks", PROJECT, `${stack}.json`);
}

describe("real pulumi up with the tls plugin", () => {
  const program = async () => {
    const key = new tls.PrivateKey("ca-key", { algorithm: "ECDSA", ecdsaCurve: "P256" });
    const cert = new tls.SelfSignedCert("ca-cert", {
      privateKeyPem: key.privateKeyPem,
      isCaCertificate: true,
      validityPeriodHours: 24,
      allowedUses: ["cert_signing", "crl_signing"],
      subject: { commonName: "registry-trust e2e smoke CA" },
    });
    return { certPem: cert.certPem, publicKeyPem: key.publicKeyPem, privateKeyPem: key.privateKeyPem };
  };
  let stack: Stack;

  beforeAll(async () => {
    stack = await stackFor("smoke", program);
  });

  it("creates the key and the certificate, key output secret and really P-256", async () => {
    const res = await stack.up({ color: "never" });
    expect(res.summary.result).toBe("succeeded");
    expect(res.summary.resourceChanges).toMatchObject({ create: 3 }); // stack + key + cert

    expect(res.outputs.privateKeyPem.secret).toBe(true);
    expect(res.outputs.certPem.secret).toBe(false);
    const privateKey = crypto.createPrivateKey(res.outputs.privateKeyPem.value as string);
    expect(privateKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    const cert = new crypto.X509Certificate(res.outputs.certPem.value as string);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toContain("CN=registry-trust e2e smoke CA");
    expect(cert.checkPrivateKey(privateKey)).toBe(true);
    expect(cert.verify(crypto.createPublicKey(res.outputs.publicKeyPem.value as string))).toBe(true);
  });

  it("stores the private key only in Pulumi's secret encoding", async () => {
    const raw = fs.readFileSync(stateFile("smoke"), "utf8");
    expect(raw).toContain("BEGIN CERTIFICATE"); // public material is there in the clear ...
    expect(raw).not.toMatch(/PRIVATE KEY/); // ... private key PEM is not, in any form
    // `pulumi stack export` as an operator would run it keeps secrets encrypted too ...
    const exported = runPulumi(engine, ["stack", "export", "--stack", "smoke"], stack.workspace.workDir);
    expect(exported).toContain("BEGIN CERTIFICATE");
    expect(exported).not.toMatch(/PRIVATE KEY/);
    // ... while the Automation API's exportStack decrypts (it passes --show-secrets): the ciphertext is the key.
    const decrypted = JSON.stringify((await stack.exportStack()).deployment);
    expect(decrypted).toContain("BEGIN EC PRIVATE KEY");
    // The key resource's privateKeyPem is a ciphertext under the secret signature.
    const keyRes = JSON.parse(raw).checkpoint.latest.resources.find((r: { type: string }) => r.type === "tls:index/privateKey:PrivateKey");
    expect(keyRes.outputs.privateKeyPem).toMatchObject({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270" });
    expect(typeof keyRes.outputs.privateKeyPem.ciphertext).toBe("string");
  });

  it("changes nothing on a second up", async () => {
    const preview = await stack.preview({ color: "never" });
    expect(Object.keys(preview.changeSummary)).toEqual(["same"]);
    const res = await stack.up({ color: "never" });
    expect(res.summary.resourceChanges).toEqual({ same: 3 });
  });

  it("destroys everything", async () => {
    const res = await stack.destroy({ color: "never" });
    expect(res.summary.resourceChanges).toMatchObject({ delete: 3 });
    const latest = JSON.parse(fs.readFileSync(stateFile("smoke"), "utf8")).checkpoint.latest;
    expect(latest.resources ?? []).toEqual([]);
    await stack.workspace.removeStack("smoke");
  });
});

// A provider / resource addressed by package name and type token alone (the SDK classes are abstract).
class RawProvider extends pulumi.ProviderResource {
  constructor(pkg: string, name: string, props: pulumi.Inputs) {
    super(pkg, name, props);
  }
}
class RawResource extends pulumi.CustomResource {
  declare readonly id: pulumi.Output<string>;
  constructor(type: string, name: string, props: pulumi.Inputs, opts: pulumi.CustomResourceOptions) {
    super(type, name, props, opts);
  }
}

describe("the kubernetes plugin", () => {
  it("starts and talks to the configured cluster (a dead address here), not 'plugin not found'", async () => {
    // A kubeconfig for an address where nothing listens: the provider must load, configure, and then fail
    // to reach it. No @pulumi/kubernetes SDK is needed to address the plugin by its type tokens.
    const kubeconfig = [
      "apiVersion: v1",
      "kind: Config",
      "clusters: [{name: dead, cluster: {server: 'https://127.0.0.1:1'}}]",
      "users: [{name: u, user: {token: t}}]",
      "contexts: [{name: dead, context: {cluster: dead, user: u}}]",
      "current-context: dead",
    ].join("\n");
    const stack = await stackFor("k8s", async () => {
      const provider = new RawProvider("kubernetes", "dead-cluster", { kubeconfig });
      const cm = new RawResource(
        "kubernetes:core/v1:ConfigMap",
        "probe",
        { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "probe", namespace: "default" }, data: { a: "b" } },
        { provider },
      );
      return { id: cm.id };
    });
    let message = "";
    try {
      await stack.up({ color: "never" });
    } catch (e) {
      message = String(e);
    }
    if (process.env.E2E_DEBUG) console.log(message);
    expect(message).not.toBe(""); // nothing listens there: the up must fail ...
    expect(message).not.toMatch(/no resource plugin|plugin not found|could not find plugin/i);
    // ... in the provider, at the cluster: "configured Kubernetes cluster is unreachable: ... 127.0.0.1:1 ... refused"
    expect(message).toMatch(/Kubernetes cluster is unreachable[\s\S]*127\.0\.0\.1:1/);
    await stack.cancel().catch(() => undefined);
    await stack.destroy({ color: "never" }).catch(() => undefined);
    await stack.workspace.removeStack("k8s", { force: true });
  });
});

// pulumi-resource-command here is registry-trust's own stand-in plugin (standins/pulumi-resource-command;
// docs/pulumi-engine.md); with a normal Pulumi install this runs the upstream plugin, and must pass the same.
describe("the command plugin: command.local.Command", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-cmd-smoke-"));
  const journal = path.join(dir, "journal");
  const inputs = { stdin: "first", trigger: "a", fail: false };
  const program = async () => {
    const cmd = new command.local.Command("cmd", {
      create: `read -r line; echo "create $line $RT_SMOKE" | tee -a ${journal}`,
      update: inputs.fail ? "cat >/dev/null; echo partial; echo boom >&2; exit 7" : `read -r line; echo "update $line prev=[$PULUMI_COMMAND_STDOUT]" | tee -a ${journal}`,
      delete: `echo "delete prev=[$PULUMI_COMMAND_STDOUT]" >> ${journal}`,
      stdin: inputs.stdin,
      environment: { RT_SMOKE: "env-ok" },
      triggers: [inputs.trigger],
    });
    return { stdout: cmd.stdout };
  };
  const lines = () => fs.readFileSync(journal, "utf8").trim().split("\n");
  let stack: Stack;

  beforeAll(async () => {
    stack = await stackFor("command", program);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("runs create with stdin and environment; stdout is an output without its final newline", async () => {
    const res = await stack.up({ color: "never" });
    expect(res.outputs.stdout.value).toBe("create first env-ok");
    expect(lines()).toEqual(["create first env-ok"]);
  });

  it("a second up changes nothing and runs nothing", async () => {
    const preview = await stack.preview({ color: "never" });
    expect(Object.keys(preview.changeSummary)).toEqual(["same"]);
    expect((await stack.up({ color: "never" })).summary.resourceChanges).toEqual({ same: 2 });
    expect(lines()).toHaveLength(1);
  });

  it("a changed input is an in-place update running `update` with the previous stdout", async () => {
    inputs.stdin = "second";
    const res = await stack.up({ color: "never" });
    expect(res.summary.resourceChanges).toEqual({ same: 1, update: 1 });
    expect(res.outputs.stdout.value).toBe("update second prev=[create first env-ok]");
  });

  it("a changed trigger replaces: the new resource's create, then the old one's delete", async () => {
    inputs.trigger = "b";
    const res = await stack.up({ color: "never" });
    expect(res.summary.resourceChanges).toEqual({ same: 1, replace: 1 });
    expect(lines().slice(-2)).toEqual(["create second env-ok", "delete prev=[update second prev=[create first env-ok]]"]);
  });

  it("a failing command fails the up with its exit status, stderr and stdout, never its stdin", async () => {
    inputs.stdin = "stdin-must-not-show";
    inputs.fail = true;
    const err = await stack.up({ color: "never" }).then(() => undefined, (e: Error) => String(e));
    // Upstream's shape, which ours follows: "exit status 7: running "<command>":\n<stdout and stderr>".
    expect(err).toMatch(/status 7/);
    expect(err).toMatch(/boom/);
    expect(err).toMatch(/partial/);
    expect(err).not.toContain("stdin-must-not-show");
  });

  it("after a failed update the old state is kept, so the next up updates again", async () => {
    inputs.fail = false;
    inputs.stdin = "third";
    const res = await stack.up({ color: "never" });
    expect(res.summary.resourceChanges).toEqual({ same: 1, update: 1 });
    expect(res.outputs.stdout.value).toBe("update third prev=[create second env-ok]");
  });

  it("destroy runs delete", async () => {
    const before = lines().length;
    const res = await stack.destroy({ color: "never" });
    expect(res.summary.resourceChanges).toMatchObject({ delete: 2 });
    expect(lines().slice(before)).toEqual(["delete prev=[update third prev=[create second env-ok]]"]);
    await stack.workspace.removeStack("command");
  });
});

describe("the command plugin: command.remote.Command input checks", () => {
  it("refuses bad connection inputs before running anything, never echoing a key", async () => {
    const notAKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-really-a-key-body\n-----END OPENSSH PRIVATE KEY-----\n";
    const stack = await stackFor("remote-check", async () => {
      const cmd = new command.remote.Command("bad", {
        connection: { host: "127.0.0.1", port: 70000, privateKey: notAKey, hostKey: "not a host key", dialErrorLimit: 0 },
        create: "true",
      });
      return { stdout: cmd.stdout };
    });
    const err = await stack.up({ color: "never" }).then(() => "succeeded", (e: Error) => String(e));
    expect(err).not.toBe("succeeded");
    expect(err).toContain("command:remote:Command");
    expect(err).not.toContain("not-really-a-key-body");
    if (usesBuiltEngine()) {
      // Ours checks these in Check, in preview already; upstream finds the key unreadable only when it dials
      // (docs/pulumi-engine.md, conformance table). The engine words Check failures as "property P value V has
      // a problem: REASON".
      expect(err).toMatch(/property connection\.port .* has a problem: 70000 is not a TCP port/);
      expect(err).toMatch(/property connection\.privateKey .* has a problem: is not a private key/);
      expect(err).toMatch(/property connection\.hostKey .* has a problem: failed to parse host key/);
    }
    const latest = JSON.parse(fs.readFileSync(stateFile("remote-check"), "utf8")).checkpoint.latest;
    expect((latest.resources ?? []).filter((r: { type: string }) => r.type === "command:remote:Command")).toEqual([]);
    await stack.destroy({ color: "never" });
    await stack.workspace.removeStack("remote-check");
  });
});
