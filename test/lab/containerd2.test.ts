/**
 * A lab node on containerd 2.x (built from Go modules by scripts/node-binaries.sh) running the config its
 * own `containerd config default` writes, pulls through the real crictl, and `doctor` reading the 2.x
 * layout (`plugins.'io.containerd.cri.v1.images'.registry`, built-in config_path
 * /etc/containerd/certs.d:/etc/docker/certs.d). What upstream does with that default is asserted as it
 * is: since 2.1 CRI pulls go through the transfer service, which takes the list as one directory and so
 * reads no certs.d (containerd/containerd#12808, still open for v2.4.2). Needs root,
 * scripts/install-lab-deps.sh and scripts/node-binaries.sh.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseToml } from "smol-toml";
import { DoctorReport } from "../../core/doctor/analyze";
import { startLab, type Lab } from "../../lab/lab";
import { LabNode } from "../../lab/node";
import { containerd2Config } from "../../lab/runtime";
import { cli } from "../support/cli";

// Doctor runs are a CLI start, an ssh session, the probe and a crictl pull each.
jest.setTimeout(120_000);

const X509_UNKNOWN = "x509: certificate signed by unknown authority";
const FIXTURES = path.join(__dirname, "..", "fixtures", "runtime-configs", "containerd");
/** What a node must not create on the host (containerd 2.x's default root and opt paths). */
const HOST_PATHS = ["/var/lib/containerd", "/opt/containerd"];

let lab: Lab;
let key: string;
let hostBefore: boolean[];

beforeAll(async () => {
  hostBefore = HOST_PATHS.map((p) => fs.existsSync(p));
  lab = await startLab({ nodes: 2, containerd: "2" });
  key = `registry.test:${lab.registry.port}`;
}, 60_000);
afterAll(async () => {
  await lab?.stop();
});

async function sh(node: LabNode, cmd: string, stdin?: string): Promise<string> {
  const r = await node.exec(cmd, { stdin });
  if (r.code !== 0) throw new Error(`${node.name}: ${cmd} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function doctor(node: LabNode): Promise<{ code: number; report: DoctorReport }> {
  const r = await cli([
    "doctor",
    "--node", `ssh://root@${node.host}:${node.port}`,
    "--identity", node.privateKeyPath,
    "--known-hosts", node.knownHostsPath,
    "--registry", key,
    "--image", lab.registry.image,
    "--json",
  ]);
  expect(r.code).not.toBe(2);
  return { code: r.code, report: JSON.parse(r.stdout) as DoctorReport };
}

const serious = (r: DoctorReport) => r.findings.filter((f) => f.severity === "error" || f.severity === "risk").map((f) => f.code);

