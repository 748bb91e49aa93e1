/**
 * The DaemonSet option run for real: core/bootstrap/daemonset.ts's ConfigMap and DaemonSet applied to the
 * lab's real apiserver, its pods created by the real DaemonSet controller (kube-controller-manager), bound
 * by kube-scheduler and run by a real kubelet on a lab node's containerd 1.6 + runc: the privileged init
 * container chroots into the node (hostPath "/") and installs the trust; a bundle change rolls the pod and
 * the node's files follow; deleting the DaemonSet removes its pods and containers from the node.
 * Emulated: no CNI (host network; the node stays NotReady, which the DaemonSet tolerates); the image is a
 * busybox imported into the node's containerd before it joined (lab/kubelet.ts NODE_BUSYBOX_IMAGE).
 */
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { renderDaemonSet } from "../../core/bootstrap/daemonset";
import { startKubeControlPlane, type KubeControlPlane } from "../../lab/control-plane";
import { NODE_BUSYBOX_IMAGE, startKubelet, type LabKubelet } from "../../lab/kubelet";
import { createCa } from "../../lab/pki";
import { waitUntil } from "../../lab/proc";
import { Lab, startLab } from "../../lab/lab";

jest.setTimeout(600_000);

let lab: Lab;
let kube: KubeControlPlane;
let kubelet: LabKubelet;
let core: k8s.CoreV1Api;
let apps: k8s.AppsV1Api;
let objects: k8s.KubernetesObjectApi;

beforeAll(async () => {
  lab = await startLab({ nodes: 1 });
  kube = await startKubeControlPlane(join(lab.dir, "control-plane"));
  kubelet = await startKubelet({ api: kube.api, node: lab.nodes[0] });
  core = kube.api.kubeConfig.makeApiClient(k8s.CoreV1Api);
  apps = kube.api.kubeConfig.makeApiClient(k8s.AppsV1Api);
  objects = k8s.KubernetesObjectApi.makeApiClient(kube.api.kubeConfig);
}, 300_000);
afterAll(async () => {
  await kubelet?.stop().catch(() => undefined);
  await kube?.stop();
  await lab?.stop();
});

const NS = "kube-system";
const NAME = "registry-trust";
const SELECTOR = "app.kubernetes.io/instance=registry-trust";

const manifests = (bundlePem: string) =>
  renderDaemonSet({ os: "auto", runtimes: ["containerd"], registries: [{ host: "registry.test", port: lab.registry.port, mirrorOf: [] }], bundlePem, image: NODE_BUSYBOX_IMAGE });

async function apply(bundlePem: string): Promise<void> {
  const { configMap, daemonSet } = manifests(bundlePem);
  for (const o of [configMap, daemonSet] as k8s.KubernetesObject[]) {
    // Server-side apply, as the Pulumi kubernetes provider does.
    await objects.patch(o, undefined, undefined, "registry-trust-test", true, k8s.PatchStrategy.ServerSideApply);
  }
}

/** The DaemonSet's current pod once it is Running with its init container done, after `generation` was observed. */
async function runningPod(): Promise<k8s.V1Pod> {
  let pod: k8s.V1Pod | undefined;
  let status: unknown;
  await waitUntil("the DaemonSet's pod to run on the node", async () => {
    const ds = await apps.readNamespacedDaemonSet({ namespace: NS, name: NAME });
    status = ds.status;
    const rolled = (ds.status?.observedGeneration ?? 0) >= (ds.metadata?.generation ?? 1) && ds.status?.updatedNumberScheduled === 1 && ds.status?.numberReady === 1;
    if (!rolled) return false;
    const pods = (await core.listNamespacedPod({ namespace: NS, labelSelector: SELECTOR })).items.filter((p) => !p.metadata?.deletionTimestamp);
    pod = pods.length === 1 && pods[0].status?.phase === "Running" ? pods[0] : undefined;
    return pod !== undefined;
  }, 300_000, 500).catch((e: Error) => {
    throw new Error(`${e.message}; DaemonSet status ${JSON.stringify(status)}`);
  });
  return pod!;
}

const key = () => `registry.test:${lab.registry.port}`;
const fingerprints = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((c) => new X509Certificate(c).fingerprint256).sort();
const nodeCaFile = async () => {
  const r = await lab.nodes[0].exec(`cat /etc/containerd/certs.d/${key()}/ca.crt`);
  return r.code === 0 ? r.stdout : undefined;
};

test("its pod runs on the node and installs the trust: the kubelet's init container wrote the node's files", async () => {
  expect(await nodeCaFile()).toBeUndefined();
  await apply(lab.registry.caPem);
  const pod = await runningPod();
  expect(pod.spec?.nodeName).toBe(lab.nodes[0].name);
  expect(pod.status?.initContainerStatuses?.[0].state?.terminated?.exitCode).toBe(0);
  expect(fingerprints((await nodeCaFile())!)).toEqual(fingerprints(lab.registry.caPem));
  // The pull the kubelet will make for pods: through the node's containerd, no restart needed.
  await expect(lab.nodes[0].cri().pullImage(lab.registry.image)).resolves.toMatch(/^sha256:/);
});

test("a bundle change rolls the pod and the node's trust files follow", async () => {
  const before = await runningPod();
  const next = await createCa(join(lab.dir, "next-ca"), "registry-trust lab next CA");
  const bundle = `${lab.registry.caPem.trim()}\n${next.pem.trim()}\n`;
  await apply(bundle);
  let after: k8s.V1Pod | undefined;
  await waitUntil("a new pod of the DaemonSet", async () => {
    after = await runningPod();
    return after.metadata?.uid !== before.metadata?.uid;
  }, 300_000, 500);
  expect(after!.metadata?.annotations?.["registry-trust.io/script-sha256"]).not.toBe(before.metadata?.annotations?.["registry-trust.io/script-sha256"]);
  expect(fingerprints((await nodeCaFile())!)).toEqual(fingerprints(bundle));
});

test("deleting the DaemonSet removes its pods and their containers from the node; the installed trust stays", async () => {
  await apps.deleteNamespacedDaemonSet({ namespace: NS, name: NAME });
  await core.deleteNamespacedConfigMap({ namespace: NS, name: NAME });
  await waitUntil("the DaemonSet's pods to be gone", async () => (await core.listNamespacedPod({ namespace: NS, labelSelector: SELECTOR })).items.length === 0, 300_000, 500);
  await waitUntil("its containers to be gone from the node", async () => {
    const r = await lab.nodes[0].exec("crictl --runtime-endpoint unix:///run/containerd/containerd.sock ps -a --label io.kubernetes.pod.namespace=kube-system -q");
    return r.code === 0 && r.stdout.trim() === "";
  }, 120_000, 500);
  // The DaemonSet has no uninstall step (core/bootstrap/daemonset.ts): the node keeps the trust it got,
  // as a node booted with the cloud-init fragment does.
  expect(await nodeCaFile()).toBeDefined();
});
