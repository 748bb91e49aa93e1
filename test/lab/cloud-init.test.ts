/**
 * The cloud-init fragment on a fresh lab node, run by Debian's real cloud-init (incident 2: a node
 * provisioned after the CA was distributed must pull on its first try).
 *
 * What is real: cloud-init's own `write_files` and `runcmd` modules (`cloud-init single`), fed the
 * fragment with `--file`, writing the script and the runcmd script into the node; the install script;
 * the node's containerd; the first pull through CRI.
 * What is emulated, and why: a boot runs three stages, and only the two modules the fragment uses can be
 * run alone. The datasource (user-data from NoCloud etc.) is replaced by `--file`, because finding one
 * needs the init stage, which here would also regenerate SSH host keys and write network config on the
 * machine the nodes share. The final stage's `scripts_user` module, which executes what runcmd wrote, is
 * EMULATED by `emulatedScriptsUser` below (run-parts of the instance's scripts directory, what the module
 * does): `cloud-init single` does not set up the /var/lib/cloud/instance link that module reads.
 * cloud-init's /var (state, logs) is a tmpfs in a throwaway mount namespace: nodes share the host's /var.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { renderCloudInit } from "../../core/bootstrap/cloud-init";
import { parseNodeReport } from "../../core/node/render";
import { Lab, startLab } from "../../lab/lab";
import { LabNode } from "../../lab/node";

let lab: Lab;
beforeAll(async () => {
  lab = await startLab({ nodes: 2 });
}, 60_000);
afterAll(() => lab?.stop());

const FRAGMENT = "/var/lib/cloud/registry-trust.cfg";
/** scripts_user's job: run every executable in the current instance's scripts/ directory, in name order. */
const emulatedScriptsUser = "for s in /var/lib/cloud/instances/*/scripts/*; do [ -x \"$s\" ] || continue; \"$s\" || exit $?; done";
const cloudInit = (module: string) => `cloud-init --file ${FRAGMENT} single --name ${module} --frequency always > /var/log/single-${module}.log 2>&1 || { cat /var/log/single-${module}.log >&2; exit 90; }`;
/** The boot, on stdin of a shell in a throwaway mount namespace; the fragment travels base64 inside it. */
const boot = (fragment: string) => [
  "set -e",
  "mount -t tmpfs tmpfs /var",
  "mkdir -p /var/lib/cloud /var/log",
  `printf %s '${Buffer.from(fragment).toString("base64")}' | base64 -d > ${FRAGMENT}`,
  cloudInit("write_files"),
  cloudInit("runcmd"),
  "echo '--- runcmd script written by cloud-init:' >&2; cat /var/lib/cloud/instances/*/scripts/runcmd >&2",
  emulatedScriptsUser,
  "",
].join("\n");
const bootNode = (node: LabNode, fragment: string) => node.exec("unshare --mount --propagation private sh -s", { stdin: boot(fragment), timeoutMs: 120_000 });
const input = (port: number) => ({ os: "auto" as const, runtimes: ["containerd" as const], registries: [{ host: "registry.test", port, mirrorOf: [] }] });

test("incident 2 replay: a fresh node booted with the cloud-init fragment pulls from the private registry on its first try", async () => {
  const node = lab.nodes[0];
  const key = `registry.test:${lab.registry.port}`;
  // Fresh and untrusted (checked without a pull, so the pull below is the node's first).
  expect((await node.exec(`curl -sS https://${key}/v2/`)).code).toBe(60);
  expect((await node.exec(`test -e /etc/containerd/certs.d/${key}`)).code).toBe(1);

  const fragment = renderCloudInit({ ...input(lab.registry.port), bundlePem: lab.registry.caPem, servingChainPem: readFileSync(join(lab.dir, "pki", "server.crt"), "utf8") });
  const pid = node.containerdPid();
  const r = await bootNode(node, fragment.text);
  expect(r.stderr).toContain(`'sh' '${fragment.scriptPath}'`);
  expect(r.code).toBe(0);

  // write_files put the script there, as the fragment said, and it is the rendered script.
  const written = await node.exec(`stat -c '%a %U' ${fragment.scriptPath} && cat ${fragment.scriptPath}`);
  expect(written.stdout).toBe(`700 root\n${fragment.script}`);
  const report = parseNodeReport(r.stdout);
  expect(report).toMatchObject({ action: "install", os: "debian", restarted: [] });
  expect(report.changed).toEqual(expect.arrayContaining([`/etc/containerd/certs.d/${key}/hosts.toml`, `/etc/containerd/certs.d/${key}/ca.crt`]));

  await expect(node.cri().pullImage(lab.registry.image)).resolves.toMatch(/^sha256:[0-9a-f]{64}$/);
  expect(node.containerdPid()).toBe(pid);
});

test("a boot whose install fails verification leaves the node untouched and its runcmd step fails", async () => {
  const node = lab.nodes[1];
  const snapshot = () => node.exec("find /etc/containerd /usr/local/share/ca-certificates /etc/ssl/certs -type f | sort | xargs sha256sum").then((x) => x.stdout);
  const before = await snapshot();
  // The CA certificate given as the serving chain: it does not name registry.test, so the offline check fails.
  const fragment = renderCloudInit({ ...input(lab.registry.port), bundlePem: lab.registry.caPem, servingChainPem: lab.registry.caPem });
  const r = await bootNode(node, fragment.text);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain("does not verify the registry's serving certificate for registry.test");
  expect(r.stderr).toContain("nothing was changed on this node");
  expect(await snapshot()).toBe(before);
  await expect(node.cri().pullImage(lab.registry.image)).rejects.toThrow("x509: certificate signed by unknown authority");
});
