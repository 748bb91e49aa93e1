/**
 * The runtime-configuration corpus (test/fixtures/runtime-configs) end to end on lab nodes: each file is
 * put on a node, the rendered node script installs trust, then removes it. containerd files run on the
 * node's real containerd 1.6: after install the file parses (smol-toml) and differs from the input only
 * in config_path, containerd starts with it, a CRI pull works, and containerd restarted only when the
 * file had to change; after remove the file is the input byte for byte and containerd starts with it.
 * k3s/RKE2 cannot run here: their registries.yaml is edited for real and checked with the yaml parser.
 * Docker and CRI-O/podman files are never edited: they must stay byte-identical while skopeo trusts the
 * registry through certs.d. Plus an IPv6 registry endpoint, [::1]:PORT, end to end.
 *
 * One lab change to each containerd file, so that a node never uses the host's /var/lib/containerd: its
 * root (and the opt plugin's /opt/containerd) point into the node's own directory, by replacing those
 * quoted strings, or by a first line `root = "…"` when the file has none. That adapted text is the input
 * every comparison uses.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import * as tls from "node:tls";
import { parse as parseToml } from "smol-toml";
import { parse as parseYaml } from "yaml";
import { parseNodeReport, renderNodeScript } from "../../core/node/render";
import { NodeReport, NodeScriptInput } from "../../core/node/types";
import { Lab, startLab } from "../../lab/lab";
import { LabNode } from "../../lab/node";
import { CONTAINERD2_CASES, CONTAINERD_CASES, ContainerdCase, corpusPath, RANCHER_CASES, UNTOUCHED_CASES } from "../fixtures/runtime-configs/corpus";
import { TestPki } from "../../lab/openssl-pki";

jest.setTimeout(180_000);
const CERTS = "/etc/containerd/certs.d";
let lab: Lab;
let key: string;
let base: Omit<NodeScriptInput, "action">;
const pki = new TestPki();

beforeAll(async () => {
  // node-1: containerd 1.6 (its corpus); node-2: 1.6 (k3s/RKE2, Docker, CRI-O files, IPv6); node-3: containerd 2.x.
  lab = await startLab({ nodes: 3, containerd: ["1.6", "1.6", "2"] });
  key = `registry.test:${lab.registry.port}`;
  base = {
    os: "auto",
    runtimes: ["containerd"],
    registries: [{ host: "registry.test", port: lab.registry.port, mirrorOf: [] }],
    bundlePem: lab.registry.caPem,
    servingChainPem: fs.readFileSync(path.join(lab.dir, "pki", "server.crt"), "utf8"),
    probeImage: lab.registry.image,
  };
}, 60_000);
afterAll(async () => {
  await lab?.stop();
  pki.cleanup();
});

interface Run { code: number; stdout: string; stderr: string; report?: NodeReport }
async function run(node: LabNode, input: Partial<NodeScriptInput> & { action: NodeScriptInput["action"] }): Promise<Run> {
  const r = await node.exec("sh -s", { stdin: renderNodeScript({ ...base, ...input }), timeoutMs: 90_000 });
  return { ...r, report: r.code === 0 ? parseNodeReport(r.stdout) : undefined };
}
/** The node's view of one of its private directories, from the host side of the bind mount. */
const onNode = (node: LabNode, p: string) => path.join(node.dir, "fs", p);
async function restartContainerd(node: LabNode): Promise<void> {
  const r = await node.exec("systemctl restart containerd && systemctl is-active containerd");
  expect(`${r.code} ${r.stdout.trim()} ${r.stderr.trim()}`).toBe("0 active ");
}
async function pull(node: LabNode, image = lab.registry.image): Promise<string> {
  const cri = node.cri();
  try {
    return await cri.pullImage(image).then(() => "pulled", (e: Error) => e.message);
  } finally {
    cri.close();
  }
}
/** Leaf paths where two parsed documents differ (a table on one side only is compared key by key). */
function diffPaths(a: unknown, b: unknown, at: string[] = []): string[][] {
  const isMap = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === "object" && !Array.isArray(x);
  if ((isMap(a) || a == null) && (isMap(b) || b == null) && (isMap(a) || isMap(b))) {
    const am = isMap(a) ? a : {};
    const bm = isMap(b) ? b : {};
    return [...new Set([...Object.keys(am), ...Object.keys(bm)])].flatMap((k) => diffPaths(am[k], bm[k], [...at, k]));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [at];
}
/** Every file of ours left anywhere under the node's trust locations. */
function oursLeft(node: LabNode): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    if (!fs.existsSync(p)) return;
    const st = fs.lstatSync(p);
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
    else if (st.isFile() && /(Managed by|added by) registry-trust|registry-trust \(owner/.test(fs.readFileSync(p, "utf8"))) out.push(path.relative(node.dir, p));
  };
  for (const d of ["etc/containerd", "etc/rancher", "etc/docker", "etc/containers", "usr/local/share/ca-certificates"]) walk(onNode(node, d));
  return out;
}

