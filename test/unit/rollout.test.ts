/**
 * The engine-free half of `registry-trust rollout` and `drift` (core/rollout): the rollout file, the
 * allowed-change check on a preview, the resume point, the node sample, the gates' judgement on real
 * certificates (openssl) and the drift comparison with what NodeTrust renders. The rollout on the real
 * engine and lab is test/e2e/rollout.test.ts.
 */
import { join } from "node:path";
import { containerdCaPath, containerdHostsFiles, CONTAINERD_CERTS_DIR } from "../../core/node/containerd-hosts";
import { NodeDump, DumpFile } from "../../core/doctor/dump";
import { disallowedChanges, PreviewStep } from "../../core/rollout/allowed";
import { fileDrift } from "../../core/rollout/drift";
import { clusterGate, doctorGate, inspectGate } from "../../core/rollout/gates";
import { DEFAULT_GATES, parseRolloutFile, RolloutFileError } from "../../core/rollout/plan";
import { progressLine, summaryText } from "../../core/rollout/report";
import { sampleNodes } from "../../core/rollout/sample";
import { newState, ResumeError, RolloutState, startPoint } from "../../core/rollout/state";
import { parsePemCertificates } from "../../core/x509/pem";
import { TestPki } from "../../lab/openssl-pki";
import { cli } from "../support/cli";

const FILE = "/repo/rollout.yaml";
const THREE = "stacks:\n  - name: dev\n  - name: staging\n    gates: {doctor: {sample: 2}}\n  - name: prod\n    gates: {doctor: {sample: 3}, clusterTimeoutSeconds: 900}\n";

describe("rollout file", () => {
  test("stacks in order, gates defaulted, paths relative to the file", () => {
    const plan = parseRolloutFile(THREE, FILE);
    expect(plan.stacks.map((s) => s.name)).toEqual(["dev", "staging", "prod"]);
    expect(plan.stacks[0].gates).toEqual(DEFAULT_GATES);
    expect(plan.stacks[1].gates.doctor).toEqual({ sample: 2 });
    expect(plan.stacks[2].gates.clusterTimeoutSeconds).toBe(900);
    expect(plan.project).toBe("/repo");
    expect(plan.stateFile).toBe("/repo/.registry-trust/rollout-state.json");
  });

  test("every problem is reported at once with field, value and fix", () => {
    const text = "stacks:\n  - name: dev\n    gates: {doctor: {sample: 0}, inspekt: true}\n  - name: dev\n  - name: 'bad name'\nextra: 1\n";
    let message = "";
    try {
      parseRolloutFile(text, FILE);
    } catch (e) {
      expect(e).toBeInstanceOf(RolloutFileError);
      message = (e as Error).message;
    }
    expect(message).toContain('stacks[0].gates.doctor = {"sample":0}');
    expect(message).toContain("stacks[0].gates.inspekt");
    expect(message).toContain('stacks[1].name = "dev": appears twice');
    expect(message).toContain('stacks[2].name = "bad name"');
    expect(message).toContain("extra = 1: unknown field");
  });

  test("the repository's rollout.yaml is valid and promotes dev → staging → prod", () => {
    const { readFileSync } = require("node:fs") as typeof import("node:fs");
    const file = join(__dirname, "..", "..", "rollout.yaml");
    expect(parseRolloutFile(readFileSync(file, "utf8"), file).stacks.map((s) => s.name)).toEqual(["dev", "staging", "prod"]);
  });
});

const step = (op: string, type: string, diffs?: string[]): PreviewStep => ({ op, type, urn: `urn:pulumi:dev::registry-trust::${type}::x`, diffs });

