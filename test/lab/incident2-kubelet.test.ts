/**
 * Incident 2 end to end through a real kubelet: nodes that join after the CA was distributed cannot pull
 * the private registry's images — until trust reaches them through the DaemonSet option or the bootstrap
 * content.
 *
 * Real: kube-apiserver, kube-controller-manager (DaemonSet controller), kube-scheduler and kubelet
 * v1.37.2 from Go modules; the kubelet runs in each lab node's namespaces on that node's containerd 1.6
 * and runc, registering a Node; the pod's pull error and events are the kubelet's; the DaemonSet is
 * core/bootstrap/daemonset.ts's manifests, its pods run by that kubelet; the bootstrap content is the
 * cloud-init fragment run by Debian's cloud-init (write_files + runcmd) before the node's kubelet starts;
 * `registry-trust doctor` over SSH.
 * Emulated (lab/README.md, docs/kubelet.md): no CNI (host-network pods; the Node stays NotReady, pods
 * tolerate that taint); the DaemonSet image is a busybox (Debian's static busybox) imported into each
 * node's containerd before it joins, standing in for an image from a registry the node image trusts;
 * cloud-init's scripts_user step; kernel sysctls the kubelet would set machine-wide are masked per node.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { renderCloudInit } from "../../core/bootstrap/cloud-init";
import { DaemonSetImageError, renderDaemonSet } from "../../core/bootstrap/daemonset";
import { DoctorReport } from "../../core/doctor/analyze";
import { startKubeControlPlane, type KubeControlPlane } from "../../lab/control-plane";
import { NODE_BUSYBOX_IMAGE, startKubelet, type LabKubelet } from "../../lab/kubelet";
import { pullFailure, pushBusybox, sleeperPod, waitForPod, podEvents } from "../../lab/kubelet-pods";
import { Lab, startLab } from "../../lab/lab";
import { LabNode } from "../../lab/node";
import { waitUntil } from "../../lab/proc";
import { cli } from "../support/cli";

jest.setTimeout(600_000);

const X509_UNKNOWN = "x509: certificate signed by unknown authority";
const NS = "default";
let lab: Lab;
let kube: KubeControlPlane;
let core: k8s.CoreV1Api;
let image: string;
let digest: string;
const kubelets: LabKubelet[] = [];

beforeAll(async () => {
  lab = await startLab({ nodes: 2 });
  [kube, { image, digest }] = await Promise.all([startKubeControlPlane(join(lab.dir, "control-plane")), pushBusybox(lab, join(lab.dir, "busybox"))]);
  core = kube.api.kubeConfig.makeApiClient(k8s.CoreV1Api);
}, 300_000);
afterAll(async () => {
  for (const k of kubelets) await k.stop().catch(() => undefined);
  await kube?.stop();
  await lab?.stop();
});

const registries = () => [{ host: "registry.test", port: lab.registry.port, mirrorOf: [] }];

async function join_(node: LabNode): Promise<LabKubelet> {
  const k = await startKubelet({ api: kube.api, node });
  kubelets.push(k);
  return k;
}

async function doctor(node: LabNode): Promise<{ code: number; report: DoctorReport }> {
  const r = await cli(["doctor", "--node", `ssh://root@${node.host}:${node.port}`, "--identity", node.privateKeyPath, "--known-hosts", node.knownHostsPath,
    "--registry", `registry.test:${lab.registry.port}`, "--image", image, "--json"]);
  expect(r.code).not.toBe(2);
  return { code: r.code, report: JSON.parse(r.stdout) as DoctorReport };
}

/** The cloud-init boot of test/lab/cloud-init.test.ts: real write_files + runcmd, scripts_user emulated, /var private. */
const FRAGMENT = "/var/lib/cloud/registry-trust.cfg";
const cloudInit = (module: string) => `cloud-init --file ${FRAGMENT} single --name ${module} --frequency always > /var/log/single-${module}.log 2>&1 || { cat /var/log/single-${module}.log >&2; exit 90; }`;
const boot = (fragment: string) => [
  "set -e",
  "mount -t tmpfs tmpfs /var",
  "mkdir -p /var/lib/cloud /var/log",
  `printf %s '${Buffer.from(fragment).toString("base64")}' | base64 -d > ${FRAGMENT}`,
  cloudInit("write_files"),
  cloudInit("runcmd"),
  "for s in /var/lib/cloud/instances/*/scripts/*; do [ -x \"$s\" ] || continue; \"$s\" || exit $?; done",
  "",
].join("\n");

let untrustedPod = "";

test("a node that joins without our trust: the kubelet's pull fails with the x509 error, ErrImagePull/ImagePullBackOff, and doctor says the same", async () => {
  const node = lab.nodes[0];
  await join_(node);
  untrustedPod = "app-untrusted";
  await core.createNamespacedPod({ namespace: NS, body: sleeperPod(untrustedPod, node.name, image) });
  const pod = await waitForPod(core, NS, untrustedPod, "to fail pulling", (p) => pullFailure(p) !== undefined);
  expect(pod.spec?.nodeName).toBe(node.name);
  expect(pullFailure(pod)!.message).toContain(X509_UNKNOWN);
  const failed = (await podEvents(core, NS, untrustedPod)).filter((e) => e.reason === "Failed" && e.source?.component === "kubelet");
  expect(failed.map((e) => e.message).join("\n")).toContain(X509_UNKNOWN);

  // doctor over SSH reaches the same verdict, with the same error from its own CRI pull.
  const { code, report } = await doctor(node);
  expect(code).toBe(1);
  expect(report.findings.filter((f) => f.severity === "error" || f.severity === "risk").map((f) => f.code)).toEqual(["UNKNOWN_AUTHORITY"]);
  expect(report.pull?.ok).toBe(false);
  expect(report.pull?.output).toContain(X509_UNKNOWN);
});

