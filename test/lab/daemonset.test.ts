/**
 * The DaemonSet's install container, run on a lab node the way the kubelet would run it: its exact
 * command, in a container root whose /host is the node's root (the hostPath "/") and whose
 * /registry-trust/install.sh is the ConfigMap's script. EMULATED: the container runtime's part. The
 * "container" is a tmpfs root in a throwaway mount namespace with the node's /usr standing in for the
 * image's userland (busybox or debian would provide sh and chroot); no kubelet, image pull or pod exists.
 * Real: the command line, the chroot into the node, the script, the node's containerd and the CRI pull.
 */
import { HOST_ROOT, renderDaemonSet, SCRIPT_DIR, SCRIPT_KEY } from "../../core/bootstrap/daemonset";
import { parseNodeReport } from "../../core/node/render";
import { Lab, startLab } from "../../lab/lab";

let lab: Lab;
beforeAll(async () => {
  lab = await startLab({ nodes: 1 });
}, 60_000);
afterAll(() => lab?.stop());

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

test("the DaemonSet's init container command installs trust on a node: its first CRI pull succeeds", async () => {
  const node = lab.nodes[0];
  const key = `registry.test:${lab.registry.port}`;
  expect((await node.exec(`curl -sS https://${key}/v2/`)).code).toBe(60);
  const { configMap, daemonSet } = renderDaemonSet({
    os: "auto", runtimes: ["containerd"], registries: [{ host: "registry.test", port: lab.registry.port, mirrorOf: [] }],
    bundlePem: lab.registry.caPem, image: "docker.io/library/busybox:1.36",
  });
  const script = (configMap as { data: Record<string, string> }).data[SCRIPT_KEY];
  const init = (daemonSet as { spec: { template: { spec: { initContainers: { command: string[] }[] } } } }).spec.template.spec.initContainers[0];
  const container = [
    "set -e",
    "R=$(mktemp -d)",
    'mount -t tmpfs tmpfs "$R"',
    `mkdir -p "$R${HOST_ROOT}" "$R${SCRIPT_DIR}" "$R/usr"`,
    `mount --rbind / "$R${HOST_ROOT}"`,
    'mount --rbind /usr "$R/usr"',
    'for d in bin sbin lib lib64; do ln -s "usr/$d" "$R/$d"; done',
    `printf %s '${Buffer.from(script).toString("base64")}' | base64 -d > "$R${SCRIPT_DIR}/${SCRIPT_KEY}"`,
    `set +e; chroot "$R" ${init.command.map(q).join(" ")}; rc=$?`,
    'umount -R "$R"; rmdir "$R"; exit $rc',
    "",
  ].join("\n");
  const pid = node.containerdPid();
  const r = await node.exec("unshare --mount --propagation private sh -s", { stdin: container, timeoutMs: 120_000 });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const report = parseNodeReport(r.stdout);
  expect(report.changed).toEqual(expect.arrayContaining([`/etc/containerd/certs.d/${key}/hosts.toml`, `/etc/containerd/certs.d/${key}/ca.crt`]));
  expect(report.verified).toContain(`tls:${key}@/etc/containerd/certs.d/${key}/ca.crt`);
  // The files landed on the node itself, not in the throwaway container root.
  expect((await node.exec(`test -f /etc/containerd/certs.d/${key}/hosts.toml`)).code).toBe(0);
  await expect(node.cri().pullImage(lab.registry.image)).resolves.toMatch(/^sha256:[0-9a-f]{64}$/);
  expect(node.containerdPid()).toBe(pid);
});
