/**
 * doctor's judgement (core/doctor) on dumps written in the probe's own record format, with real
 * certificates from openssl. What each runtime reads, when, and what Go refuses is what is asserted; the
 * same causes on real nodes are in test/lab/doctor.test.ts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DoctorInput, DoctorReport, chainFromSClient, diagnose } from "../../core/doctor/analyze";
import { DumpError, parseDump } from "../../core/doctor/dump";
import { Finding, rankFindings } from "../../core/doctor/findings";
import { DUMP_END, DUMP_HEADER } from "../../core/doctor/probe-script";
import { parsePemCertificates } from "../../core/x509/pem";
import { TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
afterAll(() => pki.cleanup());

const root = pki.root("Unit Registry Root");
const publicRoot = pki.root("Some Public Root");
const leaf = pki.leaf(root, ["DNS:registry.test"]);
const REG = { host: "registry.test", port: 5000 };
const KEY = "registry.test:5000";
const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);
const HOUR = 3600;
const sec = (d: Date) => Math.floor(d.getTime() / 1000);
const BTIME = sec(NOW) - 100 * HOUR;
const UNKNOWN = `failed to do request: Head "https://${KEY}/v2/lab/demo/manifests/1": x509: certificate signed by unknown authority`;

const CONFIG_WITH_PATH = `version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`;
const hostsToml = (ca: string, extra = "") => `server = "https://${KEY}"\n[host."https://${KEY}"]\n  capabilities = ["pull", "resolve"]\n  ca = "${ca}"\n${extra}`;

interface FakeFile {
  content?: string;
  /** Seconds since the epoch. */
  mtime?: number;
  link?: string;
  withheld?: boolean;
}
interface Fake {
  now?: Date;
  files?: Record<string, string | FakeFile>;
  dirs?: string[];
  commands?: string[];
  procs?: { name: string; pid: number; startedAt: number }[];
  containerdVersion?: string;
  goFile?: string | null;
  pull?: { rc: number; output: string };
  chainOutput?: string;
}

const b64 = (s: string) => (s ? Buffer.from(s).toString("base64") : "-");

/** A dump in the probe's format: a Debian node running containerd 1.6 with config_path, since an hour ago. */
function dumpText(f: Fake = {}): string {
  const now = sec(f.now ?? NOW);
  const files: Record<string, string | FakeFile> = {
    "/etc/os-release": 'ID=debian\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
    "/etc/containerd/config.toml": CONFIG_WITH_PATH,
    "/etc/ssl/certs/ca-certificates.crt": { content: publicRoot.certPem, mtime: now - 5 * HOUR },
    ...f.files,
  };
  const lines = [DUMP_HEADER, "K uid 0", `K now ${now}`, `K btime ${BTIME}`, "K clk 100"];
  for (const c of f.commands ?? ["containerd", "crictl", "openssl"]) lines.push(`C ${c} ${b64(`/usr/bin/${c}`)}`);
  if ((f.commands ?? ["containerd"]).includes("containerd")) lines.push(`V containerd ${b64(f.containerdVersion ?? "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3")}`);
  for (const p of f.procs ?? [{ name: "containerd", pid: 20, startedAt: now - HOUR }]) lines.push(`P ${p.name} ${p.pid} ${(p.startedAt - BTIME) * 100}`);
  for (const d of f.dirs ?? []) lines.push(`D ${b64(d)} ${now - 2 * HOUR}`);
  for (const [path, v] of Object.entries(files)) {
    const x: FakeFile = typeof v === "string" ? { content: v } : v;
    const content = x.withheld ? "!" : x.content === undefined ? "-" : Buffer.from(x.content).toString("base64");
    lines.push(`F ${b64(path)} ${x.mtime ?? now - 2 * HOUR} ${x.link ? b64(x.link) : "-"} ${content}`);
  }
  if (f.goFile !== null) lines.push(`K gofile ${b64(f.goFile ?? "/etc/ssl/certs/ca-certificates.crt")}`);
  if (f.chainOutput !== undefined) lines.push(`X chain 1 ${b64(f.chainOutput)}`);
  if (f.pull) lines.push(`X pull ${f.pull.rc} ${b64(f.pull.output)}`);
  return [...lines, DUMP_END, ""].join("\n");
}