describe("what a rotation may change", () => {
  test("a CA rotation's preview passes: new CA generation, new serving certificate, node scripts and cluster objects updated", () => {
    const steps = [
      step("same", "pulumi:pulumi:Stack"),
      step("create", "tls:index/privateKey:PrivateKey"),
      step("create", "tls:index/selfSignedCert:SelfSignedCert"),
      step("replace", "tls:index/locallySignedCert:LocallySignedCert"),
      step("update", "command:remote:Command", ["create", "stdin", "triggers"]),
      step("update", "pulumi-nodejs:dynamic:Resource", ["bundlePem"]),
      step("update", "kubernetes:core/v1:ConfigMap", ["data"]),
      step("update", "pulumi:pulumi:Stack"),
    ];
    expect(disallowedChanges(steps)).toEqual([]);
  });

  test.each([
    [step("create", "command:remote:Command"), /create of a node's trust script/],
    [step("delete", "command:remote:Command"), /delete of a node's trust script/],
    [step("replace", "command:remote:Command"), /replace of a node's trust script/],
    [step("update", "command:remote:Command", ["connection", "stdin"]), /changes connection/],
    [step("update", "tls:index/selfSignedCert:SelfSignedCert", ["subject"]), /CA generation/],
    [step("replace", "tls:index/selfSignedCert:SelfSignedCert"), /CA generation/],
    [step("create", "aws:s3/bucket:Bucket"), /not a resource a rotation touches/],
    [step("delete", "kubernetes:core/v1:Secret"), /delete of the serving Secret/],
  ])("refuses %j", (s, why) => {
    const v = disallowedChanges([s]);
    expect(v).toHaveLength(1);
    expect(v[0].why).toMatch(why);
    expect(v[0].urn).toBe(s.urn);
  });
});

describe("resume", () => {
  const plan = parseRolloutFile(THREE, FILE);
  const base = newState(plan, THREE, new Date(0));
  test("a stop in a gate resumes at that stack's gates, after the done ones", () => {
    const s: RolloutState = { ...base, done: ["dev"], current: { stack: "staging", phase: "up" }, failures: [{ stack: "staging", phase: "doctor", object: "node x", message: "m", fix: "f" }] };
    expect(startPoint(plan, THREE, s, true)).toEqual({ index: 1, gatesOnly: true });
  });
  test("a stop in up starts that stack over with its preview (a config fix needs a new preview and up)", () => {
    const s: RolloutState = { ...base, done: ["dev"], current: { stack: "staging", phase: "preview" }, failures: [{ stack: "staging", phase: "up", object: "stack staging", message: "m", fix: "f" }] };
    expect(startPoint(plan, THREE, s, true)).toEqual({ index: 1, gatesOnly: false });
  });
  test("without --resume, a stopped rollout is not silently started over", () => {
    const s: RolloutState = { ...base, done: ["dev"], current: { stack: "staging", phase: "up" } };
    expect(() => startPoint(plan, THREE, s, false)).toThrow(/--resume/);
  });
  test("a changed rollout file is not resumed", () => {
    const s: RolloutState = { ...base, done: ["dev"], current: { stack: "staging" } };
    expect(() => startPoint(plan, `${THREE}\n# edited\n`, s, true)).toThrow(ResumeError);
  });
  test("--resume without state says to start without it", () => {
    expect(() => startPoint(plan, THREE, undefined, true)).toThrow(/run without --resume/);
  });
});

describe("doctor sample", () => {
  const nodes = [
    ...["a", "b", "c", "d"].map((n) => ({ name: `deb-${n}`, os: "debian", runtimes: ["containerd"] })),
    ...["a", "b"].map((n) => ({ name: `rhel-${n}`, os: "rhel", runtimes: ["crio"] })),
    { name: "deb-docker", os: "debian", runtimes: ["docker", "containerd"] },
  ];
  test("N per OS/runtime group, every group covered, the same choice on a rerun", () => {
    const s = sampleNodes(nodes, 2, "staging");
    expect([...s.keys()]).toEqual(["debian/containerd", "debian/containerd+docker", "rhel/crio"]);
    expect(s.get("debian/containerd")).toHaveLength(2);
    expect(s.get("debian/containerd+docker")!.map((n) => n.name)).toEqual(["deb-docker"]);
    expect(sampleNodes(nodes, 2, "staging")).toEqual(s);
  });
});

describe("gates on real certificates", () => {
  const pki = new TestPki();
  afterAll(() => pki.cleanup());
  const root = pki.root("Rollout Root");
  const other = pki.root("Other Root");
  const leaf = pki.leaf(root, ["DNS:registry.test"]);
  const chain = parsePemCertificates(leaf.certPem, "served").certs;
  const ep = { host: "registry.test", port: 5000 };

  test("inspect passes when the bundle verifies the served chain, fails naming the endpoint otherwise", async () => {
    expect(await inspectGate([ep], root.certPem, async () => chain)).toEqual([]);
    const [p] = await inspectGate([ep], other.certPem, async () => chain);
    expect(p.object).toBe("registry.test:5000");
    expect(p.message).toContain("UNKNOWN_AUTHORITY");
    expect(p.fix).not.toBe("");
  });

  test("inspect reports an endpoint that cannot be reached", async () => {
    const [p] = await inspectGate([ep], root.certPem, async () => {
      throw new Error("cannot complete a TLS handshake with registry.test:5000: ECONNREFUSED");
    });
    expect(p.message).toContain("ECONNREFUSED");
  });

  test("doctor fails on unhealthy and unreachable nodes only", () => {
    const finding = { code: "INSECURE_SKIP_VERIFY", severity: "risk", scope: "containerd", message: "skip", fix: "remove it", evidence: ["/etc/containerd/certs.d/_default/hosts.toml: skip_verify = true"], confirmedByPull: false };
    const healthy = { healthy: true, findings: [] } as never;
    const sick = { healthy: false, findings: [finding] } as never;
    const out = doctorGate([{ node: "n1", registry: "r", report: healthy }, { node: "n2", registry: "r", report: sick }, { node: "n3", registry: "r", error: "cannot connect" }]);
    expect(out.map((p) => p.object)).toEqual(["node n2", "node n3"]);
    expect(out[0].message).toContain("INSECURE_SKIP_VERIFY");
    expect(out[0].message).toContain("_default/hosts.toml");
    expect(out[0].fix).toBe("remove it");
  });

  test("clusters waits for rollouts until the deadline and names those not done", async () => {
    let t = 0;
    let reads = 0;
    const clock = { now: () => t, sleep: async (ms: number) => void (t += ms) };
    const done = { object: "KubeadmControlPlane ns/cp", read: async () => ({ done: ++reads >= 3, summary: `read ${reads}` }) };
    const stuck = { object: "MachineDeployment ns/md", read: async () => ({ done: false, summary: "0/1 up to date" }) };
    const out = await clusterGate([done, stuck], 20_000, 5_000, clock);
    expect(out.map((p) => p.object)).toEqual(["MachineDeployment ns/md"]);
    expect(out[0].message).toContain("0/1 up to date");
    expect(reads).toBe(3);
    expect(t).toBe(20_000);
  });
});

describe("drift", () => {
  const reg = { host: "registry.test", port: 5000, mirrorOf: [] };
  const bundle = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  const [hosts] = containerdHostsFiles([reg]);
  const hostsPath = `${CONTAINERD_CERTS_DIR}/${hosts.dir}/hosts.toml`;
  const dump = (files: Record<string, string>): NodeDump => ({
    files: new Map(Object.entries(files).map(([path, c]): [string, DumpFile] => [path, { path, mtime: 0, content: Buffer.from(c) }])),
  }) as unknown as NodeDump;
  const expected = { node: "dev/node-1", runtimes: ["containerd"], registries: [reg], bundlePem: bundle };

  test("the files as NodeTrust renders them are no drift", () => {
    expect(fileDrift(expected, dump({ [hostsPath]: hosts.content, [containerdCaPath(reg)]: bundle }))).toEqual([]);
  });
  test("skip_verify added to hosts.toml is reported with the line", () => {
    const [c] = fileDrift(expected, dump({ [hostsPath]: `${hosts.content}skip_verify = true\n`, [containerdCaPath(reg)]: bundle }));
    expect(c).toMatchObject({ node: "dev/node-1", what: hostsPath, kind: "changed" });
    expect(c.detail).toContain("+ skip_verify = true");
  });
  test("ca.crt is compared by certificate: the bundle under NodeTrust's marker line is no drift, a CA taken out is named", () => {
    const pki = new TestPki();
    try {
      const a = pki.root("Drift Root A");
      const b = pki.root("Drift Root B");
      const both = `${a.certPem}${b.certPem}`;
      const exp = { ...expected, bundlePem: both };
      const files = (ca: string) => dump({ [hostsPath]: hosts.content, [containerdCaPath(reg)]: ca });
      expect(fileDrift(exp, files(`# Managed by registry-trust (owner default): CA bundle for ${hosts.dir}.\n${both}`))).toEqual([]);
      const [c] = fileDrift(exp, files(a.certPem));
      expect(c).toMatchObject({ what: containerdCaPath(reg), kind: "changed" });
      expect(c.detail).toContain('missing "CN=Drift Root B"');
    } finally {
      pki.cleanup();
    }
  });
  test("a removed ca.crt is reported as removed", () => {
    const [c] = fileDrift(expected, dump({ [hostsPath]: hosts.content }));
    expect(c).toMatchObject({ what: containerdCaPath(reg), kind: "removed" });
  });
});

describe("report", () => {
  test("progress lines carry elapsed time, stack and phase; the stop report names stack, gate, object and fix", () => {
    expect(progressLine({ elapsedMs: 65_000, stack: "staging", phase: "doctor", status: "fail", message: "1 problem(s)" })).toMatch(/^\[01:05\] staging\s+doctor\s+fail\s+1 problem/);
    const text = summaryText({ ok: false, file: "r.yaml", stateFile: "s.json", done: ["dev"], remaining: ["staging", "prod"], elapsedMs: 1, failures: [{ stack: "staging", phase: "doctor", object: "node n2", message: "INSECURE_SKIP_VERIFY", fix: "remove it" }] });
    expect(text).toContain('stack "staging", gate doctor');
    expect(text).toContain("not started: prod");
    expect(text).toContain("object: node n2");
    expect(text).toContain("fix:    remove it");
    expect(text).toContain("--resume");
  });
});

describe("command line", () => {
  test.each(["rollout", "drift"])("%s --help prints its usage", async (c) => {
    const r = await cli([c, "--help"]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toMatch(new RegExp(`^Usage: registry-trust ${c} `));
  });
  test("a bad rollout file exits 2 before any stack is touched, naming the field", async () => {
    const { mkdtempSync, writeFileSync } = require("node:fs") as typeof import("node:fs");
    const dir = mkdtempSync(join(require("node:os").tmpdir(), "rt-rollout-"));
    writeFileSync(join(dir, "r.yaml"), "stacks: []\n");
    const r = await cli(["rollout", "--file", join(dir, "r.yaml")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("stacks = []: must be a non-empty list");
  });
});