function adapt(text: string, node: LabNode): string {
  const root = path.join(node.dir, "containerd", "root");
  const opt = path.join(node.dir, "containerd", "opt");
  let t = text;
  for (const q of ['"', "'"]) t = t.split(`${q}/opt/containerd${q}`).join(`${q}${opt}${q}`);
  const hasRoot = /^root\s*=/m.test(t);
  for (const q of ['"', "'"]) t = t.split(`${q}/var/lib/containerd${q}`).join(`${q}${root}${q}`);
  return hasRoot ? t : `root = "${root}"\n${t}`;
}

describe.each([
  ["containerd 1.6 (Debian)", 0, CONTAINERD_CASES],
  ["containerd 2.x (v2.4.2, Go-module build)", 2, CONTAINERD2_CASES],
] as const)("containerd config.toml corpus on a lab node running %s", (_name, index, cases) => {
  const cfgOn = (node: LabNode) => onNode(node, "etc/containerd/config.toml");
  test.each(cases.map((c: ContainerdCase) => [c.file, c] as const))("%s", async (_f, c) => {
    const node = lab.nodes[index];
    const input = adapt(fs.readFileSync(corpusPath(c.file), "utf8"), node);
    for (const d of ["conf.d", "conf.d.cri"]) fs.rmSync(onNode(node, `etc/containerd/${d}`), { recursive: true, force: true });
    for (const d of c.dropIns ?? []) fs.cpSync(corpusPath(`containerd-shapes/${d}`), onNode(node, `etc/containerd/${d}`), { recursive: true });
    fs.writeFileSync(cfgOn(node), input);
    await restartContainerd(node);
    // Before: the registry is unknown to this node, so what makes the pull below work is the install.
    expect(await pull(node)).toContain("x509: certificate signed by unknown authority");
    const pid0 = node.containerdPid();

    const r = await run(node, { action: "install" });
    if (c.outcome.kind === "refused") {
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(c.outcome.message);
      expect(r.stderr).toContain("nothing was changed on this node");
      expect(fs.readFileSync(cfgOn(node), "utf8")).toBe(input);
      expect(oursLeft(node)).toEqual([]);
      expect(node.containerdPid()).toBe(pid0);
      return;
    }
    expect(r.stderr).toBe("");
    expect(r.report!.verified).toEqual(expect.arrayContaining([`cri-pull:${lab.registry.image}`, `tls:${key}@${CERTS}/${key}/ca.crt`]));
    const installed = fs.readFileSync(cfgOn(node), "utf8");
    if (c.outcome.kind === "unchanged") {
      // Nothing to change: no edit, no restart.
      expect(installed).toBe(input);
      expect(r.report!.restarted).toEqual([]);
      expect(r.report!.changed).not.toContain("/etc/containerd/config.toml");
      expect(node.containerdPid()).toBe(pid0);
    } else {
      expect(r.report!.restarted).toEqual(["containerd"]);
      expect(r.report!.changed).toContain("/etc/containerd/config.toml");
      expect(node.containerdPid()).not.toBe(pid0);
      const diff = diffPaths(parseToml(input), parseToml(installed));
      expect(diff).toHaveLength(1);
      expect(diff[0].slice(-2)).toEqual(["registry", "config_path"]);
    }
    // containerd is running on the installed file: started before the install (unchanged) or restarted by it.
    expect((await node.exec("systemctl is-active containerd")).stdout.trim()).toBe("active");
    expect(await pull(node)).toBe("pulled");
    // A second install changes nothing and restarts nothing.
    const pid1 = node.containerdPid();
    expect((await run(node, { action: "install" })).report).toMatchObject({ changed: [], restarted: [] });
    expect(node.containerdPid()).toBe(pid1);

    const removed = await run(node, { action: "remove" });
    expect(removed.stderr).toBe("");
    expect(removed.report!.restarted).toEqual([]);
    expect(fs.readFileSync(cfgOn(node), "utf8")).toBe(input);
    // Byte for byte the input, which containerd started with above: no restart needed to prove it loads.
    expect(oursLeft(node)).toEqual([]);
  });
});