function run(f: Fake = {}, opts: Partial<DoctorInput> & { chain?: string[] | null; image?: string } = {}): DoctorReport {
  const pems = opts.chain === null ? [] : (opts.chain ?? [leaf.certPem]);
  const certs = pems.flatMap((p) => parsePemCertificates(p, "served").certs);
  return diagnose({
    target: { node: { user: "root", host: "10.0.0.5", port: 22 }, registry: REG, image: opts.image ?? (f.pull ? `${KEY}/lab/demo:1` : undefined) },
    dump: parseDump(dumpText(f)),
    served: certs.length ? { certs, from: "node" } : undefined,
    servedError: certs.length ? undefined : "connect: Connection refused",
    localNow: opts.localNow ?? NOW,
  });
}

const serious = (r: DoctorReport) => r.findings.filter((x) => x.severity === "error" || x.severity === "risk");
const codes = (r: DoctorReport) => serious(r).map((x) => `${x.code}@${x.scope}`);
const CERTS = `/etc/containerd/certs.d/${KEY}`;

describe("containerd with config_path (hosts.toml read per pull)", () => {
  test("the CA in certs.d/<host:port> via hosts.toml: healthy, although the OS store alone would not trust it", () => {
    const r = run({ files: { [`${CERTS}/hosts.toml`]: hostsToml(`${CERTS}/ca.crt`), [`${CERTS}/ca.crt`]: root.certPem }, dirs: [CERTS] });
    expect(serious(r)).toEqual([]);
    expect(r.healthy).toBe(true);
    expect(r.stores).toEqual([
      { store: "os", trusted: false, problems: ["UNKNOWN_AUTHORITY"] },
      { store: "containerd", trusted: true, problems: [] },
    ]);
    expect(r.trustLocations).toEqual(expect.arrayContaining([
      expect.objectContaining({ kind: "runtime", runtime: "containerd", path: `${CERTS}/ca.crt`, count: 1 }),
      expect.objectContaining({ kind: "certs.d", runtime: "containerd", path: `${CERTS}/hosts.toml`, count: 0 }),
      expect.objectContaining({ kind: "os-pool", path: "/etc/ssl/certs/ca-certificates.crt", count: 1 }),
    ]));
  });

  test("a relative ca path is read from the hosts.toml directory; *.crt alone (no hosts.toml) also counts", () => {
    expect(run({ files: { [`${CERTS}/hosts.toml`]: hostsToml("ca.crt"), [`${CERTS}/ca.crt`]: root.certPem } }).healthy).toBe(true);
    expect(run({ files: { [`${CERTS}/registry.crt`]: root.certPem } }).healthy).toBe(true);
  });

  test("a CA configured only for another mirror host in the same hosts.toml does not vouch for the registry", () => {
    const toml = `server = "https://${KEY}"\n[host."https://mirror.test:5000"]\n  ca = "${CERTS}/ca.crt"\n`;
    const r = run({ files: { [`${CERTS}/hosts.toml`]: toml, [`${CERTS}/ca.crt`]: root.certPem } });
    expect(codes(r)).toEqual(["UNKNOWN_AUTHORITY@containerd"]);
  });

  test("nothing anywhere: unknown authority, confirmed by a pull failing with Go's error, with the render command as fix", () => {
    const r = run({ pull: { rc: 1, output: UNKNOWN } });
    expect(codes(r)).toEqual(["UNKNOWN_AUTHORITY@containerd"]);
    expect(serious(r)[0]).toMatchObject({ confirmedByPull: true });
    expect(serious(r)[0].fix).toContain(`registry-trust render --os auto --runtime containerd --registry ${KEY}`);
    expect(serious(r)[0].evidence).toEqual(expect.arrayContaining([`${CERTS}/ (absent)`, `crictl pull: ${UNKNOWN}`]));
    expect(r.pull).toEqual({ image: `${KEY}/lab/demo:1`, ok: false, output: UNKNOWN });
  });

  test("a successful CRI pull outweighs files that say otherwise: the trust finding becomes a warning", () => {
    const r = run({ files: { "/etc/containerd/certs.d/_default/hosts.toml": `[host."https://${KEY}"]\n  ca = "/etc/ca.crt"\n` }, pull: { rc: 0, output: "Image is up to date for sha256:ab" } });
    expect(r.healthy).toBe(true);
    expect(r.findings.find((x) => x.code === "UNKNOWN_AUTHORITY")).toMatchObject({ severity: "warning", scope: "containerd" });
    expect(r.findings.find((x) => x.code === "UNKNOWN_AUTHORITY")!.message).toContain("Yet the CRI pull succeeded");
  });

  test("a hosts.toml that is not TOML is noted and the registry stays untrusted", () => {
    const r = run({ files: { [`${CERTS}/hosts.toml`]: "server = [" } });
    expect(codes(r)).toEqual(["UNKNOWN_AUTHORITY@containerd"]);
    expect(r.runtimes[0].notes.join(" ")).toContain(`${CERTS}/hosts.toml is not valid TOML`);
  });
});

