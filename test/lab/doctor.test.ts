/**
 * `registry-trust doctor` against real lab nodes (sshd, a real OS trust store, containerd 1.6 with
 * config_path, the real crictl pulling through CRI), each broken on purpose in one way, and a healthy
 * node. Chains the lab registry cannot show (expired, not yet valid, wrong name, missing intermediate)
 * are served by Node's TLS server on 127.0.0.1, which the nodes reach as registry.test:<port>.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { AddressInfo } from "node:net";
import { Server, createServer } from "node:tls";
import { DoctorReport } from "../../core/doctor/analyze";
import { renderNodeScript } from "../../core/node/render";
import { NodeScriptInput } from "../../core/node/types";
import { Lab, startLab } from "../../lab/lab";
import { LabNode } from "../../lab/node";
import { CliResult, cli } from "../support/cli";
import { until } from "../support/until";
import { Issued, TestPki } from "../../lab/openssl-pki";

// Each doctor run is a tsx start, an ssh session, the probe and a crictl pull: on a loaded
// 2-core machine a test with three runs has taken 36 s.
jest.setTimeout(180_000);

const X509_UNKNOWN = "x509: certificate signed by unknown authority";
const HOUR = 3_600_000;
let lab: Lab;
let key: string;
const pki = new TestPki();
const servers: Server[] = [];

beforeAll(async () => {
  lab = await startLab({ nodes: 8 });
  key = `registry.test:${lab.registry.port}`;
}, 60_000);
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await lab?.stop();
  pki.cleanup();
});

interface Run extends CliResult {
  report?: DoctorReport;
}

function nodeFlags(node: LabNode): string[] {
  return ["--node", `ssh://root@${node.host}:${node.port}`, "--identity", node.privateKeyPath, "--known-hosts", node.knownHostsPath];
}

async function doctor(node: LabNode, registry = key, image: string | null = `${registry}/lab/demo:1`): Promise<Run> {
  const args = ["doctor", ...nodeFlags(node), "--registry", registry, ...(image ? ["--image", image] : []), "--json"];
  const r = await cli(args);
  return { ...r, report: r.code === 2 ? undefined : (JSON.parse(r.stdout) as DoctorReport) };
}

/** Findings that break or endanger pulls, in the order doctor ranks them. */
const serious = (r: Run) => r.report!.findings.filter((f) => f.severity === "error" || f.severity === "risk");
const codes = (r: Run) => serious(r).map((f) => f.code);
const sh = (node: LabNode, cmd: string, stdin?: string) => node.exec(cmd, { stdin });
/** A process's start time in seconds since the epoch, computed as core/doctor/dump.ts does from /proc. */
function procStartSeconds(pid: number): number {
  const btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync("/proc/stat", "utf8"))![1]);
  // Fields after the command name (which may hold spaces); starttime is field 22, the 20th after it.
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "").split(" ");
  const clk = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
  return btime + Number(fields[19]) / clk;
}

async function install(node: LabNode, input: Partial<NodeScriptInput>): Promise<void> {
  const script = renderNodeScript({
    os: "auto",
    runtimes: ["containerd"],
    registries: [{ host: "registry.test", port: lab.registry.port, mirrorOf: [] }],
    bundlePem: lab.registry.caPem,
    action: "install",
    ...input,
  });
  const r = await node.exec("sh -s", { stdin: script, timeoutMs: 60_000 });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
}

/** Every file under the trust locations with its mode, mtime and hash: what "read-only" must leave alone. */
async function snapshot(node: LabNode): Promise<string> {
  const dirs = "/etc/containerd /usr/local/share/ca-certificates /etc/ssl/certs /etc/docker /etc/containers /etc/pki /etc/rancher";
  const r = await sh(node, `find ${dirs} -printf '%p %m %T@ %l\\n' | sort; find ${dirs} -type f -print0 | sort -z | xargs -0 sha256sum`);
  expect(r.code).toBe(0);
  return r.stdout;
}