test("bootstrap content: a node booted with the cloud-init fragment before its kubelet starts runs the private image on the first try", async () => {
  const node = lab.nodes[1];
  const key = `registry.test:${lab.registry.port}`;
  expect((await node.exec(`test -e /etc/containerd/certs.d/${key}`)).code).toBe(1);
  const fragment = renderCloudInit({ os: "auto", runtimes: ["containerd"], registries: registries(), bundlePem: lab.registry.caPem, servingChainPem: readFileSync(join(lab.dir, "pki", "server.crt"), "utf8") });
  expect(fragment.text).not.toMatch(/skip_verify|insecure/i);
  const r = await node.exec("unshare --mount --propagation private sh -s", { stdin: boot(fragment.text), timeoutMs: 120_000 });
  expect(r.code).toBe(0);

  await join_(node);
  await core.createNamespacedPod({ namespace: NS, body: sleeperPod("app-bootstrapped", node.name, image) });
  const pod = await waitForPod(core, NS, "app-bootstrapped", "to run", (p) => p.status?.phase === "Running" || pullFailure(p) !== undefined);
  expect(pullFailure(pod)).toBeUndefined();
  expect(pod.status?.phase).toBe("Running");
  expect(pod.spec?.nodeName).toBe(node.name);
  expect(pod.status?.containerStatuses?.[0].imageID).toBe(`${key}/lab/busybox@${digest}`);
  expect((await podEvents(core, NS, "app-bootstrapped")).filter((e) => e.reason === "Failed")).toEqual([]);
});

test("the DaemonSet option: refused with an image on the private registry; with a node-trusted image its pod installs trust and the stuck pod starts Running", async () => {
  expect(() => renderDaemonSet({ os: "auto", runtimes: ["containerd"], registries: registries(), bundlePem: lab.registry.caPem, image })).toThrow(DaemonSetImageError);

  const { configMap, daemonSet } = renderDaemonSet({ os: "auto", runtimes: ["containerd"], registries: registries(), bundlePem: lab.registry.caPem, image: NODE_BUSYBOX_IMAGE });
  const objects = k8s.KubernetesObjectApi.makeApiClient(kube.api.kubeConfig);
  await objects.create(configMap as k8s.KubernetesObject);
  await objects.create(daemonSet as k8s.KubernetesObject);
  const name = (daemonSet as { metadata: { name: string; namespace: string } }).metadata;
  // Its pod on node-1, the node without trust, is the one that matters; node-2 (trusted at boot) runs one too.
  await waitForDaemonSetPod(name.namespace, lab.nodes[0].name);
  await waitForDaemonSetPod(name.namespace, lab.nodes[1].name);
  // Trust, not a bypass: what the pod installed on the node turns no verification off.
  const bypass = await lab.nodes[0].exec("grep -rlE '^[[:space:]]*(skip_verify|insecure_skip_verify)[[:space:]]*=[[:space:]]*true' /etc/containerd || true");
  expect(bypass).toMatchObject({ code: 0, stdout: "" });

  // The kubelet retries the stuck pod on its own back-off; the same pod, not a new one, starts Running.
  const pod = await waitForPod(core, NS, untrustedPod, "to run once trust is installed", (p) => p.status?.phase === "Running", 420_000);
  expect(pod.status?.containerStatuses?.[0].imageID).toBe(`registry.test:${lab.registry.port}/lab/busybox@${digest}`);
  expect((await podEvents(core, NS, untrustedPod)).some((e) => e.reason === "Pulled")).toBe(true);

  const { code, report } = await doctor(lab.nodes[0]);
  expect(report.pull?.ok).toBe(true);
  expect(report.findings.filter((f) => f.severity === "error")).toEqual([]);
  expect(code).toBe(0);
});

/** Waits until the DaemonSet's pod on `nodeName` is Running with its install init container done. */
async function waitForDaemonSetPod(namespace: string, nodeName: string): Promise<void> {
  const done = (p: k8s.V1Pod) => p.spec?.nodeName === nodeName && p.status?.phase === "Running" && p.status?.initContainerStatuses?.[0]?.state?.terminated?.exitCode === 0;
  await waitUntil(`the DaemonSet's pod on ${nodeName} to have installed and run`, async () =>
    (await core.listNamespacedPod({ namespace, labelSelector: "app.kubernetes.io/name=registry-trust" })).items.some(done), 180_000, 500).catch(async (e: Error) => {
    const pods = (await core.listNamespacedPod({ namespace })).items.map((p) => ({ name: p.metadata?.name, node: p.spec?.nodeName, status: p.status }));
    const logs = lab.nodes.map((n) => {
      try {
        return execFileSync("sh", ["-c", `tail -n 5 ${n.dir}/kubelet/var-log/pods/${namespace}_*/*/*.log; grep -E '^E' ${n.dir}/logs/kubelet.log | tail -n 5`], { encoding: "utf8" });
      } catch {
        return `${n.name}: no pod logs`;
      }
    });
    throw new Error(`${e.message}; pods ${JSON.stringify(pods)}; logs:\n${logs.join("\n")}`);
  });
}