describe("trust containerd does not read", () => {
  test("certs.d/<host> without the port, for containerd and for Docker", () => {
    const files = {
      "/etc/containerd/certs.d/registry.test/hosts.toml": hostsToml("ca.crt"),
      "/etc/containerd/certs.d/registry.test/ca.crt": root.certPem,
      "/etc/docker/certs.d/registry.test/ca.crt": root.certPem,
    };
    const r = run({ files, commands: ["containerd", "dockerd", "crictl"], procs: [] });
    expect(codes(r)).toEqual(["CERTS_DIR_WITHOUT_PORT@containerd", "CERTS_DIR_WITHOUT_PORT@docker"]);
    expect(serious(r)[0].message).toContain("its CA would verify the registry");
    expect(serious(r)[0].fix).toContain(`mv /etc/containerd/certs.d/registry.test /etc/containerd/certs.d/${KEY}`);
    expect(serious(r)[1].fix).toContain(`mv /etc/docker/certs.d/registry.test /etc/docker/certs.d/${KEY}`);
  });

  test("a directory without the port is not a finding for a registry on 443, where the names agree", () => {
    const r = diagnose({
      target: { node: { user: "root", host: "n", port: 22 }, registry: { host: "registry.test", port: 443 } },
      dump: parseDump(dumpText({ files: { "/etc/containerd/certs.d/registry.test/hosts.toml": `server = "https://registry.test"\n[host."https://registry.test"]\n  ca = "ca.crt"\n`, "/etc/containerd/certs.d/registry.test/ca.crt": root.certPem } })),
      served: { certs: parsePemCertificates(leaf.certPem, "s").certs, from: "node" },
      localNow: NOW,
    });
    expect(serious(r)).toEqual([]);
  });

  test("containerd 1.x without config_path ignores certs.d: CONFIG_PATH_NOT_SET, not a bare unknown authority", () => {
    const files = { "/etc/containerd/config.toml": "version = 2\n", [`${CERTS}/hosts.toml`]: hostsToml("ca.crt"), [`${CERTS}/ca.crt`]: root.certPem };
    const r = run({ files });
    expect(codes(r)).toEqual(["CONFIG_PATH_NOT_SET@containerd"]);
    expect(serious(r)[0].message).toContain("that CA would verify the registry");
    expect(serious(r)[0].fix).toContain('config_path = "/etc/containerd/certs.d"');
    // containerd 2.0 reads /etc/containerd/certs.d by default.
    const v20 = run({ files, containerdVersion: "containerd github.com/containerd/containerd/v2 v2.0.5 abc" });
    expect(v20.healthy).toBe(true);
    expect(v20.runtimes[0].notes).toContain("config_path is not set: containerd 2.x reads /etc/containerd/certs.d:/etc/docker/certs.d by default");
  });

  describe("containerd 2.x's own default config (test/fixtures/runtime-configs/containerd/2.4.2-default.toml)", () => {
    const fixture = readFileSync(join(__dirname, "../fixtures/runtime-configs/containerd/2.4.2-default.toml"), "utf8");
    const V242 = "containerd github.com/containerd/containerd/v2 v2.4.2 gomod-v2.4.2";
    const trust = { [`${CERTS}/hosts.toml`]: hostsToml(`${CERTS}/ca.crt`), [`${CERTS}/ca.crt`]: root.certPem };

    test("2.1+ pulls through the transfer service, which takes the built-in list as one directory: certs.d is not read", () => {
      const r = run({ files: { "/etc/containerd/config.toml": fixture, ...trust }, containerdVersion: V242 });
      expect(codes(r)).toEqual(["CONFIG_PATH_NOT_SET@containerd"]);
      expect(serious(r)[0].message).toContain("containerd/containerd#12808");
      expect(serious(r)[0].fix).toContain(`config_path = "/etc/containerd/certs.d" (one directory)`);
      expect(r.runtimes[0].looksAt).toEqual(["/etc/containerd/config.toml", `/etc/containerd/certs.d:/etc/docker/certs.d/${KEY}/`]);
      // Docker's directory, also in the list, is not read either.
      const docker = run({ files: { "/etc/containerd/config.toml": fixture, [`/etc/docker/certs.d/${KEY}/ca.crt`]: root.certPem }, commands: ["containerd", "crictl"], containerdVersion: V242 });
      expect(codes(docker)).toEqual(["CONFIG_PATH_NOT_SET@containerd"]);
    });

    test("one directory in config_path, or the local pull client, reads certs.d", () => {
      const one = fixture.replace("config_path = ''\n", "config_path = '/etc/containerd/certs.d'\n");
      expect(one).not.toBe(fixture);
      expect(run({ files: { "/etc/containerd/config.toml": one, ...trust }, containerdVersion: V242 }).healthy).toBe(true);
      const local = fixture.replace("use_local_image_pull = false", "use_local_image_pull = true");
      expect(local).not.toBe(fixture);
      const r = run({ files: { "/etc/containerd/config.toml": local, ...trust }, containerdVersion: V242 });
      expect(r.healthy).toBe(true);
      expect(r.runtimes[0].looksAt).toEqual(["/etc/containerd/config.toml", `/etc/containerd/certs.d/${KEY}/`, `/etc/docker/certs.d/${KEY}/`]);
      // A version 2 file: 2.4.2 migrates [plugins."io.containerd.grpc.v1.cri".containerd] discard_unpacked_layers
      // only when that table also has runtimes (both cases seen on a lab node: pull ok / x509).
      const v2file = `version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  discard_unpacked_layers = true\n`;
      const withRuntimes = `${v2file}[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n`;
      expect(run({ files: { "/etc/containerd/config.toml": withRuntimes, ...trust }, containerdVersion: V242 }).healthy).toBe(true);
      expect(codes(run({ files: { "/etc/containerd/config.toml": v2file, ...trust }, containerdVersion: V242 }))).toEqual(["CONFIG_PATH_NOT_SET@containerd"]);
      expect(codes(run({ files: { "/etc/containerd/config.toml": "version = 2\n", ...trust }, containerdVersion: V242 }))).toEqual(["CONFIG_PATH_NOT_SET@containerd"]);
    });
  });

  test("containerd 1.6's own default config (config_path = \"\"): certs.d is not read", () => {
    const fixture = readFileSync(join(__dirname, "../fixtures/runtime-configs/containerd/1.6-default.toml"), "utf8");
    const r = run({ files: { "/etc/containerd/config.toml": fixture, [`${CERTS}/hosts.toml`]: hostsToml(`${CERTS}/ca.crt`), [`${CERTS}/ca.crt`]: root.certPem } });
    expect(codes(r)).toEqual(["CONFIG_PATH_NOT_SET@containerd"]);
    expect(r.runtimes[0].configPath).toBe("");
  });

  test("containerd 1.x without config_path: the deprecated registry.configs tls.ca_file still applies; its insecure_skip_verify is a risk", () => {
    const cfg = (extra: string) => `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.configs."${KEY}".tls]\n  ca_file = "/etc/pki/registry.pem"\n${extra}`;
    expect(run({ files: { "/etc/containerd/config.toml": cfg(""), "/etc/pki/registry.pem": root.certPem } }).healthy).toBe(true);
    const r = run({ files: { "/etc/containerd/config.toml": cfg("  insecure_skip_verify = true\n") } });
    expect(codes(r)).toEqual(["INSECURE_SKIP_VERIFY@containerd"]);
    expect(r.runtimes[0].notes).toContain("/etc/pki/registry.pem is named as a CA file but does not exist");
  });

  test("a CA waiting in the anchors directory but not in the bundle: OS_STORE_NOT_REBUILT", () => {
    const r = run({ files: { "/usr/local/share/ca-certificates/registry.crt": root.certPem } });
    expect(codes(r)).toEqual(["OS_STORE_NOT_REBUILT@os"]);
    expect(serious(r)[0].fix).toContain("update-ca-certificates");
    expect(serious(r)[0].evidence).toEqual(["/usr/local/share/ca-certificates/registry.crt"]);
  });
});

