// core/topology/ownership.ts on objects the real Cluster API v1.14.2 controllers wrote in the lab
// (test/fixtures/topology, captured by scripts/capture-topology-fixtures.ts): a ClusterClass-managed
// cluster's KCP, MachineDeployment and KubeadmConfigTemplate (server-side applied by capi-topology) and a
// plain cluster's (created by a client's update).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { KcpObject } from "../../core/kcp/api";
import { isKcpError } from "../../core/kcp/errors";
import { clusterTopologyOwner, refuseTopologyOwned, topologyOwner, TOPOLOGY_OWNED_LABEL } from "../../core/topology/ownership";

const fixture = (name: string) => JSON.parse(readFileSync(join(__dirname, "../fixtures/topology", `${name}.json`), "utf8")) as KcpObject;

test("a topology-owned KCP: capi-topology owns spec.kubeadmConfigSpec.files by server-side apply", () => {
  const kcp = fixture("kcp");
  expect(topologyOwner("KubeadmControlPlane", kcp)).toMatchObject({ object: `KubeadmControlPlane default/${kcp.metadata.name}`, manager: "capi-topology", field: "spec.kubeadmConfigSpec.files" });
});

test("a topology-owned MachineDeployment and its template: capi-topology owns the configRef and the template's files", () => {
  expect(topologyOwner("MachineDeployment", fixture("machinedeployment"))).toMatchObject({ manager: "capi-topology", field: "spec.template.spec.bootstrap.configRef" });
  expect(topologyOwner("KubeadmConfigTemplate", fixture("kubeadmconfigtemplate"))).toMatchObject({ manager: "capi-topology", field: "spec.template.spec.files" });
});

test("the owned label alone (managedFields stripped, as after a backup restore or clusterctl move) is enough", () => {
  const kcp = fixture("kcp");
  const stripped = { ...kcp, metadata: { ...kcp.metadata, managedFields: undefined } };
  expect(topologyOwner("KubeadmControlPlane", stripped)).toMatchObject({ manager: "capi-topology", field: `label ${TOPOLOGY_OWNED_LABEL}` });
});

test("objects of a plain cluster, written by a client's update, are not refused", () => {
  expect(topologyOwner("KubeadmControlPlane", fixture("plain-kcp"))).toBeUndefined();
  expect(topologyOwner("MachineDeployment", fixture("plain-machinedeployment"))).toBeUndefined();
  expect(clusterTopologyOwner(fixture("plain-cluster"))).toBeUndefined();
});

test("a server-side-apply owner of another field does not count; one of `files` other than capi-topology does (e.g. a GitOps tool)", () => {
  const kcp = fixture("kcp");
  const onlyReplicas = { ...kcp, metadata: { ...kcp.metadata, labels: {}, managedFields: [{ manager: "capi-topology", operation: "Apply", fieldsV1: { "f:spec": { "f:replicas": {} } } }] } };
  expect(topologyOwner("KubeadmControlPlane", onlyReplicas)).toBeUndefined();
  const gitops = { ...kcp, metadata: { ...kcp.metadata, labels: {}, managedFields: [{ manager: "argocd-controller", operation: "Apply", fieldsV1: { "f:spec": { "f:kubeadmConfigSpec": { "f:files": {} } } } }] } };
  expect(topologyOwner("KubeadmControlPlane", gitops)).toMatchObject({ manager: "argocd-controller" });
  expect(topologyOwner("KubeadmControlPlane", gitops, ["argocd-controller"])).toBeUndefined();
});

test("the Cluster with spec.topology names its class", () => {
  expect(clusterTopologyOwner(fixture("cluster"))).toMatchObject({ object: "Cluster default/tc", manager: "capi-topology", field: "spec.topology" });
  expect(clusterTopologyOwner(fixture("cluster"))!.why).toContain("in-memory-registry-trust");
});

test("the refusal names the object, the owner and the variable route", () => {
  const kcp = fixture("kcp");
  let err: unknown;
  try {
    refuseTopologyOwned("KubeadmControlPlane", kcp);
  } catch (e) {
    err = e;
  }
  expect(isKcpError(err, "TOPOLOGY_OWNED")).toBe(true);
  const message = (err as Error).message;
  expect(message).toContain(`KubeadmControlPlane default/${kcp.metadata.name}`);
  expect(message).toContain("capi-topology");
  expect(message).toMatch(/TopologyTrust.*`variable`.*`shape`/);
});
