// `registry-trust rollout` and `drift` on the real engine and the lab, no mocks: three stacks (dev, staging,
// prod; one lab node each, one registry, no cluster) deployed with this repository's program, then one
// change — a second CA added to the imported bundle, as in an enterprise CA rollover — promoted through
// them. A gate fails on purpose in the middle stack (someone left `skip_verify` in a node's containerd
// _default hosts.toml, which doctor flags and NodeTrust does not touch): the rollout stops before prod;
// after the fix, --resume finishes. Then the CI examples' steps run as scripts against the same stacks,
// and the scheduled drift check reports edits on the nodes.
//
// Everything runs as a subprocess, as a pipeline would: the CLI (bin/registry-trust.cjs) and `pulumi` inside
// a private mount namespace where the registry's name resolves (as on the nodes) and stacks/ is a temp dir
// holding these three stacks' config (the committed stacks/ are never read or written). Needs
// `npm run pulumi:binaries`, the lab's packages and crictl (scripts/test-prereqs.sh); it never builds them.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import YAML from "yaml";
import { startLab, type Lab } from "../../lab/lab";
import { parsePemCertificates } from "../../core/x509/pem";
import { TestPki } from "../../lab/openssl-pki";
import { Engine, offlineEngine } from "./engine";

jest.setTimeout(1_800_000);

const REPO = path.resolve(__dirname, "..", "..");
const STACKS = ["dev", "staging", "prod"] as const;
type StackName = (typeof STACKS)[number];
const NS_SCRIPT = 'mount --bind "$1" /etc/hosts && mount --bind "$2" "$3" && shift 3 && exec "$@"';

let engine: Engine;
let lab: Lab;
let work: string;
let stacksDir: string;
let rolloutFile: string;
const pki = new TestPki();
const committedStacks = fs.readdirSync(path.join(REPO, "stacks")).sort();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv in the namespace (registry name resolvable, stacks/ = the temp dir), from the repository. */
function inNs(argv: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn("unshare", ["--mount", "--propagation", "private", "sh", "-c", NS_SCRIPT, "sh", path.join(work, "hosts"), stacksDir, path.join(REPO, "stacks"), ...argv], {
      cwd: REPO,
      env: opts.env ?? { ...process.env, ...engine.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.input ?? "");
  });
}