describe("CA only in the OS store: compared with the runtime's start", () => {
  const inPool = (mtime: number) => ({ "/etc/ssl/certs/ca-certificates.crt": { content: publicRoot.certPem + root.certPem, mtime } });

  test("added after containerd started: restart needed, confirmed when the pull fails with unknown authority", () => {
    const started = sec(NOW) - HOUR;
    const r = run({ files: inPool(started + 60), pull: { rc: 1, output: UNKNOWN } });
    expect(codes(r)).toEqual(["RUNTIME_RESTART_NEEDED@containerd"]);
    expect(serious(r)[0]).toMatchObject({ confirmedByPull: true });
    expect(serious(r)[0].evidence).toEqual([
      `/etc/ssl/certs/ca-certificates.crt modified ${new Date((started + 60) * 1000).toISOString()}`,
      `containerd PID 20 started ${new Date(started * 1000).toISOString()}`,
      `crictl pull: ${UNKNOWN}`,
    ]);
    expect(r.stores.map((s) => s.trusted)).toEqual([true, true]);
  });

  test("in the store before containerd started, or a successful pull: healthy", () => {
    expect(run({ files: inPool(sec(NOW) - 2 * HOUR) }).healthy).toBe(true);
    expect(run({ files: inPool(sec(NOW) - 60), pull: { rc: 0, output: "Image is up to date for sha256:ab" } }).healthy).toBe(true);
  });

  test("the earliest file holding the CA counts (a link in /etc/ssl/certs to the anchor written before the bundle)", () => {
    const started = sec(NOW) - HOUR;
    const r = run({ files: { ...inPool(started + 120), "/etc/ssl/certs/registry.pem": { content: root.certPem, mtime: started - 10, link: "/usr/local/share/ca-certificates/registry.crt" } } });
    expect(r.healthy).toBe(true);
  });
});