describe("the lab registry, nodes broken in one way each", () => {
  test("a node without the CA: unknown authority, confirmed by the CRI pull, and nothing on the node changes", async () => {
    const node = lab.nodes[0];
    const before = await snapshot(node);
    const r = await doctor(node);
    expect(r.code).toBe(1);
    expect(codes(r)).toEqual(["UNKNOWN_AUTHORITY"]);
    const top = serious(r)[0];
    expect(top).toMatchObject({ scope: "containerd", confirmedByPull: true });
    expect(top.fix).toContain(`--registry ${key}`);
    expect(r.report!.pull).toMatchObject({ ok: false });
    expect(r.report!.pull!.output).toContain(X509_UNKNOWN);
    expect(r.report!.stores).toEqual([
      { store: "os", trusted: false, problems: ["UNKNOWN_AUTHORITY"] },
      { store: "containerd", trusted: false, problems: ["UNKNOWN_AUTHORITY"] },
    ]);
    expect(r.report!.runtimes).toEqual([expect.objectContaining({ name: "containerd", configPath: "/etc/containerd/certs.d" })]);
    expect(r.report!.chain).toMatchObject({ from: "node", certificates: [expect.objectContaining({ subject: "CN=registry.test", issuer: "CN=registry-trust lab CA" })] });
    expect(await snapshot(node)).toBe(before);
    // The human report names the same cause first, with its fix.
    const human = await cli(["doctor", ...nodeFlags(node), "--registry", key]);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/most likely cause first:\n {2}1\. ERROR UNKNOWN_AUTHORITY \[containerd\]/);
    expect(human.stdout).toContain("Fix: Install the registry's CA for containerd");
  });

  test("CA only in the OS store, added after containerd loaded it: restart needed; after the restart, healthy", async () => {
    const node = lab.nodes[1];
    // The failing pull makes containerd load the OS store (Go does so once, at its first verification).
    await expect(node.cri().pullImage(lab.registry.image)).rejects.toThrow(X509_UNKNOWN);
    // The doctor dates containerd's start as /proc does (boot time in whole seconds plus the process's start
    // ticks), so it may place it up to a second late: the CA goes in only once the clock has passed that.
    const startedAt = procStartSeconds(node.containerdPid());
    await until("the clock to pass containerd's start as /proc dates it", 5_000, async () => (Date.now() / 1000 > startedAt + 1 ? true : undefined));
    expect((await sh(node, "cat > /usr/local/share/ca-certificates/lab-registry.crt && update-ca-certificates", lab.registry.caPem)).code).toBe(0);
    const pid = node.containerdPid();

    const r = await doctor(node);
    expect(r.code).toBe(1);
    expect(codes(r)).toEqual(["RUNTIME_RESTART_NEEDED"]);
    expect(serious(r)[0]).toMatchObject({ scope: "containerd", confirmedByPull: true });
    expect(serious(r)[0].evidence).toEqual(expect.arrayContaining([expect.stringMatching(/^\/etc\/ssl\/certs\/ca-certificates\.crt modified /), expect.stringMatching(/^containerd PID \d+ started /)]));
    expect(r.report!.stores).toEqual([{ store: "os", trusted: true, problems: [] }, { store: "containerd", trusted: true, problems: [] }]);
    expect(node.containerdPid()).toBe(pid);

    expect((await sh(node, "systemctl restart containerd")).code).toBe(0);
    const after = await doctor(node);
    expect(after.code).toBe(0);
    expect(after.report).toMatchObject({ healthy: true, pull: { ok: true } });
  });

  test("a certs.d directory without the port: named as such; renaming it fixes the pull without a restart", async () => {
    const node = lab.nodes[2];
    const dir = "/etc/containerd/certs.d/registry.test";
    const hosts = `server = "https://${key}"\n[host."https://${key}"]\n  capabilities = ["pull", "resolve"]\n  ca = "ca.crt"\n`;
    expect((await sh(node, `mkdir -p ${dir} && cat > ${dir}/ca.crt && printf '%s' '${hosts}' > ${dir}/hosts.toml`, lab.registry.caPem)).code).toBe(0);
    const r = await doctor(node);
    expect(r.code).toBe(1);
    expect(codes(r)).toEqual(["CERTS_DIR_WITHOUT_PORT"]);
    expect(serious(r)[0]).toMatchObject({ scope: "containerd", confirmedByPull: true });
    expect(serious(r)[0].message).toContain("its CA would verify the registry");
    expect(serious(r)[0].fix).toContain(`mv ${dir} /etc/containerd/certs.d/${key}`);

    const pid = node.containerdPid();
    expect((await sh(node, `mv ${dir} /etc/containerd/certs.d/${key}`)).code).toBe(0);
    const fixed = await doctor(node);
    expect(fixed.code).toBe(0);
    expect(fixed.report).toMatchObject({ healthy: true, pull: { ok: true } });
    expect(fixed.report!.trustLocations).toEqual(expect.arrayContaining([expect.objectContaining({ kind: "runtime", runtime: "containerd", path: `/etc/containerd/certs.d/${key}/ca.crt` })]));
    expect(node.containerdPid()).toBe(pid);
  });

  test("skip_verify: pulls work, and doctor still flags it as a risk (exit 1)", async () => {
    const node = lab.nodes[3];
    const hosts = `server = "https://${key}"\n[host."https://${key}"]\n  capabilities = ["pull", "resolve"]\n  skip_verify = true\n`;
    expect((await sh(node, `mkdir -p /etc/containerd/certs.d/${key} && cat > /etc/containerd/certs.d/${key}/hosts.toml`, hosts)).code).toBe(0);
    const r = await doctor(node);
    expect(r.code).toBe(1);
    expect(r.report).toMatchObject({ healthy: false, pull: { ok: true } });
    expect(codes(r)).toEqual(["INSECURE_SKIP_VERIFY"]);
    expect(serious(r)[0]).toMatchObject({ severity: "risk", scope: "containerd" });
    expect(serious(r)[0].message).toContain("With verification on, pulls would fail: UNKNOWN_AUTHORITY");
    expect(serious(r)[0].evidence).toEqual([`/etc/containerd/certs.d/${key}/hosts.toml: [host."https://${key}"] skip_verify = true`]);
  });

  test("the CA copied to the anchors directory but update-ca-certificates never run: OS_STORE_NOT_REBUILT", async () => {
    const node = lab.nodes[6];
    expect((await sh(node, "cat > /usr/local/share/ca-certificates/lab-registry.crt", lab.registry.caPem)).code).toBe(0);
    const r = await doctor(node);
    expect(r.code).toBe(1);
    expect(codes(r)).toEqual(["OS_STORE_NOT_REBUILT"]);
    expect(serious(r)[0]).toMatchObject({ scope: "os", confirmedByPull: true, evidence: expect.arrayContaining(["/usr/local/share/ca-certificates/lab-registry.crt"]) });
    expect(r.report!.trustLocations).toEqual(expect.arrayContaining([expect.objectContaining({ kind: "os-anchor", path: "/usr/local/share/ca-certificates/lab-registry.crt", count: 1 })]));
  });

  test("hosts.toml in place but containerd's config_path removed: CONFIG_PATH_NOT_SET", async () => {
    const node = lab.nodes[7];
    expect((await sh(node, "sed -i '/config_path/d' /etc/containerd/config.toml && systemctl restart containerd")).code).toBe(0);
    const hosts = `server = "https://${key}"\n[host."https://${key}"]\n  ca = "ca.crt"\n`;
    expect((await sh(node, `mkdir -p /etc/containerd/certs.d/${key} && cat > /etc/containerd/certs.d/${key}/ca.crt && printf '${hosts}' > /etc/containerd/certs.d/${key}/hosts.toml`, lab.registry.caPem)).code).toBe(0);
    const r = await doctor(node);
    expect(r.code).toBe(1);
    expect(codes(r)).toEqual(["CONFIG_PATH_NOT_SET"]);
    expect(serious(r)[0]).toMatchObject({ scope: "containerd", confirmedByPull: true });
    expect(serious(r)[0].message).toContain("that CA would verify the registry");
    expect(r.report!.runtimes).toEqual([expect.objectContaining({ name: "containerd", configPath: "" })]);
  });

  test("a healthy node (trust installed by the rendered node script) is reported healthy with a successful CRI pull", async () => {
    const node = lab.nodes[4];
    await install(node, { probeImage: lab.registry.image });
    await node.cri().removeImage(lab.registry.image);
    const r = await doctor(node);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.report).toMatchObject({ healthy: true, pull: { ok: true }, os: { id: "debian" } });
    expect(serious(r)).toEqual([]);
    expect(r.report!.stores).toEqual([{ store: "os", trusted: true, problems: [] }, { store: "containerd", trusted: true, problems: [] }]);
    // The probe keeps crictl's stderr too (its warnings about default endpoints come first).
    expect(r.report!.pull!.output).toMatch(/^Image is up to date for sha256:[0-9a-f]{64}$/m);
    const human = await cli(["doctor", ...nodeFlags(node), "--registry", key, "--image", lab.registry.image]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain("HEALTHY: the node trusts the registry.");
    expect(human.stdout).toContain(`CRI pull of ${lab.registry.image}: ok`);
  });
});

