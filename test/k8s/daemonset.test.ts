/**
 * The DaemonSet and its ConfigMap applied to a real kube-apiserver (validation, defaulting, admission of
 * privileged pods). No kubelet, scheduler or DaemonSet controller runs here (no pods are made), so
 * this proves API acceptance only; the container's command is exercised on a lab node in
 * test/lab/daemonset.test.ts.
 */
import * as k8s from "@kubernetes/client-node";
import { renderDaemonSet } from "../../core/bootstrap/daemonset";
import { TestPki } from "../../lab/openssl-pki";
import { ApiServer, startApiServer } from "../../lab/apiserver";

jest.setTimeout(120_000);
let env: ApiServer;
const pki = new TestPki();
beforeAll(async () => {
  // kube-apiserver refuses privileged containers unless --allow-privileged=true, which kubeadm and every
  // managed distribution set; without it the DaemonSet is refused (HTTP 422, "disallowed by cluster policy").
  env = await startApiServer({ installCapiCrds: false, apiServerArgs: ["--allow-privileged=true"] });
});
afterAll(async () => {
  await env?.stop();
  pki.cleanup();
});

test("the API server accepts the ConfigMap and the DaemonSet as rendered, and keeps what matters", async () => {
  const { configMap, daemonSet } = renderDaemonSet({
    os: "auto", runtimes: ["containerd"], registries: [{ host: "registry.test", port: 5000, mirrorOf: [] }],
    bundlePem: pki.root("DS Root").certPem, image: "docker.io/library/busybox:1.36",
  });
  const api = k8s.KubernetesObjectApi.makeApiClient(env.kubeConfig);
  await api.create(configMap as k8s.KubernetesObject);
  const created = (await api.create(daemonSet as k8s.KubernetesObject)) as k8s.V1DaemonSet;
  const read = await env.kubeConfig.makeApiClient(k8s.AppsV1Api).readNamespacedDaemonSet({ name: "registry-trust", namespace: "kube-system" });
  expect(read.metadata?.uid).toBe(created.metadata?.uid);
  const spec = read.spec!.template.spec!;
  expect(spec.tolerations).toEqual([{ operator: "Exists" }]);
  expect(spec.priorityClassName).toBe("system-node-critical");
  expect(spec.initContainers![0].securityContext?.privileged).toBe(true);
  expect(spec.volumes).toEqual(expect.arrayContaining([expect.objectContaining({ name: "host-root", hostPath: { path: "/", type: "Directory" } })]));
  const cm = await env.kubeConfig.makeApiClient(k8s.CoreV1Api).readNamespacedConfigMap({ name: "registry-trust", namespace: "kube-system" });
  expect(cm.data?.["install.sh"]).toBe((configMap as { data: Record<string, string> }).data["install.sh"]);
});

test("the API server refuses the same DaemonSet with a broken field (the acceptance above is meaningful)", async () => {
  const { daemonSet } = renderDaemonSet({
    os: "auto", runtimes: ["containerd"], registries: [{ host: "registry.test", port: 5000, mirrorOf: [] }],
    bundlePem: pki.root("DS Root").certPem, image: "docker.io/library/busybox:1.36", name: "broken",
  });
  const broken = JSON.parse(JSON.stringify(daemonSet));
  broken.spec.selector.matchLabels = { other: "x" };
  await expect(k8s.KubernetesObjectApi.makeApiClient(env.kubeConfig).create(broken)).rejects.toThrow(/selector.*does not match template/);
});