describe("verification turned off", () => {
  test("skip_verify for the registry is a risk even though pulls work; it says what would fail without it", () => {
    const r = run({ files: { [`${CERTS}/hosts.toml`]: `server = "https://${KEY}"\n[host."https://${KEY}"]\n  skip_verify = true\n` }, pull: { rc: 0, output: "Image is up to date for sha256:ab" } });
    expect(codes(r)).toEqual(["INSECURE_SKIP_VERIFY@containerd"]);
    expect(r.healthy).toBe(false);
    expect(serious(r)[0].message).toContain("With verification on, pulls would fail: UNKNOWN_AUTHORITY.");
  });

  test("skip_verify for another registry, Docker's insecure-registries and CRI-O's insecure registries are risks too", () => {
    const r = run({
      commands: ["containerd", "dockerd", "crio"],
      procs: [],
      files: {
        [`${CERTS}/hosts.toml`]: hostsToml("ca.crt"),
        [`${CERTS}/ca.crt`]: root.certPem,
        "/etc/containerd/certs.d/other.test/hosts.toml": 'server = "https://other.test"\nskip_verify = true\n',
        "/etc/docker/certs.d/registry.test:5000/ca.crt": root.certPem,
        "/etc/docker/daemon.json": JSON.stringify({ "insecure-registries": ["other.test:5000"] }),
        "/etc/containers/certs.d/registry.test:5000/ca.crt": root.certPem,
        "/etc/containers/registries.conf.d/50-lab.conf": '[[registry]]\nlocation = "registry.test:5000"\ninsecure = true\n',
      },
    });
    expect(codes(r).sort()).toEqual(["INSECURE_SKIP_VERIFY@containerd", "INSECURE_SKIP_VERIFY@crio", "INSECURE_SKIP_VERIFY@docker"]);
    const byScope = Object.fromEntries(serious(r).map((x) => [x.scope, x]));
    expect(byScope.containerd.message).toContain("for another registry (/etc/containerd/certs.d/other.test/hosts.toml: skip_verify = true");
    expect(byScope.docker.evidence).toEqual(['/etc/docker/daemon.json: insecure-registries contains "other.test:5000"']);
    expect(byScope.crio.message).toContain(`crio does not verify ${KEY}'s certificate`);
  });
});

