// ServingCertificate's kubernetesSecret target on the real Pulumi engine (offline, Automation API inline
// program, the kubernetes plugin) against a real kube-apiserver, with an in-process TLS endpoint that serves
// whatever the Secret holds, as an ingress controller does. Needs `npm run k8s:binaries` and
// `npm run pulumi:binaries` first.
import * as fs from "node:fs";
import * as path from "node:path";
import { AddressInfo } from "node:net";
import { Server, createSecureContext, createServer } from "node:tls";
import * as k8s from "@kubernetes/client-node";
import * as pk8s from "@pulumi/kubernetes";
import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { ServingCertificate } from "../../components/serving-certificate";
import { BUNDLE_ANNOTATION } from "../../core/rotation/serving-secret";
import { parsePemCertificates } from "../../core/x509/pem";
import { Engine, offlineEngine } from "../e2e/engine";
import { Issued, TestPki } from "../../lab/openssl-pki";
import { ApiServer, startApiServer } from "../../lab/apiserver";

jest.setTimeout(300_000);

const PROJECT = "rt-serving-secret";
const NS = "default";
const NAME = "registry-tls";
const pki = new TestPki();
const sans = ["DNS:localhost", "IP:127.0.0.1"];
const old = pki.leaf(pki.root("Ingress CA G1"), sans);
const next = pki.leaf(pki.root("Ingress CA G2"), sans);
const fingerprint = (c: Issued) => parsePemCertificates(c.certPem, "leaf").certs[0].fingerprint256;
const HASH = "cd".repeat(32);

let env: ApiServer;
let engine: Engine;
let ingress: Server;
let port: number;
let stack: Stack;
let poller: NodeJS.Timeout;

beforeAll(async () => {
  env = await startApiServer({ installCapiCrds: false });
  engine = await offlineEngine(["kubernetes"]);
  const core = env.kubeConfig.makeApiClient(k8s.CoreV1Api);
  // The registry's Secret exists already, written by someone else (as kubectl or a chart would).
  await core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: NAME }, type: "kubernetes.io/tls", stringData: { "tls.crt": old.certPem, "tls.key": old.keyPem } } });
  // The "ingress": serves the Secret's pair, re-read every 200 ms.
  let context = createSecureContext({ cert: old.certPem, key: old.keyPem });
  poller = setInterval(() => {
    core.readNamespacedSecret({ namespace: NS, name: NAME }).then((s) => {
      const d = (k: string) => Buffer.from(s.data![k], "base64").toString();
      context = createSecureContext({ cert: d("tls.crt"), key: d("tls.key") });
    }, () => undefined);
  }, 200);
  ingress = createServer({ SNICallback: (_n, cb) => cb(null, context) });
  ingress.on("tlsClientError", () => undefined);
  await new Promise<void>((r) => ingress.listen(0, "127.0.0.1", () => r()));
  port = (ingress.address() as AddressInfo).port;

  const program = async () => {
    const provider = new pk8s.Provider("mgmt-k8s", { kubeconfig: env.kubeconfigPath });
    const sc = new ServingCertificate("serving", {
      target: { kind: "kubernetesSecret", cluster: "mgmt", namespace: NS, name: NAME, verifyTimeoutSeconds: 20 },
      endpoints: [{ host: "localhost", port }],
      chainPem: next.certPem,
      keyPem: next.keyPem,
      bundleHash: HASH,
      provider,
    });
    return { servedFingerprint: sc.servedFingerprint };
  };
  stack = await LocalWorkspace.createOrSelectStack(
    { stackName: "secret", projectName: PROJECT, program },
    {
      pulumiCommand: engine.command, envVars: engine.env, pulumiHome: engine.home, secretsProvider: "passphrase",
      projectSettings: { name: PROJECT, runtime: "nodejs", backend: { url: engine.env.PULUMI_BACKEND_URL } },
    },
  );
});

afterAll(async () => {
  clearInterval(poller);
  ingress?.close();
  engine?.cleanup();
  await env?.stop();
  pki.cleanup();
});

const stateFile = () => path.join(engine.backendDir, ".pulumi", "stacks", PROJECT, "secret.json");

test("up takes over the existing Secret, records the bundle, and returns once the endpoint serves the new leaf", async () => {
  const res = await stack.up({ color: "never" });
  expect(res.summary.result).toBe("succeeded");
  expect(res.outputs.servedFingerprint.value).toBe(fingerprint(next));
  const s = await env.kubeConfig.makeApiClient(k8s.CoreV1Api).readNamespacedSecret({ namespace: NS, name: NAME });
  expect(s.type).toBe("kubernetes.io/tls");
  expect(Buffer.from(s.data!["tls.crt"], "base64").toString()).toBe(next.certPem);
  expect(Buffer.from(s.data!["tls.key"], "base64").toString()).toBe(next.keyPem);
  expect(s.metadata?.annotations?.[BUNDLE_ANNOTATION]).toBe(HASH);
});

test("the key is in the state only as a ciphertext", () => {
  const raw = fs.readFileSync(stateFile(), "utf8");
  expect(raw).toContain(BUNDLE_ANNOTATION);
  expect(raw).not.toMatch(/PRIVATE KEY/);
  expect(raw).not.toContain(Buffer.from(next.keyPem).toString("base64"));
});

test("a second up changes nothing; destroy leaves the registry its certificate", async () => {
  const again = await stack.up({ color: "never" });
  expect(again.summary.resourceChanges).not.toHaveProperty("update");
  expect(again.summary.resourceChanges).not.toHaveProperty("create");
  await stack.destroy({ color: "never" });
  const s = await env.kubeConfig.makeApiClient(k8s.CoreV1Api).readNamespacedSecret({ namespace: NS, name: NAME });
  expect(Buffer.from(s.data!["tls.crt"], "base64").toString()).toBe(next.certPem);
});
