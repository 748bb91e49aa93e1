// Captures the objects the real topology controller (Cluster API v1.14, ClusterTopology gate on) writes for a
// ClusterClass-managed cluster in the lab — the Cluster, its KubeadmControlPlane, MachineDeployment and
// KubeadmConfigTemplate with their managedFields — into test/fixtures/topology/*.json, for the unit tests of
// core/topology/ownership.ts. Also captures a plain (non-topology) KCP and MachineDeployment for contrast.
// Run: npx tsx scripts/capture-topology-fixtures.ts
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { tail } from "../lab/apiserver";
import { startManagementCluster } from "../lab/capi";
import { createManagedCluster, managedClusterNames, NAMESPACE } from "../lab/capi-objects";
import { createTopologyClass, createTopologyCluster } from "../lab/topology-objects";

const out = path.join(__dirname, "..", "test", "fixtures", "topology");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const mgmt = await startManagementCluster({ clusterTopology: true });
  try {
    const kc = mgmt.api.kubeConfig;
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const list = async (group: string, plural: string, cluster: string) =>
      ((await custom.listNamespacedCustomObject({ group, version: "v1beta2", namespace: NAMESPACE, plural, labelSelector: `cluster.x-k8s.io/cluster-name=${cluster}` })) as { items: Array<{ metadata: { name: string } }> }).items;
    await createTopologyClass(kc);
    await createTopologyCluster(kc, "tc", { workers: { "md-0": 1 } });
    await createManagedCluster(mgmt.api, managedClusterNames("plain"), { controlPlaneReplicas: 1, workerReplicas: 1 });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const kcps = await list("controlplane.cluster.x-k8s.io", "kubeadmcontrolplanes", "tc");
      const mds = await list("cluster.x-k8s.io", "machinedeployments", "tc");
      const templates = await list("bootstrap.cluster.x-k8s.io", "kubeadmconfigtemplates", "tc");
      if (kcps.length === 1 && mds.length === 1 && templates.length === 1) {
        fs.mkdirSync(out, { recursive: true });
        const cluster = await custom.getNamespacedCustomObject({ group: "cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "clusters", name: "tc" });
        const write = (name: string, obj: unknown) => fs.writeFileSync(path.join(out, `${name}.json`), `${JSON.stringify(obj, null, 2)}\n`);
        write("cluster", cluster);
        write("kcp", kcps[0]);
        write("machinedeployment", mds[0]);
        write("kubeadmconfigtemplate", templates[0]);
        const plain = managedClusterNames("plain");
        const get = (group: string, plural: string, name: string) => custom.getNamespacedCustomObject({ group, version: "v1beta2", namespace: NAMESPACE, plural, name });
        write("plain-kcp", await get("controlplane.cluster.x-k8s.io", "kubeadmcontrolplanes", plain.controlPlane));
        write("plain-machinedeployment", await get("cluster.x-k8s.io", "machinedeployments", plain.machineDeployment));
        write("plain-cluster", await custom.getNamespacedCustomObject({ group: "cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "clusters", name: "plain" }));
        console.log(`wrote ${out} (${mgmt.controllers})`);
        return;
      }
      if (Date.now() > deadline) {
        const cluster = (await custom.getNamespacedCustomObject({ group: "cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "clusters", name: "tc" })) as { status?: unknown };
        throw new Error(`topology controller made ${kcps.length} KCPs, ${mds.length} MachineDeployments, ${templates.length} templates after 120 s; ` +
          `Cluster status: ${JSON.stringify(cluster.status)}\ncore log:\n${tail(mgmt.capi.logs.core, 40)}`);
      }
      await sleep(1000);
    }
  } finally {
    await mgmt.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
