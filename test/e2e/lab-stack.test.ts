// The lab stack end to end on the real engine, no mocks: this repository's program directory and stack
// `lab` through the Automation API (so our Node.js language host runs index.ts), against the lab of real
// parts — TLS registry, SSH nodes with their own containerd, the real kube-apiserver with the Cluster API
// CRDs holding a KubeadmControlPlane and a MachineDeployment that simulated controllers keep writing.
// Needs `npm run pulumi:binaries` (CLI, language host, tls, kubernetes, command, pulumi-nodejs launcher),
// `npm run k8s:binaries` and the lab's packages; it never builds them.
import * as fs from "node:fs";
import * as path from "node:path";
import * as tls from "node:tls";
import * as crypto from "node:crypto";
import { LocalWorkspace, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import YAML from "yaml";
import { startCluster, clusterObjects, type LabCluster } from "../../lab/cluster";
import { adoptionConfig, writeLabStackConfig } from "../../lab/cluster-stack";
import { startLab, type Lab } from "../../lab/lab";
import { Engine, offlineEngine, runPulumi } from "./engine";

jest.setTimeout(900_000);

const repoRoot = path.resolve(__dirname, "..", "..");
const STACK = "lab";
const PROJECT = "registry-trust";
const OURS = "registry-trust.io/control-plane-trust";
/** Our ownership annotations on an object: one per stack (OURS.<hash of project/stack>), plus OURS from before ownership per stack. */
const ownerships = (annotations: Record<string, string> | undefined) =>
  Object.entries(annotations ?? {}).filter(([k]) => k === OURS || k.startsWith(`${OURS}.`)).map(([, v]) => JSON.parse(v) as { owner?: string; bundleHash: string });

let engine: Engine;
let lab: Lab;
let cluster: LabCluster;
let configFile: string;
let stack: Stack;
const committedConfig = path.join(repoRoot, "stacks", `Pulumi.${STACK}.yaml`);
const sha = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
const committedBefore = sha(committedConfig);
/** Everything the engine printed in this file's runs (scanned for private keys at the end). */
const printed: string[] = [];

// Default engine output, as an operator sees and keeps it. Not -v: at -v=3 and above (with --logtostderr)
// the Node.js SDK's own debug line "RegisterResource RPC finished: … resp: …" prints resource outputs,
// secrets in the clear (docs/lab-stack.md).
const opts = (extra: Record<string, unknown> = {}) => ({
  color: "never" as const,
  onOutput: (s: string) => printed.push(s), onError: (s: string) => printed.push(s), ...extra,
});

beforeAll(async () => {
  engine = await offlineEngine(["tls", "kubernetes", "command", "pulumi-nodejs"]);
  lab = await startLab({ nodes: 2 });
  cluster = await startCluster(path.join(lab.dir, "cluster"));
  const labStack = await writeLabStackConfig({ lab: lab.describe(), cluster: cluster.description, stack: STACK, env: { ...process.env, ...engine.env } });
  configFile = labStack.configFile;
  // The lab's pulumi: the filled copy in the committed stack file's place, registry.test resolvable (the
  // program's rotation preflight and the serving switch read what it serves); lab/cluster-stack.ts.
  const wrapper = labStack.pulumi;
  const pulumiCommand = await PulumiCommand.get({ root: path.dirname(path.dirname(wrapper)), skipVersionCheck: true });
  stack = await LocalWorkspace.selectStack(
    { stackName: STACK, workDir: repoRoot },
    { pulumiCommand, envVars: engine.env, pulumiHome: engine.home },
  );
});

afterAll(async () => {
  await stack?.destroy({ color: "never" }).catch(() => undefined);
  await cluster?.stop();
  await lab?.stop();
  engine?.cleanup();
});

const stateFile = () => path.join(engine.backendDir, ".pulumi", "stacks", PROJECT, `${STACK}.json`);
const resources = (): Array<{ type: string; urn: string }> => {
  if (!fs.existsSync(stateFile())) return [];
  return JSON.parse(fs.readFileSync(stateFile(), "utf8")).checkpoint.latest?.resources ?? [];
};
const endpoint = () => `${lab.registry.host}:${lab.registry.port}`;

/** What registry-trust left on a node: the containerd hosts dir for the registry and our OS-store files. */
async function nodeFiles(i: number): Promise<string[]> {
  const r = await lab.nodes[i].exec(
    `ls -d /etc/containerd/certs.d/${endpoint()} 2>/dev/null; ls /usr/local/share/ca-certificates | grep registry-trust || true`,
  );
  return r.stdout.split("\n").filter(Boolean);
}

/** A CRI pull of the lab image on node i, the kubelet's path, after dropping a cached copy. */
async function pull(i: number): Promise<string> {
  const cri = lab.nodes[i].cri();
  try {
    await cri.removeImage(lab.registry.image).catch(() => undefined);
    return await cri.pullImage(lab.registry.image);
  } finally {
    cri.close();
  }
}

/** The certificate the registry serves right now (no trust evaluated). */
function served(): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port: lab.registry.port, servername: lab.registry.host, rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate());
      s.end();
    });
    s.once("error", reject);
  });
}