describe("k3s / RKE2 registries.yaml", () => {
  const yaml = (extra = "") => `configs:\n  "${KEY}":\n    tls:\n      ca_file: /etc/rancher/k3s/registry-ca.crt\n${extra}`;
  test("ca_file for the registry is its trust; written after k3s started, k3s needs a restart", () => {
    const started = sec(NOW) - HOUR;
    const base = { commands: ["k3s", "crictl"] };
    const files = (mtime: number) => ({ "/etc/rancher/k3s/registries.yaml": { content: yaml(), mtime }, "/etc/rancher/k3s/registry-ca.crt": root.certPem });
    expect(run({ ...base, procs: [{ name: "k3s-server", pid: 7, startedAt: started }], files: files(started - 60) }).healthy).toBe(true);
    const r = run({ ...base, procs: [{ name: "k3s-server", pid: 7, startedAt: started }], files: files(started + 60) });
    expect(codes(r)).toEqual(["RUNTIME_RESTART_NEEDED@k3s"]);
    expect(serious(r)[0].fix).toContain("systemctl restart k3s");
  });
  test("insecure_skip_verify is a risk", () => {
    const r = run({ commands: ["rke2"], procs: [], files: { "/etc/rancher/rke2/registries.yaml": `configs:\n  "${KEY}":\n    tls:\n      insecure_skip_verify: true\n` } });
    expect(codes(r)).toEqual(["INSECURE_SKIP_VERIFY@rke2"]);
    expect(r.trustLocations).toEqual(expect.arrayContaining([expect.objectContaining({ kind: "registries.yaml", runtime: "rke2", path: "/etc/rancher/rke2/registries.yaml" })]));
  });
});

describe("the served chain, judged at the node's clock", () => {
  const trusted = { files: { [`${CERTS}/hosts.toml`]: hostsToml("ca.crt"), [`${CERTS}/ca.crt`]: root.certPem } };

  test("a node clock a year ahead sees the certificate expired, and the skew is reported", () => {
    const ahead = new Date(NOW.getTime() + 365 * 24 * HOUR * 1000);
    const r = run({ ...trusted, now: ahead }, { localNow: NOW });
    expect(codes(r)).toEqual(["EXPIRED@registry"]);
    expect(r.findings.map((x) => x.code)).toContain("NODE_CLOCK_SKEW");
    expect(r.nodeTime).toBe(ahead.toISOString());
  });

  test("hostname mismatch and a missing intermediate (caIssuers) are the registry's to fix", () => {
    const wrongName = pki.leaf(root, ["DNS:other.test"]);
    expect(codes(run(trusted, { chain: [wrongName.certPem] }))).toEqual(["HOSTNAME_MISMATCH@registry"]);
    const issuing = pki.issue({ cn: "Unit Issuing CA", issuer: root, ca: true });
    const aia = pki.leaf(issuing, ["DNS:registry.test"], { extra: ["authorityInfoAccess=caIssuers;URI:http://pki.test/issuing.crt"] });
    const r = run({ ...trusted, pull: { rc: 1, output: UNKNOWN } }, { chain: [aia.certPem] });
    expect(codes(r)).toEqual(["MISSING_INTERMEDIATE@registry"]);
    expect(serious(r)[0].confirmedByPull).toBe(true);
    // Served with its intermediate, the same leaf is trusted.
    expect(run(trusted, { chain: [aia.certPem, issuing.certPem] }).healthy).toBe(true);
  });

  test("no chain at all: the registry is unreachable from the node", () => {
    const r = run({}, { chain: null });
    expect(codes(r)).toEqual(["REGISTRY_UNREACHABLE@registry"]);
    expect(r.stores).toEqual([]);
    expect(serious(r)[0].message).toContain("connect: Connection refused");
  });

  test("a pull failing for another reason is reported as such, not as a trust problem", () => {
    const r = run({ ...trusted, pull: { rc: 1, output: 'rpc error: code = NotFound desc = failed to pull and unpack image "registry.test:5000/lab/demo:1": not found' } });
    expect(codes(r)).toEqual(["PULL_FAILED@containerd"]);
    expect(serious(r)[0].fix).toContain("Not a trust problem");
  });

  test("openssl s_client output yields the served certificates in order", () => {
    const out = `CONNECTED(00000003)\n---\nCertificate chain\n 0 s:CN = registry.test\n${leaf.certPem} 1 s:CN = x\n${root.certPem}---\n`;
    expect(chainFromSClient(out).map((c) => [c.subject, c.source])).toEqual([["CN=registry.test", "served#0"], ["CN=Unit Registry Root", "served#1"]]);
  });
});