describe("k3s/RKE2 registries.yaml corpus (k3s cannot run here: the file is edited for real, checked with yaml)", () => {
  const CA = "/etc/rancher/k3s/registry-trust-default-ca.crt";
  test.each(RANCHER_CASES.map((c) => [`${c.file} mirroring ${c.mirrorOf.join(",")}`, c] as const))("%s", async (_n, c) => {
    const node = lab.nodes[1];
    const file = onNode(node, "etc/rancher/k3s/registries.yaml");
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const input = fs.readFileSync(corpusPath(c.file), "utf8");
    fs.writeFileSync(file, input);
    const k3s = { runtimes: ["k3s" as const], probeImage: undefined, registries: [{ host: "registry.test", port: lab.registry.port, mirrorOf: [...c.mirrorOf] }] };
    const r = await run(node, { action: "install", ...k3s });
    if (c.outcome.kind === "refused") {
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(c.outcome.message);
      expect(fs.readFileSync(file, "utf8")).toBe(input);
      expect(oursLeft(node)).toEqual([]);
      return;
    }
    expect(r.stderr).toBe("");
    expect(r.report!.verified).toContain(`tls:${key}@${CA}`);
    const edited = fs.readFileSync(file, "utf8");
    const before = (parseYaml(input) ?? {}) as Record<string, Record<string, unknown> | null>;
    const after = parseYaml(edited) as Record<string, Record<string, unknown>>;
    for (const p of diffPaths(before, after)) expect([`mirrors.${c.mirrorOf[0]}`, `configs.${key}`]).toContain(p.slice(0, 2).join("."));
    expect(after.configs[key]).toEqual({ tls: { ca_file: CA } });
    expect(after.mirrors[c.mirrorOf[0]]).toEqual({ endpoint: [`https://${key}`] });
    expect((await run(node, { action: "install", ...k3s })).report).toMatchObject({ changed: [] });
    const removed = await run(node, { action: "remove", ...k3s });
    expect(removed.stderr).toBe("");
    expect(fs.readFileSync(file, "utf8")).toBe(input);
    expect(oursLeft(node)).toEqual([]);
    fs.rmSync(file);
  });
});

describe("Docker and CRI-O/podman files are never edited", () => {
  test.each(UNTOUCHED_CASES.map((c) => [c.file, c] as const))("%s", async (_f, c) => {
    const node = lab.nodes[1];
    const target = onNode(node, c.nodePath);
    const existed = fs.existsSync(target) ? fs.readFileSync(target) : undefined;
    fs.mkdirSync(path.dirname(target), { recursive: true });
    const input = fs.readFileSync(corpusPath(c.file));
    fs.writeFileSync(target, input);
    try {
      const certDir = `/etc/${c.runtime === "docker" ? "docker" : "containers"}/certs.d/${key}`;
      const r = await run(node, { action: "install", runtimes: [c.runtime], probeImage: undefined });
      expect(r.stderr).toBe("");
      expect(r.report!.changed).toContain(`${certDir}/ca.crt`);
      expect(fs.readFileSync(target)).toEqual(input);
      // The real parsers still read it; skopeo trusts the registry through certs.d only.
      if (c.file.endsWith(".json")) JSON.parse(input.toString());
      else parseToml(input.toString());
      const inspect = await node.exec(`SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/var/empty skopeo inspect --cert-dir ${certDir} docker://${lab.registry.image}`);
      expect(inspect.stderr).toBe("");
      const removed = await run(node, { action: "remove", runtimes: [c.runtime] });
      expect(removed.stderr).toBe("");
      expect(fs.readFileSync(target)).toEqual(input);
      expect(oursLeft(node)).toEqual([]);
    } finally {
      if (existed) fs.writeFileSync(target, existed);
      else fs.rmSync(target);
    }
  });
});