const pemCount = (pem: string) => (pem.match(/BEGIN CERTIFICATE/g) ?? []).length;

async function kcpFile(suffix: string) {
  const kcp = await clusterObjects(cluster.description).controlPlane();
  return { kcp, file: (kcp.spec.kubeadmConfigSpec.files as Array<{ path: string; content?: string }>).find((f) => f.path.endsWith(suffix)) };
}

async function mdTemplate() {
  const objs = clusterObjects(cluster.description);
  const md = await objs.machineDeployment();
  const name = md.spec.template.spec.bootstrap.configRef.name as string;
  return { md, name, template: await objs.template(name) };
}

describe("the lab stack under the real engine", () => {
  it("refuses a node whose host is not a host name, before any resource is touched", async () => {
    const bad = path.join(lab.dir, "Pulumi.lab.bad.yaml");
    const doc = YAML.parseDocument(fs.readFileSync(configFile, "utf8"));
    doc.setIn(["config", `${PROJECT}:nodes`, 0, "host"], "bad host;rm");
    fs.writeFileSync(bad, doc.toString());
    let message = "";
    try {
      await stack.up(opts({ configFile: bad }));
    } catch (e) {
      message = String(e);
    }
    expect(message).toMatch(/nodes\[0\]\.host/);
    expect(message).toContain("bad host;rm");
    // Only the stack's own root resource, which the engine registers before the program runs.
    expect(resources().filter((r) => r.type !== "pulumi:pulumi:Stack")).toEqual([]);
    for (let i = 0; i < lab.nodes.length; i++) expect(await nodeFiles(i)).toEqual([]);
    const { file } = await kcpFile(`${endpoint()}/ca.crt`);
    expect(file).toBeUndefined();
    expect((await mdTemplate()).name).toBe(cluster.description.bootstrapTemplate);
  });

  it("adoption: a first up without nodes and clusters switches the registry to this stack's certificate and touches nothing else", async () => {
    // The lab registry starts out serving a certificate of the lab's own CA, which is not in the stack's
    // bundle; NodeTrust verifies on each node before the serving switch, so the full run cannot go first.
    expect((await served()).issuer.CN).toBe("registry-trust lab CA");
    const res = await stack.up(opts({ configFile: adoptionConfig(configFile) }));
    expect(res.summary.result).toBe("succeeded");
    expect((await served()).issuer.CN).toBe("registry-trust lab stack CA G1");
    for (let i = 0; i < lab.nodes.length; i++) expect(await nodeFiles(i)).toEqual([]);
    expect((await kcpFile(`${endpoint()}/ca.crt`)).file).toBeUndefined();
    expect((await mdTemplate()).name).toBe(cluster.description.bootstrapTemplate);
  });

  it("up: every node pulls through CRI, the KCP and the worker template carry the bundle", async () => {
    const res = await stack.up(opts());
    expect(res.summary.result).toBe("succeeded");
    const bundlePem = res.outputs.bundlePem.value as string;
    const bundleHash = res.outputs.bundleHash.value as string;
    expect(pemCount(bundlePem)).toBe(1);

    for (let i = 0; i < lab.nodes.length; i++) {
      expect(await pull(i)).toMatch(/^sha256:/);
      expect(await nodeFiles(i)).toEqual(expect.arrayContaining([`/etc/containerd/certs.d/${endpoint()}`]));
    }
    const reports = res.outputs.nodes.value as Array<{ node: string; bundleSha256: string; verified: string[] }>;
    expect(reports.map((r) => r.node).sort()).toEqual(lab.nodes.map((n) => n.name).sort());
    for (const r of reports) expect(r.verified).toContain(`cri-pull:${lab.registry.image}`);

    const { kcp, file } = await kcpFile(`${endpoint()}/ca.crt`);
    expect(file?.content).toBe(bundlePem);
    expect(ownerships(kcp.metadata.annotations)).toEqual([expect.objectContaining({ bundleHash })]);
    // Other writers' files are still there, byte for byte.
    expect(kcp.spec.kubeadmConfigSpec.files.map((f: { path: string }) => f.path)).toEqual(expect.arrayContaining(["/etc/kubernetes/admission.yaml", "/etc/platform/motd", "/etc/platform/token"]));
    expect(kcp.status?.observedGeneration).toBeGreaterThanOrEqual(kcp.metadata.generation);

    const { name, template } = await mdTemplate();
    expect(name).not.toBe(cluster.description.bootstrapTemplate);
    expect(template.spec.template.spec.files.find((f: { path: string }) => f.path.endsWith(`${endpoint()}/ca.crt`))?.content).toBe(bundlePem);

    // The registry serves this stack's certificate (the serving switch ran after everything trusted the bundle).
    expect((await served()).issuer.CN).toBe("registry-trust lab stack CA G1");
  });

  it("a second up changes nothing: preview reports only unchanged resources", async () => {
    const preview = await stack.preview(opts());
    expect(Object.keys(preview.changeSummary)).toEqual(["same"]);
  });

  it("raising caGeneration rotates: the bundle carries both generations, nodes and cluster follow, then the registry serves the new CA's certificate", async () => {
    const { file: oldFile } = await kcpFile(`${endpoint()}/ca.crt`);
    const oldTemplate = (await mdTemplate()).name;
    runPulumi(engine, ["config", "set", "--config-file", configFile, "--stack", STACK, `${PROJECT}:caGeneration`, "2"], repoRoot);
    const res = await stack.up(opts());
    expect(res.summary.result).toBe("succeeded");
    const bundlePem = res.outputs.bundlePem.value as string;
    expect(pemCount(bundlePem)).toBe(2);
    expect(bundlePem).toContain(oldFile!.content!.trim());

    const { file } = await kcpFile(`${endpoint()}/ca.crt`);
    expect(file?.content).toBe(bundlePem);
    const { name, template } = await mdTemplate();
    expect(name).not.toBe(oldTemplate);
    expect(template.spec.template.spec.files.find((f: { path: string }) => f.path.endsWith(`${endpoint()}/ca.crt`))?.content).toBe(bundlePem);
    for (let i = 0; i < lab.nodes.length; i++) expect(await pull(i)).toMatch(/^sha256:/);
    expect((await served()).issuer.CN).toBe("registry-trust lab stack CA G2");
  });

  it("destroy removes everything the stack installed from nodes and cluster", async () => {
    const res = await stack.destroy(opts());
    expect(res.summary.result).toBe("succeeded");
    expect(resources()).toEqual([]);
    for (let i = 0; i < lab.nodes.length; i++) expect(await nodeFiles(i)).toEqual([]);
    const { kcp, file } = await kcpFile(`${endpoint()}/ca.crt`);
    expect(file).toBeUndefined();
    expect(ownerships(kcp.metadata.annotations)).toEqual([]);
    expect(kcp.spec.kubeadmConfigSpec.files.map((f: { path: string }) => f.path)).toEqual(["/etc/kubernetes/admission.yaml", "/etc/platform/motd", "/etc/platform/token"]);
    const objs = clusterObjects(cluster.description);
    expect((await mdTemplate()).name).toBe(cluster.description.bootstrapTemplate);
    expect((await objs.templates()).map((t) => t.metadata.name)).toEqual([cluster.description.bootstrapTemplate]);
  });

  it("no private key appears outside Pulumi's secret encoding: every state the backend kept, PULUMI_HOME, stack export, config file, engine output", () => {
    // The backend keeps each update's checkpoint under .pulumi/history and .pulumi/backups, so this covers
    // the states in which the CA and serving keys existed, not only the empty one after destroy.
    const filesUnder = (dir: string) => (fs.readdirSync(dir, { recursive: true }) as string[]).map((f) => path.join(dir, f)).filter((f) => fs.statSync(f).isFile());
    const files = filesUnder(engine.backendDir);
    const checkpoints = files.filter((f) => f.endsWith(".json") && fs.readFileSync(f, "utf8").includes("tls:index/privateKey:PrivateKey"));
    expect(checkpoints.length).toBeGreaterThan(0);
    const exported = runPulumi(engine, ["stack", "export", "--stack", STACK], repoRoot);
    const config = fs.readFileSync(configFile, "utf8");
    expect(printed.join("")).toContain("pulumi-nodejs:dynamic/registry-trust:ControlPlaneTrust");
    const texts: Array<[string, string]> = [
      // PULUMI_HOME too: where the engine keeps workspace settings and any log files it writes. Not its
      // plugins/, the plugin binaries installed before the run: the command plugin's SSH library carries
      // "OPENSSH PRIVATE KEY" as a literal.
      ...[...files, ...filesUnder(engine.home).filter((f) => !f.startsWith(path.join(engine.home, "plugins") + path.sep))]
        .map((f): [string, string] => [f, fs.readFileSync(f, "utf8")]),
      ["stack export", exported], ["config file", config], ["engine output", printed.join("")],
    ];
    for (const [what, text] of texts) expect({ what, privateKey: /PRIVATE KEY/.test(text) }).toEqual({ what, privateKey: false });
    expect(YAML.parse(config).config[`${PROJECT}:sshPrivateKey`]).toMatchObject({ secure: expect.any(String) });
  });

  it("left the committed stacks/Pulumi.lab.yaml as it was (run-time values went to the lab's copy)", () => {
    expect(sha(committedConfig)).toBe(committedBefore);
  });
});
