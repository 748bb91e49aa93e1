// core/workers/rollout.ts: which old MachineSets the MachineDeployment controller is about to delete. The
// rule mirrors Cluster API v1.14's cleanupDeployment (core/reconcilers/machinedeployment/machinedeployment_sync.go):
// it deletes an old MachineSet only when spec.replicas and status.replicas are 0 and its status observed
// its generation, and skips ones already deleting.
import { oldSetsAwaitingCleanup } from "../../core/workers/rollout";
import { KubeObject } from "../../core/workers/api";

function machineSet(name: string, template: string, o: { spec?: number; status?: number; generation?: number; observed?: number; deleting?: boolean } = {}): KubeObject {
  return {
    apiVersion: "cluster.x-k8s.io/v1beta2",
    kind: "MachineSet",
    metadata: { name, namespace: "default", generation: o.generation ?? 2, ...(o.deleting ? { deletionTimestamp: "2026-12-02T06:00:00Z" } : {}) },
    spec: { replicas: o.spec ?? 0, template: { spec: { bootstrap: { configRef: { apiGroup: "bootstrap.cluster.x-k8s.io", kind: "KubeadmConfigTemplate", name: template } } } } },
    status: { replicas: o.status ?? 0, observedGeneration: o.observed ?? 2 },
  } as KubeObject;
}

const names = (sets: KubeObject[]) => sets.map((s) => s.metadata.name);

test("an old MachineSet scaled to zero and observed so is awaited; the current template's set never is", () => {
  expect(names(oldSetsAwaitingCleanup([machineSet("md-new", "tpl-new", { spec: 0 }), machineSet("md-old", "tpl-old")], "tpl-new"))).toEqual(["md-old"]);
});

test("an old MachineSet still holding machines, or whose scale-down its controller has not observed, is not", () => {
  expect(oldSetsAwaitingCleanup([
    machineSet("still-running", "tpl-old", { spec: 1, status: 1 }),
    machineSet("scaling-down", "tpl-old", { spec: 0, status: 1 }),
    machineSet("not-observed", "tpl-old", { generation: 3, observed: 2 }),
  ], "tpl-new")).toEqual([]);
});

test("an old MachineSet already deleting is awaited whatever its counts", () => {
  expect(names(oldSetsAwaitingCleanup([machineSet("going", "tpl-old", { spec: 1, status: 1, deleting: true })], "tpl-new"))).toEqual(["going"]);
});