describe("an IPv6 registry endpoint, [::1]:PORT", () => {
  // containerd 1.6's reference parser refuses "[::1]:PORT/repo" ("invalid reference format"), so no CRI
  // pull here: the node script's checks (openssl -verify_ip, curl -g) and the files are what is tested.
  test("install, verify, converge, remove: the certs.d/[::1]:PORT files are kept on a rerun and then removed", async () => {
    const node = lab.nodes[1];
    // The lab registry listens on 127.0.0.1; a TLS front on [::1] with its own CA serves the same API.
    const ca = pki.root("IPv6 Front CA");
    const leaf = pki.leaf(ca, ["IP:::1"]);
    const front = tls.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (client) => {
      const upstream = tls.connect({ host: "127.0.0.1", port: lab.registry.port, servername: "registry.test", ca: lab.registry.caPem });
      client.pipe(upstream).pipe(client);
      const end = () => { client.destroy(); upstream.destroy(); };
      client.on("error", end);
      upstream.on("error", end);
    });
    await new Promise<void>((res) => front.listen(0, "::1", res));
    const port = (front.address() as net.AddressInfo).port;
    const v6 = `[::1]:${port}`;
    const curl = (cafile: string) => node.exec(`curl -g -sS -o /dev/null -w '%{http_code}' --cacert '${cafile}' 'https://${v6}/v2/'`);
    const input = { registries: [{ host: "::1", port, mirrorOf: [] }], bundlePem: ca.certPem, servingChainPem: leaf.certPem, probeImage: undefined };
    try {
      const r = await run(node, { action: "install", ...input });
      expect(r.stderr).toBe("");
      expect(r.report!.changed).toEqual(expect.arrayContaining([`${CERTS}/${v6}/hosts.toml`, `${CERTS}/${v6}/ca.crt`]));
      expect(r.report!.verified).toEqual(expect.arrayContaining([`openssl-verify:${CERTS}/${v6}/ca.crt`, `tls:${v6}@${CERTS}/${v6}/ca.crt`, `tls:${v6}@/etc/ssl/certs/ca-certificates.crt`]));
      expect((await curl(`${CERTS}/${v6}/ca.crt`)).stdout).toBe("200");
      const hosts = parseToml(fs.readFileSync(onNode(node, `etc/containerd/certs.d/${v6}/hosts.toml`), "utf8"));
      expect(hosts).toMatchObject({ server: `https://${v6}`, host: { [`https://${v6}`]: { ca: `${CERTS}/${v6}/ca.crt` } } });
      // The second run finds its files and keeps them (a regex prune would remove the planned write).
      expect((await run(node, { action: "install", ...input })).report).toMatchObject({ changed: [], restarted: [] });
      expect(fs.existsSync(onNode(node, `etc/containerd/certs.d/${v6}/ca.crt`))).toBe(true);
      const removed = await run(node, { action: "remove", ...input });
      expect(removed.stderr).toBe("");
      expect(removed.report!.changed).toEqual(expect.arrayContaining([`${CERTS}/${v6}/hosts.toml`, `${CERTS}/${v6}/ca.crt`]));
      expect(fs.existsSync(onNode(node, `etc/containerd/certs.d/${v6}`))).toBe(false);
      expect(oursLeft(node)).toEqual([]);
    } finally {
      await new Promise((res) => front.close(res));
    }
  });
});
