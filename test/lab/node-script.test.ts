/**
 * The rendered node script on real lab nodes: a real TLS registry, nodes with their own trust store and
 * containerd, pulls through CRI (the kubelet's path), skopeo for the Docker and CRI-O layouts, curl for
 * the OS store. The RHEL path runs against an emulation of update-ca-trust (real p11-kit `trust`);
 * k3s/RKE2 cannot run here, so their registries.yaml is checked structurally.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { parseNodeReport, renderNodeScript } from "../../core/node/render";
import { NodeReport, NodeScriptInput } from "../../core/node/types";
import { Lab, startLab } from "../../lab/lab";
import { LabNode } from "../../lab/node";
import { TestPki } from "../../lab/openssl-pki";

const X509 = "x509: certificate signed by unknown authority";
let lab: Lab;
let base: Omit<NodeScriptInput, "action">;
let key: string;
const pki = new TestPki();

beforeAll(async () => {
  lab = await startLab({ nodes: 4 });
  key = `registry.test:${lab.registry.port}`;
  base = {
    os: "auto",
    runtimes: ["containerd"],
    registries: [{ host: "registry.test", port: lab.registry.port, mirrorOf: [] }],
    bundlePem: lab.registry.caPem,
    servingChainPem: readFileSync(join(lab.dir, "pki", "server.crt"), "utf8"),
    probeImage: lab.registry.image,
  };
}, 60_000);
afterAll(async () => {
  await lab?.stop();
  pki.cleanup();
});

interface Run { code: number; stdout: string; stderr: string; report?: NodeReport }
async function run(node: LabNode, input: Partial<NodeScriptInput> & { action: NodeScriptInput["action"] }): Promise<Run> {
  const r = await node.exec("sh -s", { stdin: renderNodeScript({ ...base, ...input }), timeoutMs: 60_000 });
  return { ...r, report: r.code === 0 ? parseNodeReport(r.stdout) : undefined };
}
async function sh(node: LabNode, cmd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return node.exec(cmd);
}
/** The whole tree under the node's trust locations: every directory, file and link with its type and mode, files with their hash. */
async function snapshot(node: LabNode): Promise<string> {
  const dirs = "/etc/containerd /usr/local/share/ca-certificates /etc/ssl/certs /etc/docker /etc/containers /etc/pki /etc/rancher";
  const r = await sh(node, `find ${dirs} -printf '%y %m %u:%g %p %l\\n' | sort; find ${dirs} -type f -print0 | sort -z | xargs -0 sha256sum`);
  expect(r.code).toBe(0);
  return r.stdout;
}
const pullError = (node: LabNode) => node.cri().pullImage(lab.registry.image).then(() => "pulled", (e: Error) => e.message);

describe("containerd via hosts.toml, the OS store, idempotence and removal", () => {
  let pristine: string;
  test("before, a CRI pull fails with unknown authority; after, it succeeds without restarting containerd", async () => {
    const node = lab.nodes[0];
    // The node's store is a copy of the host's, which need not be what update-ca-certificates would write.
    expect((await sh(node, "update-ca-certificates")).code).toBe(0);
    pristine = await snapshot(node);
    expect(await pullError(node)).toContain(X509);
    expect((await sh(node, `curl -sS https://${key}/v2/`)).code).toBe(60);
    const pid = node.containerdPid();

    const first = await run(node, { action: "install" });
    expect(first.stderr).toBe("");
    expect(first.report).toMatchObject({ action: "install", os: "debian", restarted: [] });
    expect(first.report!.changed).toEqual(expect.arrayContaining([
      `/etc/containerd/certs.d/${key}/hosts.toml`, `/etc/containerd/certs.d/${key}/ca.crt`, expect.stringMatching(/^\/usr\/local\/share\/ca-certificates\/registry-trust-default-[0-9a-f]{16}\.crt$/),
    ]));
    expect(first.report!.verified).toEqual(expect.arrayContaining([
      "openssl-verify:/etc/ssl/certs/ca-certificates.crt", `openssl-verify:/etc/containerd/certs.d/${key}/ca.crt`,
      `tls:${key}@/etc/ssl/certs/ca-certificates.crt`, `tls:${key}@/etc/containerd/certs.d/${key}/ca.crt`, `cri-pull:${lab.registry.image}`,
    ]));
    expect(await pullError(node)).toBe("pulled");
    expect(node.containerdPid()).toBe(pid);
    expect((await sh(node, `curl -sS https://${key}/v2/`)).code).toBe(0);

    const again = await run(node, { action: "install" });
    expect(again.report).toMatchObject({ changed: [], restarted: [] });
    expect(node.containerdPid()).toBe(pid);
  });

  test("remove deletes exactly what was installed and the failure comes back", async () => {
    const node = lab.nodes[0];
    await node.cri().removeImage(lab.registry.image);
    const r = await run(node, { action: "remove" });
    expect(r.report).toMatchObject({ action: "remove", restarted: [] });
    expect(r.report!.changed).toHaveLength(3);
    expect((await sh(node, "grep -rl 'Managed by registry-trust' /etc/containerd /usr/local/share/ca-certificates /etc/ssl/certs || true")).stdout).toBe("");
    expect((await sh(node, `test -e /etc/containerd/certs.d/${key}`)).code).toBe(1);
    expect(await pullError(node)).toContain(X509);
    expect((await sh(node, `curl -sS https://${key}/v2/`)).code).toBe(60);
    // The certs.d directory itself stays, empty: remove cannot tell whether the install created it.
    expect((await sh(node, "find /etc/containerd/certs.d -mindepth 1")).stdout).toBe("");
    const withoutCertsD = (t: string) => t.split("\n").filter((l) => l !== "d 755 root:root /etc/containerd/certs.d ").join("\n");
    expect(withoutCertsD(await snapshot(node))).toBe(withoutCertsD(pristine));
    expect((await run(node, { action: "remove" })).report).toMatchObject({ changed: [] });
  });
});

