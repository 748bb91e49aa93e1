// Stands in for Cluster API's MachineDeployment controller on a bare apiserver: it reports rollouts in the
// status shape of its version and keeps writing the object at a busy controller's pace, so that our
// resourceVersion preconditions meet real 409s.
import * as k8s from "@kubernetes/client-node";
import { CapiVersion, KubeObject, MD_GROUP, MD_PLURAL } from "../core/workers/api";
import { ApiServer } from "./apiserver";
import { NAMESPACE } from "./capi-objects";

export class SimMachineDeploymentController {
  heartbeats = 0;
  readonly rolledOut: number[] = [];
  readonly errors: string[] = [];
  private running = true;
  private readonly loop: Promise<void>;
  private readonly api: k8s.CustomObjectsApi;

  /** `paceMs`: the pause between writes is drawn from [min, max]; the lab runs slower than the tests' 5–50 ms. */
  constructor(env: ApiServer, private readonly version: CapiVersion, private readonly name: string, private readonly rolloutDelayMs = 300,
    private readonly paceMs: readonly [number, number] = [5, 50]) {
    this.api = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const ref = { group: MD_GROUP, version: this.version, namespace: NAMESPACE, plural: MD_PLURAL, name: this.name };
    let seen = { generation: 0, at: 0 };
    while (this.running) {
      try {
        const md = (await this.api.getNamespacedCustomObject(ref)) as KubeObject;
        const generation = md.metadata.generation ?? 0;
        if (generation !== seen.generation) seen = { generation, at: Date.now() };
        const replicas = md.spec?.replicas ?? 1;
        const done = Date.now() - seen.at >= this.rolloutDelayMs;
        const upToDate = done ? replicas : 0;
        const status = { observedGeneration: generation, replicas, readyReplicas: replicas, [this.version === "v1beta2" ? "upToDateReplicas" : "updatedReplicas"]: upToDate };
        if (JSON.stringify({ ...md.status, ...status }) !== JSON.stringify(md.status)) {
          await this.api.replaceNamespacedCustomObjectStatus({ ...ref, body: { ...md, status: { ...md.status, ...status } } });
          if (done) this.rolledOut.push(generation);
        } else {
          // The write of a busy controller: labels and annotations do not change the generation.
          md.metadata.annotations = { ...md.metadata.annotations, "sim.registry-trust.test/heartbeat": String(++this.heartbeats) };
          await this.api.replaceNamespacedCustomObject({ ...ref, body: md });
        }
      } catch (e) {
        const code = (e as { code?: number }).code;
        if (code !== 409) this.errors.push(String((e as Error).message).slice(0, 200));
      }
      await new Promise((r) => setTimeout(r, this.paceMs[0] + Math.random() * (this.paceMs[1] - this.paceMs[0])));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}