describe("the rest of the dump", () => {
  test("no runtime: only the OS store is judged, with a warning", () => {
    const r = run({ commands: [], procs: [] });
    expect(codes(r)).toEqual(["UNKNOWN_AUTHORITY@os"]);
    expect(r.findings.map((x) => x.code)).toContain("NO_RUNTIME");
    expect(r.runtimes).toEqual([]);
  });

  test("an image but no crictl: said so (info), nothing else invented", () => {
    const r = run({ files: { [`${CERTS}/ca.crt`]: root.certPem } }, { image: `${KEY}/lab/demo:1` });
    expect(r.healthy).toBe(true);
    expect(r.findings.map((x) => x.code)).toContain("NO_CRICTL");
    expect(r.pull).toBeUndefined();
  });

  test("a private key in a certs.d directory is listed, never read", () => {
    const r = run({ files: { [`${CERTS}/ca.crt`]: root.certPem, [`${CERTS}/client.pem`]: { withheld: true } } });
    expect(r.trustLocations).toContainEqual(expect.objectContaining({ path: `${CERTS}/client.pem`, kind: "certs.d", privateKey: true, count: 0 }));
  });

  test("OS, runtime, process start and config_path are reported", () => {
    const r = run();
    expect(r.os).toEqual({ id: "debian", name: "Debian GNU/Linux 12 (bookworm)" });
    expect(r.runtimes).toEqual([expect.objectContaining({ name: "containerd", pids: [20], configPath: "/etc/containerd/certs.d", startedAt: new Date((sec(NOW) - HOUR) * 1000).toISOString() })]);
  });

  test("a dump without its header, cut short, or with an unknown record is refused", () => {
    expect(() => parseDump("hello\n")).toThrow(DumpError);
    expect(() => parseDump(`${DUMP_HEADER}\nK now 1\n`)).toThrow(/incomplete/);
    expect(() => parseDump(`${DUMP_HEADER}\nK now 1\nZ what\n${DUMP_END}\n`)).toThrow(/unexpected record/);
    expect(() => parseDump(`${DUMP_HEADER}\n${DUMP_END}\n`)).toThrow(/no node time/);
  });
});

describe("ranking", () => {
  const f = (code: Finding["code"], severity: Finding["severity"], confirmedByPull = false): Finding => ({ code, severity, scope: "containerd", message: "", fix: "", evidence: [], confirmedByPull });
  test("a cause the pull confirmed first, then errors before risks, then the specific cause before the generic one", () => {
    const ranked = rankFindings([
      f("INSECURE_SKIP_VERIFY", "risk"),
      f("UNKNOWN_AUTHORITY", "error"),
      f("EXPIRES_SOON", "warning"),
      f("CERTS_DIR_WITHOUT_PORT", "error"),
      f("HOSTNAME_MISMATCH", "error", true),
    ]);
    expect(ranked.map((x) => x.code)).toEqual(["HOSTNAME_MISMATCH", "CERTS_DIR_WITHOUT_PORT", "UNKNOWN_AUTHORITY", "INSECURE_SKIP_VERIFY", "EXPIRES_SOON"]);
  });
});
