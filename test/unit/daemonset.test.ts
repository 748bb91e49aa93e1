/** The DaemonSet manifests: structure, privileges, tolerations, and refusal of an image on a trusted registry. */
import { checkDaemonSetImage, DaemonSetImageError, DaemonSetInput, imageRegistry, renderDaemonSet } from "../../core/bootstrap/daemonset";
import { NodeScriptError, renderNodeScript } from "../../core/node/render";
import { TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
afterAll(() => pki.cleanup());
const registries = [{ host: "registry.test", port: 5000, mirrorOf: ["docker.io"] }, { host: "10.0.0.5", port: 443, mirrorOf: [] }];
const input: DaemonSetInput = { os: "auto", runtimes: ["containerd"], registries, bundlePem: pki.root("DS Root").certPem, image: "docker.io/library/busybox:1.36" };

const pod = (m = renderDaemonSet(input)) => (m.daemonSet as any).spec.template.spec;

test("a DaemonSet in kube-system with the install script in a ConfigMap, re-run when the script changes", () => {
  const { configMap, daemonSet } = renderDaemonSet(input) as any;
  expect(configMap).toMatchObject({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "registry-trust", namespace: "kube-system" } });
  expect(configMap.data["install.sh"]).toBe(renderNodeScript({ os: "auto", runtimes: ["containerd"], registries, bundlePem: input.bundlePem, action: "install" }));
  expect(daemonSet).toMatchObject({ apiVersion: "apps/v1", kind: "DaemonSet", metadata: { name: "registry-trust", namespace: "kube-system" } });
  expect(daemonSet.spec.selector.matchLabels).toEqual(daemonSet.spec.template.metadata.labels);
  const other = renderDaemonSet({ ...input, bundlePem: pki.root("DS Root 2").certPem }) as any;
  expect(other.daemonSet.spec.template.metadata.annotations["registry-trust.io/script-sha256"]).not.toBe(daemonSet.spec.template.metadata.annotations["registry-trust.io/script-sha256"]);
  expect((renderDaemonSet({ ...input, owner: "team-a" }) as any).daemonSet.metadata.name).toBe("registry-trust-team-a");
});

test("tolerates every taint; only the init container is privileged; the node's root is a hostPath", () => {
  const spec = pod();
  expect(spec.tolerations).toEqual([{ operator: "Exists" }]);
  expect(spec.hostPID).toBe(true);
  expect(spec.hostNetwork).toBe(true);
  const [init] = spec.initContainers;
  expect(init.securityContext).toMatchObject({ privileged: true, runAsUser: 0 });
  expect(init.command).toEqual(["sh", "-c", "chroot /host /bin/sh -s < /registry-trust/install.sh"]);
  expect(init.volumeMounts).toEqual(expect.arrayContaining([{ name: "host-root", mountPath: "/host" }]));
  expect(spec.volumes).toEqual(expect.arrayContaining([{ name: "host-root", hostPath: { path: "/", type: "Directory" } }, { name: "script", configMap: { name: "registry-trust", defaultMode: 0o500 } }]));
  expect(spec.containers).toHaveLength(1);
  expect(spec.containers[0].securityContext).toMatchObject({ privileged: false, allowPrivilegeEscalation: false, runAsNonRoot: true });
  expect(spec.containers[0].volumeMounts).toBeUndefined();
});

test.each([
  ["busybox:1.36", "docker.io"], ["library/busybox", "docker.io"], ["registry.test:5000/x/y:1", "registry.test:5000"],
  ["localhost/x", "localhost"], ["10.0.0.5/x@sha256:" + "a".repeat(64), "10.0.0.5"], ["quay.io/x/y", "quay.io"],
])("imageRegistry(%s) = %s", (image, registry) => expect(imageRegistry(image)).toBe(registry));

describe("an image on a registry being trusted is refused before anything is rendered", () => {
  test.each(["registry.test:5000/tools/busybox:1.36", "registry.test/tools/busybox:1.36", "REGISTRY.test:443/busybox", "10.0.0.5/busybox:1"])("%s", (image) => {
    expect(() => renderDaemonSet({ ...input, image })).toThrow(DaemonSetImageError);
    expect(() => checkDaemonSetImage(image, registries)).toThrow(new RegExp(`^image "${image.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}" is on .*a registry this DaemonSet makes trusted.*ImagePullBackOff.*Set image to one from a registry the nodes already trust`));
  });
  test("an upstream the registry mirrors is fine: a new node has no mirror configuration yet and pulls it directly", () => {
    expect(() => checkDaemonSetImage("docker.io/library/busybox:1.36", registries)).not.toThrow();
  });
  test("bad script input is still refused with every problem", () => {
    expect(() => renderDaemonSet({ ...input, runtimes: [] })).toThrow(NodeScriptError);
  });
});