describe("Docker and CRI-O layouts, checked with skopeo on the node", () => {
  // Go's system pool is emptied (SSL_CERT_FILE/DIR) so that only the runtime's certs.d directory can vouch.
  const inspect = (node: LabNode, certDir: string) => sh(node, `SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/var/empty skopeo inspect --cert-dir ${certDir} docker://${lab.registry.image}`);
  test("certs.d/<host:port>/ca.crt for Docker and for CRI-O/podman", async () => {
    const node = lab.nodes[1];
    expect((await inspect(node, `/etc/docker/certs.d/${key}`)).stderr).toContain(X509);
    const r = await run(node, { action: "install", runtimes: ["docker", "crio"], probeImage: undefined });
    expect(r.report!.changed).toEqual(expect.arrayContaining([`/etc/docker/certs.d/${key}/ca.crt`, `/etc/containers/certs.d/${key}/ca.crt`]));
    expect((await inspect(node, `/etc/docker/certs.d/${key}`)).code).toBe(0);
    expect((await inspect(node, `/etc/containers/certs.d/${key}`)).code).toBe(0);
    expect((await inspect(node, "/var/empty")).stderr).toContain(X509);
  });
  test("another owner's files are never touched: a second stack is refused before anything changes", async () => {
    const node = lab.nodes[1];
    const before = await snapshot(node);
    const r = await run(node, { action: "install", runtimes: ["docker"], owner: "other-stack", probeImage: undefined });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`/etc/docker/certs.d/${key}/ca.crt (managed by registry-trust owner default)`);
    expect(await snapshot(node)).toBe(before);
  });
});

describe("failures leave the node exactly as before", () => {
  const dropConfigPath = (node: LabNode) => sh(node, "sed -i '/config_path/d' /etc/containerd/config.toml && systemctl restart containerd");

  test("a verification failing after files were written and the store rebuilt rolls everything back", async () => {
    const node = lab.nodes[2];
    const before = await snapshot(node);
    const foreign = pki.leaf(pki.root("Not The Registry's CA"), ["DNS:registry.test"]).certPem;
    const r = await run(node, { action: "install", servingChainPem: foreign });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("does not verify the registry's serving certificate for registry.test");
    expect(r.stderr).toContain("nothing was changed on this node");
    expect(await snapshot(node)).toBe(before);
  });

  test("config_path missing and restarts forbidden: refused before anything is touched", async () => {
    const node = lab.nodes[2];
    expect((await dropConfigPath(node)).code).toBe(0);
    const before = await snapshot(node);
    const r = await run(node, { action: "install", allowRuntimeRestart: false });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("does not set config_path");
    expect(r.stderr).toContain("allowRuntimeRestart=false");
    expect(await snapshot(node)).toBe(before);
  });

  test("config_path enabled with one restart; a failure after that restart restores the config and restarts again", async () => {
    const node = lab.nodes[2];
    const before = await snapshot(node);
    const original = (await sh(node, "cat /etc/containerd/config.toml")).stdout;
    const pid0 = node.containerdPid();
    const foreign = pki.leaf(pki.root("Another Foreign CA"), ["DNS:registry.test"]).certPem;
    const failed = await run(node, { action: "install", servingChainPem: foreign });
    expect(failed.code).toBe(1);
    expect(await snapshot(node)).toBe(before);
    expect(node.containerdPid()).not.toBe(pid0);

    const pid1 = node.containerdPid();
    const ok = await run(node, { action: "install" });
    expect(ok.report).toMatchObject({ restarted: ["containerd"] });
    expect(ok.report!.changed).toContain("/etc/containerd/config.toml");
    const after = (await sh(node, "cat /etc/containerd/config.toml")).stdout;
    expect(after.split("\n").filter((l) => !original.split("\n").includes(l))).toEqual(['      config_path = "/etc/containerd/certs.d"  # added by registry-trust (owner default)']);
    expect(node.containerdPid()).not.toBe(pid1);
    expect(await pullError(node)).toBe("pulled");
    const pid2 = node.containerdPid();
    expect((await run(node, { action: "install" })).report).toMatchObject({ changed: [], restarted: [] });
    expect(node.containerdPid()).toBe(pid2);
  });
});

