// index.ts under mocks with the rotation keys: the preflight refuses before any resource is registered
// (against a real TLS endpoint: openssl s_server in its own process, since the mock program runs while
// this process waits), and the serving switch and DaemonSet are wired when configured.
import { ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { runProgram } from "../support/run-program";
import { TestPki } from "../../lab/openssl-pki";

jest.setTimeout(120_000);

const pki = new TestPki();
const leaf = pki.leaf(pki.root("Rot CA G1"), ["DNS:registry.test", "IP:127.0.0.1"]);
let server: ChildProcess;
let port: number;

beforeAll(async () => {
  port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  server = spawn("openssl", ["s_server", "-quiet", "-accept", `127.0.0.1:${port}`, "-cert", leaf.certPath, "-key", leaf.keyPath], { stdio: "ignore" });
  // Ready once it accepts a connection.
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, "127.0.0.1", () => { c.destroy(); resolve(true); }).on("error", () => resolve(false));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
});
afterAll(() => {
  server?.kill();
  pki.cleanup();
});

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHgsSXB27KRGxzrx4ETWC3ACMGW/F9auj4bConhNs+M7";
function engineConfig(values: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [`registry-trust:${k}`, typeof v === "object" ? JSON.stringify(v) : String(v)]));
}
const base = () => ({
  registries: [{ host: "127.0.0.1", port }],
  caCommonName: "Rot CA",
  caGeneration: 2,
  caRetainGenerations: 1,
  nodes: [{ name: "n1", host: "127.0.0.11", hostKey: HOST_KEY }],
  // The mocked node runs none of its checks (lab/tls-mocks.ts): this test is about the program.
  allowUnverifiedNodes: true,
});
const agent = { SSH_AUTH_SOCK: "/run/user/0/ssh-agent.sock" };
const run = (config: Record<string, string>) => runProgram("index.ts", config, [], agent);

test("retaining no generation while generation 1's certificate is served: refused before any resource is registered", () => {
  const outcome = run(engineConfig({ ...base(), caRetainGenerations: 0 }));
  expect(outcome.resources).toEqual([]);
  expect(outcome.errors).toHaveLength(1);
  expect(outcome.errors[0]).toMatch(/^RunError: Rotation preflight refused; nothing was changed:\n {2}- overlap: https:\/\/127\.0\.0\.1:\d+ serves a certificate from CA generation 1, which would leave the bundle \(generations 2\)/);
});

test("generation 1 retained, but not the CA that signed what is served (same name, other key): pass 2 refuses before anything is distributed", () => {
  // Under mocks every CA is freshly made, so the bundle's "Rot CA G1" is not the served certificate's issuer.
  const outcome = run(engineConfig(base()));
  expect(outcome.errors.join("\n")).toContain(`https://127.0.0.1:${port} serves "CN=registry.test" issued by "CN=Rot CA G1"`);
  expect(outcome.errors.join("\n")).toMatch(/which the new bundle does not trust \((BAD_SIGNATURE|UNKNOWN_AUTHORITY)\)/);
  expect(outcome.resources.filter((r) => r.type === "command:remote:Command")).toEqual([]);
});

test("the switch to host files and the DaemonSet are wired, the switch after the nodes", () => {
  const kubeconfig = join(pki.dir, "kubeconfig");
  writeFileSync(kubeconfig, "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n");
  const outcome = run(engineConfig({
    ...base(),
    // Nothing listens there and the kubeconfig names no cluster: this test is about the wiring only.
    registries: [{ host: "127.0.0.1", port: 1 }],
    clusters: [{ name: "mgmt", kubeconfig }],
    servingTarget: { kind: "hostFiles", host: "127.0.0.1", hostKey: HOST_KEY, certPath: "/etc/registry/tls.crt", keyPath: "/etc/registry/tls.key", reloadCommand: ["systemctl", "restart", "docker-registry"], verifyTimeoutSeconds: 0 },
    daemonset: { enabled: true, cluster: "mgmt", image: "docker.io/library/busybox:1.36" },
    preflightAllowUnreachable: true,
  }));
  expect(outcome.errors).toEqual([]);
  const names = outcome.resources.map((r) => `${r.type} ${r.name}`);
  expect(names).toEqual(expect.arrayContaining([
    "registry-trust:index:ServingCertificate serving",
    "command:remote:Command serving-files",
    "pulumi:providers:kubernetes mgmt-k8s",
    "kubernetes:apps/v1:DaemonSet bootstrap-daemonset",
    "tls:index/selfSignedCert:SelfSignedCert registry-ca-g1",
    "tls:index/selfSignedCert:SelfSignedCert registry-ca-g2",
  ]));
  // The switch registers only once every node reported and the DaemonSet is applied.
  expect(names.indexOf("command:remote:Command serving-files")).toBeGreaterThan(names.indexOf("command:remote:Command nodes-n1"));
  expect(names.indexOf("command:remote:Command serving-files")).toBeGreaterThan(names.indexOf("kubernetes:apps/v1:DaemonSet bootstrap-daemonset"));
  expect(outcome.outputs).toContain("servedFingerprint");
});

test("a DaemonSet image on the registry being trusted is refused with the config, before anything", () => {
  const outcome = run(engineConfig({
    ...base(),
    clusters: [{ name: "mgmt" }],
    daemonset: { enabled: true, cluster: "mgmt", image: `127.0.0.1:${port}/tools/busybox:1.36` },
  }));
  expect(outcome.resources).toEqual([]);
  expect(outcome.errors[0]).toMatch(/^RunError: Invalid stack configuration .*\n {2}- registry-trust:daemonset.image = "127\.0\.0\.1:\d+\/tools\/busybox:1\.36": image .* is on 127\.0\.0\.1:\d+, a registry this DaemonSet makes trusted/s);
});