describe("purpose-made chains served on 127.0.0.1 (trust for each port installed on the node)", () => {
  let root: Issued;
  const ports: Record<string, number> = {};

  async function serve(name: string, leaf: Issued, ...intermediates: Issued[]): Promise<void> {
    const server = createServer({ cert: [leaf, ...intermediates].map((c) => c.certPem).join(""), key: leaf.keyPem }, (s) => s.end());
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    ports[name] = (server.address() as AddressInfo).port;
  }

  beforeAll(async () => {
    root = pki.root("Doctor Test Root");
    const issuing = pki.issue({ cn: "Doctor Issuing CA", issuer: root, ca: true });
    const now = Date.now();
    await serve("expired", pki.leaf(root, ["DNS:registry.test"], { notBefore: new Date(now - 72 * HOUR), notAfter: new Date(now - 24 * HOUR) }));
    await serve("notYetValid", pki.leaf(root, ["DNS:registry.test"], { notBefore: new Date(now + 24 * HOUR), notAfter: new Date(now + 72 * HOUR) }));
    await serve("mismatch", pki.leaf(root, ["DNS:other.test"]));
    await serve("intermediate", pki.leaf(issuing, ["DNS:registry.test"], { extra: ["authorityInfoAccess=caIssuers;URI:http://pki.registry.test/issuing.crt"] }));
    await install(lab.nodes[5], {
      bundlePem: root.certPem,
      registries: Object.values(ports).map((port) => ({ host: "registry.test", port, mirrorOf: [] })),
      // The TLS probe would fail on exactly the chains under test.
      probeTls: false,
    });
  }, 60_000);

  test.each([
    ["expired", "EXPIRED", "certificate has expired or is not yet valid"],
    ["notYetValid", "NOT_YET_VALID", "certificate has expired or is not yet valid"],
    ["mismatch", "HOSTNAME_MISMATCH", "x509: certificate is valid for other.test, not registry.test"],
    ["intermediate", "MISSING_INTERMEDIATE", X509_UNKNOWN],
  ])("%s: diagnosed as %s, confirmed by the CRI pull's error", async (name, code, pullError) => {
    const registry = `registry.test:${ports[name]}`;
    const r = await doctor(lab.nodes[5], registry);
    expect(r.code).toBe(1);
    expect(r.report!.pull!.output).toContain(pullError);
    expect(codes(r)).toEqual([code]);
    expect(serious(r)[0]).toMatchObject({ scope: "registry", confirmedByPull: true });
    expect(r.report!.trustLocations).toEqual(expect.arrayContaining([expect.objectContaining({ kind: "runtime", path: `/etc/containerd/certs.d/${registry}/ca.crt` })]));
  });
});

describe("connection and input errors exit 2 before or without a diagnosis", () => {
  test("a host key not in --known-hosts is refused by ssh (StrictHostKeyChecking)", async () => {
    const node = lab.nodes[0];
    const empty = pki.file("empty_known_hosts", "");
    const r = await cli(["doctor", "--node", `ssh://root@${node.host}:${node.port}`, "--identity", node.privateKeyPath, "--known-hosts", empty, "--registry", key]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`cannot connect to ssh://root@${node.host}:${node.port} with ssh`);
    expect(r.stderr).toMatch(/Host key verification failed/);
  });
  test("an image on another registry is refused before connecting", async () => {
    const r = await cli(["doctor", ...nodeFlags(lab.nodes[0]), "--registry", key, "--image", "docker.io/library/busybox:1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--image "docker.io/library/busybox:1" is on "docker.io", not on --registry ${key}`);
  });
});