describe("a failed install that prunes another endpoint's files (issue 18's reproduction)", () => {
  test("the pruned certs.d directory comes back whole, the one created goes, and the script says so truthfully", async () => {
    const node = lab.nodes[1];
    const at = (port: number) => ({ registries: [{ host: "registry.test", port, mirrorOf: [] }], probeImage: undefined, servingChainPem: undefined });
    const first = await run(node, { action: "install", probeTls: false, ...at(5443) });
    expect(first.stderr).toBe("");
    expect(first.report!.changed).toContain("/etc/containerd/certs.d/registry.test:5443/ca.crt");
    const before = await snapshot(node);
    // Nothing listens on :5499: the TLS probe fails after the plan has pruned :5443 and written :5499.
    const failed = await run(node, { action: "install", ...at(5499) });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("TLS probe of https://registry.test:5499/v2/ failed");
    expect(failed.stderr).toContain("nothing was changed on this node");
    expect(failed.stderr).not.toContain("cannot create");
    expect(await snapshot(node)).toBe(before);
    expect((await run(node, { action: "remove", ...at(5443) })).report!.changed).toContain("/etc/containerd/certs.d/registry.test:5443/ca.crt");
  });
});

describe("RHEL path (update-ca-trust emulated with the real p11-kit trust tool) and k3s (structural)", () => {
  test("RHEL: the anchor lands in /etc/pki/ca-trust/source/anchors and the extracted bundle trusts the registry", async () => {
    const node = lab.nodes[3];
    const r = await run(node, { action: "install", os: "rhel", probeImage: undefined });
    expect(r.report).toMatchObject({ os: "rhel", restarted: [] });
    expect(r.report!.changed).toEqual(expect.arrayContaining([expect.stringMatching(/^\/etc\/pki\/ca-trust\/source\/anchors\/registry-trust-default-[0-9a-f]{16}\.crt$/)]));
    expect(r.report!.verified).toContain(`tls:${key}@/etc/pki/tls/certs/ca-bundle.crt`);
    expect((await sh(node, `curl -sS --cacert /etc/pki/tls/certs/ca-bundle.crt https://${key}/v2/`)).code).toBe(0);
    expect((await sh(node, "ls /usr/local/share/ca-certificates | grep -c registry-trust || true")).stdout.trim()).toBe("0");
    const removed = await run(node, { action: "remove", os: "rhel" });
    expect(removed.report!.changed).toHaveLength(3);
    expect((await sh(node, `curl -sS --cacert /etc/pki/tls/certs/ca-bundle.crt https://${key}/v2/`)).code).toBe(60);
  });

  test("k3s: registries.yaml carries our mirror and TLS entries; someone else's file is merged, kept and never claimed", async () => {
    const node = lab.nodes[3];
    const k3s = { runtimes: ["k3s" as const], probeImage: undefined, registries: [{ host: "registry.test", port: lab.registry.port, mirrorOf: ["docker.io"] }] };
    const ours = {
      mirrors: { "docker.io": { endpoint: [`https://${key}`] } },
      configs: { [key]: { tls: { ca_file: "/etc/rancher/k3s/registry-trust-default-ca.crt" } } },
    };
    const r = await run(node, { action: "install", ...k3s });
    expect(r.report).toMatchObject({ restarted: [] });
    expect(r.report!.verified).toContain(`tls:${key}@/etc/rancher/k3s/registry-trust-default-ca.crt`);
    expect(parse((await sh(node, "cat /etc/rancher/k3s/registries.yaml")).stdout)).toEqual(ours);
    await run(node, { action: "remove", ...k3s });
    expect((await sh(node, "ls /etc/rancher/k3s")).stdout).toBe("");

    const theirs = 'mirrors:\n  quay.io:\n    endpoint:\n      - "https://quay-mirror.example:5000"\nconfigs:\n  "quay-mirror.example:5000":\n    auth:\n      username: puller\n';
    await node.exec("mkdir -p /etc/rancher/k3s && cat > /etc/rancher/k3s/registries.yaml", { stdin: theirs });
    const merged = await run(node, { action: "install", ...k3s });
    expect(merged.report!.changed).toContain("/etc/rancher/k3s/registries.yaml");
    const text = (await sh(node, "cat /etc/rancher/k3s/registries.yaml")).stdout;
    expect(text.startsWith("# Managed by registry-trust")).toBe(false);
    expect(parse(text)).toEqual({
      mirrors: { "quay.io": { endpoint: ["https://quay-mirror.example:5000"] }, ...ours.mirrors },
      configs: { "quay-mirror.example:5000": { auth: { username: "puller" } }, ...ours.configs },
    });
    expect((await run(node, { action: "install", ...k3s })).report).toMatchObject({ changed: [] });
    await run(node, { action: "remove", ...k3s });
    expect(parse((await sh(node, "cat /etc/rancher/k3s/registries.yaml")).stdout)).toEqual(parse(theirs));
  });
});