async function ok(argv: string[], input?: string): Promise<string> {
  const r = await inNs(argv, { input });
  if (r.code !== 0) throw new Error(`${argv.join(" ")} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const cliArgs = (...args: string[]) => [process.execPath, path.join(REPO, "bin", "registry-trust.cjs"), ...args];
const nodeOf = (s: StackName) => lab.nodes[STACKS.indexOf(s)];
const endpoint = () => `${lab.registry.host}:${lab.registry.port}`;
const caPath = () => `/etc/containerd/certs.d/${endpoint()}/ca.crt`;
const hostsPath = () => `/etc/containerd/certs.d/${endpoint()}/hosts.toml`;
/** The CAs in the node's containerd ca.crt for the registry, by SHA-256 fingerprint. */
async function nodeCa(s: StackName): Promise<string[]> {
  return cas((await nodeOf(s).exec(`cat '${caPath()}'`)).stdout);
}
const cas = (pem: string) => parsePemCertificates(pem, "ca").certs.map((c) => c.fingerprint256).sort();
const stackFile = (s: StackName) => path.join(stacksDir, `Pulumi.${s}.yaml`);

function setBundle(s: StackName, pem: string): void {
  const doc = YAML.parseDocument(fs.readFileSync(stackFile(s), "utf8"));
  doc.setIn(["config", "registry-trust:caBundle"], pem);
  fs.writeFileSync(stackFile(s), doc.toString());
}

interface JsonRun {
  code: number;
  events: Array<{ stack: string; phase: string; status: string; message: string; elapsedMs: number }>;
  summary: { ok: boolean; done: string[]; failures: Array<{ stack: string; phase: string; object: string; message: string; fix: string }> };
}
async function rolloutJson(...extra: string[]): Promise<JsonRun> {
  const r = await inNs(cliArgs("rollout", "--file", rolloutFile, "--json", ...extra));
  const docs = r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const summary = docs.find((d) => d.summary)?.summary;
  if (!summary) throw new Error(`no summary (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return { code: r.code, events: docs.filter((d) => d.event).map((d) => d.event), summary };
}

const labCaPem = () => lab.registry.caPem;
const newCaPem = pki.root("registry-trust e2e Enterprise Root G2").certPem;

beforeAll(async () => {
  engine = await offlineEngine(["tls", "kubernetes", "command", "pulumi-nodejs"]);
  lab = await startLab({ nodes: 3 });
  work = fs.mkdtempSync(path.join(os.tmpdir(), "rt-rollout-"));
  stacksDir = path.join(work, "stacks");
  fs.mkdirSync(stacksDir);
  fs.writeFileSync(path.join(work, "hosts"), `${fs.readFileSync("/etc/hosts", "utf8").trimEnd()}\n${lab.registry.address} ${lab.registry.host}\n`);
  rolloutFile = path.join(work, "rollout.yaml");
  fs.writeFileSync(rolloutFile, YAML.stringify({
    project: REPO,
    state: path.join(work, "rollout-state.json"),
    stacks: STACKS.map((name) => ({ name, gates: { doctor: { sample: 1 } } })),
  }));
  // Import mode: the bundle is the lab registry's own CA (what it serves), the serving certificate is
  // external and not switched: three stacks can share one registry without taking it from each other.
  for (const s of STACKS) {
    const n = nodeOf(s);
    fs.writeFileSync(stackFile(s), YAML.stringify({
      config: {
        "registry-trust:caMode": "import",
        "registry-trust:caBundle": labCaPem(),
        "registry-trust:servingCertMode": "external",
        "registry-trust:registries": [{ host: lab.registry.host, port: lab.registry.port }],
        "registry-trust:nodes": [{ name: n.name, host: n.host, port: n.port, hostKey: n.hostKey }],
        "registry-trust:sshUser": "root",
        "registry-trust:nodeOs": "debian",
        "registry-trust:nodeRuntimes": ["containerd"],
        "registry-trust:probeImage": lab.registry.image,
      },
    }));
    await ok(["pulumi", "stack", "init", s, "--non-interactive"]);
    await ok(["pulumi", "config", "set", "--secret", "--stack", s, "registry-trust:sshPrivateKey", "--non-interactive"], fs.readFileSync(n.privateKeyPath, "utf8"));
    await ok(["pulumi", "up", "--stack", s, "--yes", "--non-interactive", "--color", "never", "--suppress-progress"]);
  }
});

afterAll(async () => {
  if (work) {
    for (const s of STACKS) await inNs(["pulumi", "destroy", "--stack", s, "--yes", "--non-interactive"]).catch(() => undefined);
  }
  await lab?.stop();
  engine?.cleanup();
  pki.cleanup();
  if (work) fs.rmSync(work, { recursive: true, force: true });
  expect(fs.readdirSync(path.join(REPO, "stacks")).sort()).toEqual(committedStacks);
});

describe("registry-trust rollout through dev → staging → prod", () => {
  const bundle2 = () => `${labCaPem().trimEnd()}\n${newCaPem.trimEnd()}\n`;

  it("a failing gate in staging stops the rollout before prod, naming stack, gate, node and fix", async () => {
    for (const s of STACKS) expect(await nodeCa(s)).toEqual(cas(labCaPem()));
    // The change being promoted, and the trap on staging's node.
    for (const s of STACKS) setBundle(s, bundle2());
    await nodeOf("staging").exec("mkdir -p /etc/containerd/certs.d/_default && printf 'server = \"https://docker.io\"\\nskip_verify = true\\n' > /etc/containerd/certs.d/_default/hosts.toml");

    const run = await rolloutJson();
    expect(run.code).toBe(1);
    expect(run.summary.ok).toBe(false);
    expect(run.summary.done).toEqual(["dev"]);
    const [f] = run.summary.failures;
    expect(f).toMatchObject({ stack: "staging", phase: "doctor", object: `node ${nodeOf("staging").name}` });
    expect(f.message).toContain("INSECURE_SKIP_VERIFY");
    expect(f.message).toContain("/etc/containerd/certs.d/_default/hosts.toml");
    expect(f.fix).toMatch(/Remove the setting/);

    // Phases in order, per stack; nothing of prod ran.
    const seq = run.events.filter((e) => e.status !== "info").map((e) => `${e.stack}:${e.phase}:${e.status}`);
    expect(seq).toEqual([
      "dev:preview:start", "dev:preview:ok", "dev:up:start", "dev:up:ok", "dev:inspect:start", "dev:inspect:ok",
      "dev:doctor:start", "dev:doctor:ok", "dev:clusters:skip", "dev:rollout:ok",
      "staging:preview:start", "staging:preview:ok", "staging:up:start", "staging:up:ok", "staging:inspect:start", "staging:inspect:ok",
      "staging:doctor:start", "staging:doctor:fail",
    ]);
    for (let i = 1; i < run.events.length; i++) expect(run.events[i].elapsedMs).toBeGreaterThanOrEqual(run.events[i - 1].elapsedMs);
    // The preview of a bundle change is an in-place update of the node's command.
    expect(run.events.find((e) => e.stack === "dev" && e.phase === "preview" && e.status === "ok")?.message).toMatch(/\d+ update/);

    expect(await nodeCa("dev")).toEqual(cas(bundle2()));
    expect(await nodeCa("staging")).toEqual(cas(bundle2()));
    expect(await nodeCa("prod")).toEqual(cas(labCaPem()));
  });

  it("without --resume a stopped rollout is not started over", async () => {
    const r = await inNs(cliArgs("rollout", "--file", rolloutFile));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('stopped at stack "staging"');
    expect(r.stderr).toContain("--resume");
  });

  it("after the fix, --resume re-runs staging's gates and finishes prod", async () => {
    await nodeOf("staging").exec("rm -rf /etc/containerd/certs.d/_default");
    const r = await inNs(cliArgs("rollout", "--file", rolloutFile, "--resume"));
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    // Progress lines: [elapsed] stack phase status message.
    expect(lines).toContainEqual(expect.stringMatching(/^\[\d\d:\d\d\] dev\s+rollout\s+skip\s/));
    expect(lines).toContainEqual(expect.stringMatching(/^\[\d\d:\d\d\] staging\s+up\s+skip\s/));
    expect(lines.some((l) => /^\[\d\d:\d\d\] staging\s+preview\s/.test(l))).toBe(false);
    expect(lines).toContainEqual(expect.stringMatching(/^\[\d\d:\d\d\] staging\s+doctor\s+ok\s/));
    expect(lines).toContainEqual(expect.stringMatching(/^\[\d\d:\d\d\] prod\s+up\s+ok\s/));
    expect(r.stdout).toMatch(/rollout done: dev → staging → prod/);
    expect(await nodeCa("prod")).toEqual(cas(bundle2()));
  });

  it("a preview with more than a rotation (a node's address changed) is refused before up", async () => {
    const doc = YAML.parseDocument(fs.readFileSync(stackFile("dev"), "utf8"));
    const before = doc.toString();
    const other = lab.nodes[1];
    doc.setIn(["config", "registry-trust:nodes"], [{ name: nodeOf("dev").name, host: other.host, port: other.port, hostKey: other.hostKey }]);
    fs.writeFileSync(stackFile("dev"), doc.toString());
    try {
      const file = path.join(work, "rollout-dev.yaml");
      fs.writeFileSync(file, YAML.stringify({ project: REPO, state: path.join(work, "state-dev.json"), stacks: [{ name: "dev" }] }));
      const r = await inNs(cliArgs("rollout", "--file", file, "--json"));
      expect(r.code).toBe(1);
      const summary = JSON.parse(r.stdout.trim().split("\n").pop()!).summary;
      expect(summary.failures[0]).toMatchObject({ stack: "dev", phase: "preview" });
      expect(summary.failures[0].object).toContain("command:remote:Command");
      // The engine plans either an in-place update of `connection` or a replacement: both are refused.
      expect(summary.failures[0].message).toMatch(/connection|replace/);
      expect(await nodeCa("dev")).toEqual(cas(bundle2()));
    } finally {
      fs.writeFileSync(stackFile("dev"), before);
    }
  });
});

// ---- the CI examples' steps, as scripts -------------------------------------------------------------

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The CI's secret store: what the examples take from `secrets.*` (GitHub) or CI/CD variables (GitLab). */
const secretStore = () => ({ PULUMI_BACKEND_URL: engine.env.PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE: engine.passphrase });

function expand(value: unknown, matrix: Record<string, string>): string {
  return String(value).replace(/\$\{\{\s*([^}]+?)\s*\}\}/g, (_, expr: string) => {
    const secret = /^secrets\.(\w+)$/.exec(expr);
    if (secret) return (secretStore() as Record<string, string>)[secret[1]] ?? "";
    const m = /^matrix\.(\w+)$/.exec(expr);
    if (m) return matrix[m[1]];
    throw new Error(`expression not supported by this runner: ${expr}`);
  });
}

interface Script {
  where: string;
  run: string;
  env: Record<string, string>;
}

/**
 * The `run` steps of a workflow's jobs in order (each job after its `needs`), for each matrix value. Steps
 * that are the runner's setup are left out, as the lab machine is already set up: actions (`uses`:
 * checkout, Node.js, the Pulumi CLI) and `npm install`.
 */
function githubScripts(file: string): Script[] {
  const wf = YAML.parse(fs.readFileSync(file, "utf8")) as Obj;
  const out: Script[] = [];
  for (const [name, job] of Object.entries(wf.jobs as Record<string, Obj>)) {
    const matrix = (job.strategy?.matrix ?? {}) as Record<string, string[]>;
    const keys = Object.keys(matrix);
    const combos: Record<string, string>[] = keys.length ? matrix[keys[0]].map((v) => ({ [keys[0]]: v })) : [{}];
    for (const combo of combos) {
      for (const step of job.steps as Obj[]) {
        if (step.uses || !step.run || /^npm install\b/.test(step.run)) continue;
        const env = Object.fromEntries(Object.entries({ ...wf.env, ...job.env, ...step.env }).map(([k, v]) => [k, expand(v, combo)]));
        out.push({ where: `${path.basename(file)} ${name}${keys.length ? ` ${JSON.stringify(combo)}` : ""}: ${step.name ?? step.run}`, run: step.run, env });
      }
    }
  }
  return out;
}

/** GitLab jobs' `script` (after `extends`), with their variables and matrix values; before_script is the runner's setup. */
function gitlabScripts(file: string, jobs: string[]): Script[] {
  const doc = YAML.parse(fs.readFileSync(file, "utf8")) as Obj;
  const out: Script[] = [];
  for (const name of jobs) {
    const job = { ...(doc[name].extends ? doc[doc[name].extends] : {}), ...doc[name] };
    const combos: Record<string, string>[] = job.parallel?.matrix
      ? (job.parallel.matrix as Obj[]).flatMap((m) => Object.entries(m).flatMap(([k, vs]) => (vs as string[]).map((v) => ({ [k]: v }))))
      : [{}];
    for (const combo of combos) {
      out.push({ where: `.gitlab-ci.yml ${name} ${JSON.stringify(combo)}`, run: (job.script as string[]).join("\n"), env: { ...doc.variables, ...secretStore(), ...job.variables, ...combo } });
    }
  }
  return out;
}

async function runScripts(scripts: Script[]): Promise<void> {
  // The backend and passphrase reach a step only through the example's own env/variables.
  const base: NodeJS.ProcessEnv = { ...process.env, ...engine.env };
  delete base.PULUMI_BACKEND_URL;
  delete base.PULUMI_CONFIG_PASSPHRASE;
  for (const s of scripts) {
    const r = await inNs(["bash", "-e", "-o", "pipefail", "-c", s.run], { env: { ...base, ...s.env } });
    if (r.code !== 0) throw new Error(`${s.where} failed (${r.code}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
  }
}

describe("the CI examples' steps on the lab", () => {
  it("GitHub: pull-request previews with the policy pack, deploy dev → staging → prod, scheduled renewal and drift; GitLab: a rollout job and drift", async () => {
    const gh = path.join(REPO, "examples", "ci", "github");
    const scripts = [
      ...githubScripts(path.join(gh, "pull-request.yml")),
      ...githubScripts(path.join(gh, "deploy.yml")),
      ...githubScripts(path.join(gh, "scheduled.yml")),
      // GitLab's jobs run the same commands; one rollout job (through `extends` and its variables) and drift.
      ...gitlabScripts(path.join(REPO, "examples", "ci", "gitlab", ".gitlab-ci.yml"), ["rollout-prod", "drift"]),
    ];
    // What runs: 3 previews, 3 rollouts, 3 renewals and a drift check (GitHub), a rollout and a drift check (GitLab).
    expect(scripts.map((s) => s.run.split(" ").slice(0, 3).join(" "))).toEqual([
      ...Array(3).fill("pulumi preview --stack"),
      ...Array(6).fill("npx registry-trust rollout"),
      "npx registry-trust drift",
      "npx registry-trust rollout",
      "npx registry-trust drift",
    ]);
    await runScripts(scripts);
  });
});

describe("registry-trust drift (the scheduled job)", () => {
  it("reports each node whose trust files were edited, and what changed", async () => {
    const clean = await inNs(cliArgs("drift", "--file", rolloutFile));
    expect(clean.stdout).toContain("no drift on 3 node(s)");
    expect(clean.code).toBe(0);

    await nodeOf("prod").exec(`printf '  skip_verify = true\\n' >> '${hostsPath()}'`);
    await nodeOf("staging").exec(`rm '${caPath()}'`);
    const r = await inNs(cliArgs("drift", "--file", rolloutFile, "--json"));
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as { ok: boolean; nodes: number; changes: Array<{ node: string; what: string; kind: string; detail: string }> };
    expect(report.ok).toBe(false);
    expect(report.nodes).toBe(3);
    const prod = `prod/${nodeOf("prod").name}`;
    const staging = `staging/${nodeOf("staging").name}`;
    expect(report.changes).toContainEqual(expect.objectContaining({ node: prod, what: hostsPath(), kind: "changed", detail: expect.stringContaining("+ skip_verify = true") }));
    expect(report.changes).toContainEqual(expect.objectContaining({ node: prod, kind: "INSECURE_SKIP_VERIFY" }));
    expect(report.changes).toContainEqual(expect.objectContaining({ node: staging, what: caPath(), kind: "removed" }));
    expect(report.changes.filter((c) => c.node.startsWith("dev/"))).toEqual([]);
  });
});