describe("a containerd 2.x node", () => {
  test("runs containerd v2.4.2 with its own default config; only root and the opt path are moved into the node", async () => {
    const node = lab.nodes[0];
    expect(node.containerd).toBe("2");
    const pid = node.containerdPid();
    // The running daemon is the 2.x binary, started with the node's config file.
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toEqual(["containerd", "--config", "/etc/containerd/config.toml", ""]);
    expect(await sh(node, "containerd --version")).toMatch(/^containerd github\.com\/containerd\/containerd\/v2 v2\.4\.2 /);
    expect(fs.realpathSync(`/proc/${pid}/exe`)).toBe(fs.realpathSync(path.join(node.dir, "fs/usr/local/sbin/containerd")));

    const defaults = await sh(node, "containerd config default");
    // The fixture is this binary's output: a new pin must come with a regenerated fixture.
    expect(defaults).toBe(fs.readFileSync(path.join(FIXTURES, "2.4.2-default.toml"), "utf8"));
    const running = await sh(node, "cat /etc/containerd/config.toml");
    const changed = running.split("\n").filter((line, i) => line !== defaults.split("\n")[i]);
    expect(changed).toEqual([`root = '${node.dir}/containerd/root'`, `    path = '${node.dir}/containerd/opt'`]);
    const expected = parseToml(defaults) as any;
    expected.root = `${node.dir}/containerd/root`;
    expected.plugins["io.containerd.internal.v1.opt"].path = `${node.dir}/containerd/opt`;
    expect(parseToml(running)).toEqual(expected);
    const cfg = parseToml(running) as any;
    expect(cfg.version).toBe(4);
    expect(cfg.plugins["io.containerd.cri.v1.images"].registry).toEqual({ config_path: "" });
    expect(HOST_PATHS.map((p) => fs.existsSync(p))).toEqual(hostBefore);
  });

  test("real crictl + the stock config: hosts.toml is NOT read (containerd#12808); one directory in config_path and one restart fix it, after which hosts.toml is read per pull", async () => {
    const node = lab.nodes[0];
    expect(await sh(node, "crictl --version")).toBe("crictl version 1.37.0\n");
    const pid = node.containerdPid();
    const pull = () => node.exec(`crictl pull '${lab.registry.image}'`);
    const bad = await pull();
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain(X509_UNKNOWN);

    const dir = `/etc/containerd/certs.d/${key}`;
    const writeTrust = () =>
      sh(node, `mkdir -p '${dir}' && cat > '${dir}/ca.crt' && printf '%s\\n' 'server = "https://${key}"' '[host."https://${key}"]' '  capabilities = ["pull", "resolve"]' '  ca = "${dir}/ca.crt"' > '${dir}/hosts.toml'`, lab.registry.caPem);
    await writeTrust();
    // The transfer service (CRI's pull path since 2.1) takes the built-in "/etc/containerd/certs.d:/etc/docker/certs.d" as one directory.
    const ignored = await pull();
    expect(ignored.code).not.toBe(0);
    expect(ignored.stderr).toContain(X509_UNKNOWN);
    expect(node.containerdPid()).toBe(pid);
    const diagnosed = await doctor(node);
    expect(serious(diagnosed.report)).toEqual(["CONFIG_PATH_NOT_SET"]);
    expect(diagnosed.report.findings[0].message).toContain("containerd/containerd#12808");
    expect(diagnosed.report.findings[0].evidence).toContain(dir);

    // The fix doctor names, applied as a user would: one line of the file, one restart.
    // (Under the CRI image plugin's registry table: the transfer plugin has a config_path of its own.)
    await sh(node, `sed -i "/^ *\\[plugins.'io.containerd.cri.v1.images'.registry\\]$/,/config_path/ s|config_path = ''|config_path = '/etc/containerd/certs.d'|" /etc/containerd/config.toml`);
    expect((parseToml(await sh(node, "cat /etc/containerd/config.toml")) as any).plugins["io.containerd.cri.v1.images"].registry).toEqual({ config_path: "/etc/containerd/certs.d" });
    await sh(node, "systemctl restart containerd");
    const restarted = node.containerdPid();
    expect(restarted).not.toBe(pid);
    const ok = await pull();
    expect(ok.stdout).toMatch(/^Image is up to date for sha256:[0-9a-f]{64}\n$/);
    expect(ok.code).toBe(0);
    const inspect = JSON.parse(await sh(node, `crictl inspecti -o json '${lab.registry.image}'`)) as { status: { repoDigests: string[] } };
    expect(inspect.status.repoDigests).toContain(`${key}/lab/demo@${lab.registry.imageDigest}`);

    // From now on hosts.toml is read on every pull: trust goes and comes back without a restart.
    await sh(node, `crictl rmi '${lab.registry.image}' >/dev/null && rm -r '${dir}'`);
    const gone = await pull();
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain(X509_UNKNOWN);
    await writeTrust();
    expect((await pull()).code).toBe(0);
    expect(node.containerdPid()).toBe(restarted);
    const healthy = await doctor(node);
    expect(serious(healthy.report)).toEqual([]);
    expect(healthy.report.runtimes[0]).toMatchObject({ configPath: "/etc/containerd/certs.d", looksAt: ["/etc/containerd/config.toml", `${dir}/`] });
    expect(healthy.code).toBe(0);
  });

  test("doctor reads the 2.x layout: the built-in list, ignored by the transfer service and read by the local pull client (/etc/docker/certs.d included)", async () => {
    const node = lab.nodes[1];
    const pid = node.containerdPid();
    // Docker's layout only (no hosts.toml, nothing under /etc/containerd/certs.d).
    await sh(node, `mkdir -p '/etc/docker/certs.d/${key}' && cat > '/etc/docker/certs.d/${key}/ca.crt'`, lab.registry.caPem);
    const before = await doctor(node);
    expect(before.code).toBe(1);
    expect(serious(before.report)).toEqual(["CONFIG_PATH_NOT_SET"]);
    expect(before.report.findings[0]).toMatchObject({ scope: "containerd", evidence: expect.arrayContaining([`/etc/docker/certs.d/${key}`]) });
    expect(before.report.pull!.output).toContain(X509_UNKNOWN);
    expect(before.report.runtimes).toEqual([
      expect.objectContaining({
        name: "containerd",
        version: expect.stringContaining("v2.4.2"),
        configPath: "",
        looksAt: ["/etc/containerd/config.toml", `/etc/containerd/certs.d:/etc/docker/certs.d/${key}/`],
      }),
    ]);
    expect(node.containerdPid()).toBe(pid);

    // The local pull client splits the list: /etc/docker/certs.d/<host:port>/ca.crt is read.
    await sh(node, `sed -i 's/^    use_local_image_pull = false$/    use_local_image_pull = true/' /etc/containerd/config.toml`);
    expect((parseToml(await sh(node, "cat /etc/containerd/config.toml")) as any).plugins["io.containerd.cri.v1.images"].use_local_image_pull).toBe(true);
    await sh(node, "systemctl restart containerd");
    const ok = await node.exec(`crictl pull '${lab.registry.image}'`);
    expect(ok.stdout).toMatch(/^Image is up to date for sha256:[0-9a-f]{64}\n$/);
    expect(ok.code).toBe(0);
    const after = await doctor(node);
    expect(serious(after.report)).toEqual([]);
    expect(after.report.runtimes[0]).toMatchObject({
      looksAt: ["/etc/containerd/config.toml", `/etc/containerd/certs.d/${key}/`, `/etc/docker/certs.d/${key}/`],
      notes: ["config_path is empty: containerd 2.x reads /etc/containerd/certs.d:/etc/docker/certs.d by default"],
    });
    expect(after.report.pull).toMatchObject({ ok: true });
    expect(after.code).toBe(0);
  });
});

describe("the lab's edit of containerd 2.x's default config", () => {
  const fixture = fs.readFileSync(path.join(FIXTURES, "2.4.2-default.toml"), "utf8");

  test("refuses a default whose lines it does not recognise, rather than guess", () => {
    expect(() => containerd2Config("/n", fixture.replace("root = '/var/lib/containerd'\n", ""))).toThrow("expected one line root = '/var/lib/containerd', found 0");
    expect(() => containerd2Config("/n", fixture.replace("    path = '/opt/containerd'\n", "    path = '/opt/other'\n"))).toThrow("expected one line path = '/opt/containerd', found 0");
  });

  test("changes nothing but the two lines, byte for byte", () => {
    const out = containerd2Config("/n", fixture);
    const changed = out.split("\n").map((l, i) => [fixture.split("\n")[i], l]).filter(([a, b]) => a !== b);
    expect(changed).toEqual([
      ["root = '/var/lib/containerd'", "root = '/n/containerd/root'"],
      ["    path = '/opt/containerd'", "    path = '/n/containerd/opt'"],
    ]);
    expect(out.length - fixture.length).toBe("/n/containerd/root".length - "/var/lib/containerd".length + "/n/containerd/opt".length - "/opt/containerd".length);
  });
});
