// The consumer example (examples/consumer) as a user runs it: registry-trust packed with `npm pack`, the
// example copied elsewhere and installed from that tarball (offline, from the npm cache), then preview,
// up and destroy of its own program under the real engine — our Node.js language host starting the
// program from its own directory with its own node_modules, ts-node type-checking it against the
// package's .d.ts — against the lab: a TLS registry, SSH nodes with containerd, and the real
// kube-apiserver holding a KubeadmControlPlane and a MachineDeployment (whose dynamic providers Pulumi
// serializes from the installed package; docs/packaging.md).
// Needs `npm run pulumi:binaries`, `npm run k8s:binaries` and the lab's packages; it never builds them.
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import YAML from "yaml";
import { clusterObjects, startCluster, type LabCluster } from "../../lab/cluster";
import { startLab, type Lab } from "../../lab/lab";
import { Engine, offlineEngine } from "./engine";

jest.setTimeout(1_200_000);

const repoRoot = path.resolve(__dirname, "..", "..");
const PROJECT = "edge-platform";
const STACK = "lab";
const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { name: string; version: string };

let engine: Engine;
let lab: Lab;
let cluster: LabCluster;
let work: string;
let programDir: string;
let packedFiles: string[];
let stack: Stack;
const printed: string[] = [];
const opts = () => ({ color: "never" as const, onOutput: (s: string) => printed.push(s), onError: (s: string) => printed.push(s) });

