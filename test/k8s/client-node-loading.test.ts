// @kubernetes/client-node 1.x is ESM-only. These tests use it against the real apiserver from every place
// the project runs it: jest (swc transform, see jest.config.js), plain node (native require of ESM), tsx,
// ts-node, and a Pulumi-serialized dynamic provider evaluated the way Pulumi's dynamic-provider host does.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { ApiServer, startApiServer } from "../../lab/apiserver";

jest.setTimeout(120_000);

const run = promisify(execFile);
const repoRoot = path.resolve(__dirname, "..", "..");
const tsx = path.join(repoRoot, "node_modules", ".bin", "tsx");
const KCP_CRD = "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io";

let env: ApiServer;
let childEnv: NodeJS.ProcessEnv;

beforeAll(async () => {
  env = await startApiServer();
  childEnv = { PATH: process.env.PATH, HOME: process.env.HOME, KUBECONFIG: env.kubeconfigPath };
});
afterAll(() => env?.stop());

test("under jest", async () => {
  const crd = await env.kubeConfig.makeApiClient(k8s.ApiextensionsV1Api).readCustomResourceDefinition({ name: KCP_CRD });
  expect(crd.metadata?.name).toBe(KCP_CRD);
});

test("in a plain node process (CommonJS require of the ES module)", async () => {
  const script = `
    const k8s = require("@kubernetes/client-node");
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(process.env.KUBECONFIG);
    kc.makeApiClient(k8s.ApiextensionsV1Api).readCustomResourceDefinition({ name: process.argv[1] })
      .then((crd) => console.log(crd.metadata.name), (e) => { console.error(e); process.exit(1); });`;
  const { stdout } = await run(process.execPath, ["-e", script, KCP_CRD], { cwd: repoRoot, env: childEnv });
  expect(stdout.trim()).toBe(KCP_CRD);
});

test("in a TypeScript file run by tsx", async () => {
  const { stdout } = await run(tsx, [path.join(__dirname, "fixtures", "read-crd.ts"), KCP_CRD], { cwd: repoRoot, env: childEnv });
  expect(stdout.trim()).toBe(KCP_CRD);
});

// `pulumi up` runs a TypeScript program through the project's ts-node, compiling imports to require().
test("in a TypeScript file run by ts-node, as pulumi up runs the program", async () => {
  const args = ["-r", "ts-node/register/transpile-only", path.join(__dirname, "fixtures", "read-crd.ts"), KCP_CRD];
  const { stdout } = await run(process.execPath, args, { cwd: repoRoot, env: childEnv });
  expect(stdout.trim()).toBe(KCP_CRD);
});

test("in a dynamic provider serialized by pulumi.runtime.serializeFunction", async () => {
  const { stdout: text } = await run(tsx, [path.join(__dirname, "fixtures", "serialize-provider.ts")], { cwd: repoRoot, env: childEnv });
  expect(text).toContain('require("@kubernetes/client-node")');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "registry-trust-serialized-"));
  try {
    const file = path.join(dir, "provider.js");
    fs.writeFileSync(file, text);
    // Pulumi's dynamic-provider host loads the state's text with require-from-string, resolving modules
    // from the project's node_modules.
    const host = `
      const text = require("fs").readFileSync(process.argv[1], "utf8");
      const provider = require("require-from-string")(text).handler();
      provider.read(process.env.KUBECONFIG, process.argv[2])
        .then((name) => console.log(name), (e) => { console.error(e); process.exit(1); });`;
    const { stdout } = await run(process.execPath, ["-e", host, file, KCP_CRD], { cwd: repoRoot, env: childEnv });
    expect(stdout.trim()).toBe(KCP_CRD);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