/** Runs a command to completion; its output is returned, and shown in the error when it fails. */
function run(cmd: string, args: string[], cwd: string, input?: string, env: NodeJS.ProcessEnv = process.env): string {
  try {
    return execFileSync(cmd, args, { cwd, env, input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"], maxBuffer: 64 << 20 });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
  }
}

beforeAll(async () => {
  engine = await offlineEngine(["command", "pulumi-nodejs"]);
  work = fs.mkdtempSync(path.join(os.tmpdir(), "rt-consumer-"));

  // The package as it would be published: `npm pack` runs prepack (the build) and lists what it packed.
  const packDir = path.join(work, "pack");
  fs.mkdirSync(packDir);
  const [packed] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", packDir], repoRoot)) as Array<{ filename: string; files: Array<{ path: string }> }>;
  packedFiles = packed.files.map((f) => f.path);
  const tarball = path.join(packDir, packed.filename);

  // The example elsewhere, depending on that tarball; installed only from the npm cache.
  programDir = path.join(work, "edge-platform");
  // Not what a local run of the example left there: its node_modules, lock file or stack files.
  const leftovers = /(^|\/)(node_modules|package-lock\.json|Pulumi\.[^/]+\.yaml)$/;
  fs.cpSync(path.join(repoRoot, "examples", "consumer"), programDir, { recursive: true, filter: (src) => !leftovers.test(src) });
  const manifest = JSON.parse(fs.readFileSync(path.join(programDir, "package.json"), "utf8"));
  expect(manifest.dependencies[pkg.name]).toMatch(/^file:.*\.tgz$/);
  manifest.dependencies[pkg.name] = `file:${tarball}`;
  fs.writeFileSync(path.join(programDir, "package.json"), JSON.stringify(manifest, null, 2));
  run("npm", ["install", "--offline", "--no-audit", "--no-fund"], programDir);

  lab = await startLab({ nodes: 2 });
  cluster = await startCluster(path.join(lab.dir, "cluster"));

  stack = await LocalWorkspace.createOrSelectStack(
    { stackName: STACK, workDir: programDir },
    { pulumiCommand: engine.command, envVars: engine.env, pulumiHome: engine.home },
  );
  // The stack's config in its own namespace, written into the stack file (which `stack init` salted);
  // the SSH key through the CLI on stdin, never on a command line.
  const stackFile = path.join(programDir, `Pulumi.${STACK}.yaml`);
  const doc = YAML.parseDocument(fs.existsSync(stackFile) ? fs.readFileSync(stackFile, "utf8") : "{}");
  const d = cluster.description;
  const values: Record<string, unknown> = {
    registry: `${lab.registry.host}:${lab.registry.port}`,
    caBundleFile: lab.registry.caPath,
    servingChainFile: lab.registry.certPath,
    nodes: lab.nodes.map((n) => ({ name: n.name, address: n.host, port: n.port, hostKey: n.hostKey })),
    probeImage: lab.registry.image,
    kubeconfig: d.kubeconfig,
    controlPlane: `${d.namespace}/${d.controlPlane}`,
    machineDeployment: `${d.namespace}/${d.machineDeployment}`,
  };
  for (const [key, value] of Object.entries(values)) doc.setIn(["config", `${PROJECT}:${key}`], value);
  fs.writeFileSync(stackFile, doc.toString());
  run(path.join(engine.binDir, "pulumi"), ["config", "set", "--secret", "--stack", STACK, `${PROJECT}:sshPrivateKey`, "--non-interactive"], programDir,
    fs.readFileSync(lab.nodes[0].privateKeyPath, "utf8"), { ...process.env, ...engine.env });
});

afterAll(async () => {
  await stack?.destroy({ color: "never" }).catch(() => undefined);
  await cluster?.stop();
  await lab?.stop();
  engine?.cleanup();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const endpoint = () => `${lab.registry.host}:${lab.registry.port}`;
const stateFile = () => path.join(engine.backendDir, ".pulumi", "stacks", PROJECT, `${STACK}.json`);
type StateResource = { type: string; urn: string; inputs?: Record<string, unknown> };
const resources = (): StateResource[] =>
  fs.existsSync(stateFile()) ? (JSON.parse(fs.readFileSync(stateFile(), "utf8")).checkpoint.latest?.resources ?? []) : [];

/** sha256 fingerprints of the certificates in a PEM text, computed by node:crypto. */
const fingerprints = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((c) => new crypto.X509Certificate(c).fingerprint256);

async function nodeFiles(i: number): Promise<string[]> {
  const dir = `/etc/containerd/certs.d/${endpoint()}`;
  const r = await lab.nodes[i].exec(`ls -d ${dir} ${dir}/* 2>/dev/null; ls /usr/local/share/ca-certificates | grep registry-trust || true`);
  return r.stdout.split("\n").filter(Boolean);
}

async function pull(i: number): Promise<string> {
  const cri = lab.nodes[i].cri();
  try {
    await cri.removeImage(lab.registry.image).catch(() => undefined);
    return await cri.pullImage(lab.registry.image);
  } finally {
    cri.close();
  }
}

const caFileOf = (files: Array<{ path: string; content?: string }> | undefined) => files?.find((f) => f.path.endsWith(`${endpoint()}/ca.crt`));

describe("the consumer example from the packed package, under the real engine", () => {
  it("the tarball holds the compiled package and what it reads at run time, not the sources, tests or lab", () => {
    expect(packedFiles).toEqual(expect.arrayContaining([
      "package.json", "bin/registry-trust.cjs",
      "dist/components/index.js", "dist/components/index.d.ts", "dist/core/index.js", "dist/core/index.d.ts", "dist/cli/main.js",
      "dist/core/node/lib.sh",
    ]));
    const unexpected = packedFiles.filter((f) => !/^(dist\/|bin\/|package\.json$|README\.md$|CHANGELOG\.md$|LICENSE$)/.test(f) || (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)));
    expect(unexpected).toEqual([]);
    // Every non-TypeScript file the shipped folders hold in the checkout is in the package next to its code.
    const assets = ["components", "core", "cli"].flatMap((top) =>
      (fs.readdirSync(path.join(repoRoot, top), { recursive: true }) as string[]).filter((f) => !f.endsWith(".ts") && fs.statSync(path.join(repoRoot, top, f)).isFile()).map((f) => `dist/${top}/${f}`));
    expect(assets.length).toBeGreaterThan(0);
    expect(packedFiles).toEqual(expect.arrayContaining(assets));
  });

  it("the installed command runs from the package: its version, and a render that needs the shipped shell library", () => {
    const bin = path.join(programDir, "node_modules", ".bin", "registry-trust");
    expect(run(bin, ["--version"], programDir).trim()).toBe(`registry-trust ${pkg.version}`);
    const script = run(bin, ["render", "--os", "debian", "--runtime", "containerd", "--registry", endpoint(), "--ca-bundle", lab.registry.caPath], programDir);
    // POSIX sh that parses (sh -n), carrying the bundle's certificate (the files it writes travel base64-encoded).
    const file = path.join(work, "render.sh");
    fs.writeFileSync(file, script);
    run("sh", ["-n", file], work);
    const carried = [...script.matchAll(/'([A-Za-z0-9+/]{64,}={0,2})'/g)].map((m) => Buffer.from(m[1], "base64").toString("latin1")).join("\n");
    expect(fingerprints(carried)).toEqual(expect.arrayContaining(fingerprints(lab.registry.caPem)));
  });

  it("preview plans the example's resources and touches nothing", async () => {
    // Before: the nodes do not trust the registry, so the pulls after up prove what up installed.
    await expect(pull(0)).rejects.toThrow();
    const res = await stack.preview(opts());
    expect(res.changeSummary.create).toBeGreaterThan(0);
    expect(Object.keys(res.changeSummary).sort()).toEqual(["create"]);
    for (let i = 0; i < lab.nodes.length; i++) expect(await nodeFiles(i)).toEqual([]);
    const kcp = await clusterObjects(cluster.description).controlPlane();
    expect(caFileOf(kcp.spec.kubeadmConfigSpec.files)).toBeUndefined();
  });

  it("up: every node pulls through CRI, the KCP and the worker template carry the CA the registry's certificate chains to", async () => {
    const res = await stack.up(opts());
    expect(res.summary.result).toBe("succeeded");
    const types = resources().map((r) => r.type);
    expect(types).toEqual(expect.arrayContaining([
      "registry-trust:index:RegistryPki", "registry-trust:index:NodeTrust", "registry-trust:index:ControlPlaneTrust", "registry-trust:index:WorkerTrust",
      "command:remote:Command", "pulumi-nodejs:dynamic/registry-trust:ControlPlaneTrust", "pulumi-nodejs:dynamic/registry-trust:WorkerTrust",
    ]));
    const labCa = fingerprints(lab.registry.caPem);

    for (let i = 0; i < lab.nodes.length; i++) {
      expect(await pull(i)).toMatch(/^sha256:/);
      expect(await nodeFiles(i)).toEqual(expect.arrayContaining([`/etc/containerd/certs.d/${endpoint()}/hosts.toml`]));
    }
    const reports = res.outputs.nodeReports.value as Array<{ node: string; verified: string[] }>;
    expect(reports.map((r) => r.node).sort()).toEqual(lab.nodes.map((n) => n.name).sort());

    const objs = clusterObjects(cluster.description);
    const kcp = await objs.controlPlane();
    expect(fingerprints(caFileOf(kcp.spec.kubeadmConfigSpec.files)?.content ?? "")).toEqual(labCa);
    const md = await objs.machineDeployment();
    const template = md.spec.template.spec.bootstrap.configRef.name as string;
    expect(template).not.toBe(cluster.description.bootstrapTemplate);
    expect(res.outputs.workerTemplate.value).toBe(template);
    expect(fingerprints(caFileOf((await objs.template(template)).spec.template.spec.files)?.content ?? "")).toEqual(labCa);
  });

  it("the dynamic providers in the state load the installed package's modules through its exports map", () => {
    const dynamic = resources().filter((r) => r.type.startsWith("pulumi-nodejs:dynamic/"));
    expect(dynamic).toHaveLength(2);
    for (const r of dynamic) {
      const provider = String(r.inputs?.__provider ?? "");
      const required = [...provider.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]).filter((m) => m.startsWith(`${pkg.name}/`));
      // Captured by reference from node_modules (docs/packaging.md): a later delete runs the installed version.
      expect(required.length).toBeGreaterThan(0);
      const resolved = run(process.execPath, ["-e", "for (const m of JSON.parse(process.argv[1])) require.resolve(m); console.log('ok')", JSON.stringify(required)], programDir);
      expect(resolved.trim()).toBe("ok");
    }
  });

  it("a second preview changes nothing", async () => {
    const res = await stack.preview(opts());
    expect(Object.keys(res.changeSummary)).toEqual(["same"]);
  });

  it("destroy leaves nothing: no resources, no files on the nodes, the KCP and the MachineDeployment as they were", async () => {
    const res = await stack.destroy(opts());
    expect(res.summary.result).toBe("succeeded");
    expect(resources()).toEqual([]);
    for (let i = 0; i < lab.nodes.length; i++) expect(await nodeFiles(i)).toEqual([]);
    const objs = clusterObjects(cluster.description);
    const kcp = await objs.controlPlane();
    expect(caFileOf(kcp.spec.kubeadmConfigSpec.files)).toBeUndefined();
    expect((await objs.machineDeployment()).spec.template.spec.bootstrap.configRef.name).toBe(cluster.description.bootstrapTemplate);
    expect((await objs.templates()).map((t) => t.metadata.name)).toEqual([cluster.description.bootstrapTemplate]);
  });

  it("no private key appears in the engine's output or the backend's files", () => {
    const files = (fs.readdirSync(engine.backendDir, { recursive: true }) as string[]).map((f) => path.join(engine.backendDir, f)).filter((f) => fs.statSync(f).isFile());
    const texts: Array<[string, string]> = [...files.map((f): [string, string] => [f, fs.readFileSync(f, "utf8")]), ["engine output", printed.join("")]];
    for (const [what, text] of texts) expect({ what, privateKey: /PRIVATE KEY/.test(text) }).toEqual({ what, privateKey: false });
  });
});
