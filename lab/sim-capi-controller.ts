// Stands in for the KubeadmControlPlane controller of Cluster API on a bare apiserver (no controller runs
// there), as a fast fixture only: the lab, bench:kcp and the claims' tests run the real controllers
// (lab/capi.ts); test/k8s/kcp-sequencer uses this one and says why. It reacts to each generation change like a rollout, and keeps writing the object at the pace of a
// busy controller so that writers using a resourceVersion precondition really meet 409 Conflicts.
//
// Without CAPI's conversion webhook the apiserver converts between v1beta1 and v1beta2 by relabelling only,
// so a test must use one API version per object: the controller writes the status shape of `version`.
import * as k8s from "@kubernetes/client-node";

export type KcpVersion = "v1beta1" | "v1beta2";

export interface SimCapiControllerOptions {
  kubeConfig: k8s.KubeConfig;
  namespace: string;
  name: string;
  version: KcpVersion;
  /** After a generation change: status.observedGeneration = generation, rollout in progress (default 100 ms). */
  observeDelayMs?: number;
  /** After a generation change: all replicas up to date and ready, rollout conditions cleared (default 500 ms). */
  rolloutDelayMs?: number;
  /** Pause between heartbeat writes, drawn uniformly from [min, max] (default 5–50 ms). */
  heartbeatMinMs?: number;
  heartbeatMaxMs?: number;
}

export interface SimEvent {
  /** ms since start() */
  at: number;
  kind: "generation-seen" | "observed" | "rolled-out";
  generation: number;
}

export const HEARTBEAT_ANNOTATION = "sim.registry-trust.test/heartbeat";
const GROUP = "controlplane.cluster.x-k8s.io";
const PLURAL = "kubeadmcontrolplanes";

interface Kcp {
  metadata: { generation?: number; resourceVersion?: string };
  spec?: { replicas?: number };
}

export class SimCapiController {
  readonly events: SimEvent[] = [];
  heartbeats = 0;
  statusWrites = 0;
  /** Failed writes (e.g. the object was deleted); the controller keeps going, as a real one would. */
  readonly errors: string[] = [];

  private readonly api: k8s.CustomObjectsApi;
  private readonly opts: Required<Omit<SimCapiControllerOptions, "kubeConfig">>;
  private running = false;
  private loop?: Promise<void>;
  private startedAt = 0;
  private generation = 0;
  private timers: NodeJS.Timeout[] = [];
  private statusChain: Promise<void> = Promise.resolve();

  constructor({ kubeConfig, ...options }: SimCapiControllerOptions) {
    this.api = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.opts = { observeDelayMs: 100, rolloutDelayMs: 500, heartbeatMinMs: 5, heartbeatMaxMs: 50, ...options };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.startedAt = Date.now();
    this.loop = this.heartbeatLoop();
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    await this.loop;
    await this.statusChain;
  }

  private ref() {
    return { group: GROUP, version: this.opts.version, namespace: this.opts.namespace, plural: PLURAL, name: this.opts.name };
  }

  private async heartbeatLoop(): Promise<void> {
    const mergePatch = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
    while (this.running) {
      try {
        // No resourceVersion precondition: like a controller's metadata patch it always lands and bumps the
        // resourceVersion under everyone else's feet.
        const kcp = (await this.api.patchNamespacedCustomObject(
          { ...this.ref(), body: { metadata: { annotations: { [HEARTBEAT_ANNOTATION]: String(++this.heartbeats) } } } },
          mergePatch,
        )) as Kcp;
        this.onObserved(kcp);
      } catch (e) {
        this.errors.push(`heartbeat: ${describe(e)}`);
      }
      const { heartbeatMinMs: min, heartbeatMaxMs: max } = this.opts;
      await new Promise((r) => setTimeout(r, min + Math.random() * (max - min)));
    }
  }

  private onObserved(kcp: Kcp): void {
    const generation = kcp.metadata.generation ?? 0;
    if (generation === this.generation || !this.running) return;
    this.generation = generation;
    this.record("generation-seen", generation);
    // A newer spec restarts the rollout, as KCP does.
    for (const t of this.timers) clearTimeout(t);
    const replicas = kcp.spec?.replicas ?? 1;
    this.timers = [
      setTimeout(() => this.writeStatus(generation, replicas, false), this.opts.observeDelayMs),
      setTimeout(() => this.writeStatus(generation, replicas, true), this.opts.rolloutDelayMs),
    ];
  }

  private writeStatus(generation: number, replicas: number, done: boolean): void {
    this.statusChain = this.statusChain.then(async () => {
      if (!this.running || generation !== this.generation) return;
      try {
        await this.api.patchNamespacedCustomObjectStatus(
          { ...this.ref(), body: { status: statusBody(this.opts.version, generation, replicas, done) } },
          k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
        );
        this.statusWrites++;
        this.record(done ? "rolled-out" : "observed", generation);
      } catch (e) {
        this.errors.push(`status: ${describe(e)}`);
      }
    });
  }

  private record(kind: SimEvent["kind"], generation: number): void {
    this.events.push({ at: Date.now() - this.startedAt, kind, generation });
  }
}

function describe(e: unknown): string {
  const err = e as { code?: number; message?: string };
  return err.code ? `HTTP ${err.code}` : String(err.message ?? e);
}

/** The status a KCP controller reports during (done=false) and after (done=true) a rollout. */
export function statusBody(version: KcpVersion, generation: number, replicas: number, done: boolean): Record<string, unknown> {
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const upToDate = done ? replicas : 0;
  const ready = done ? replicas : Math.max(replicas - 1, 0);
  const v1beta2Conditions = [
    { type: "RollingOut", status: done ? "False" : "True", reason: done ? "NotRollingOut" : "RollingOut", message: done ? "" : "Rolling out", lastTransitionTime: now, observedGeneration: generation },
    { type: "MachinesUpToDate", status: done ? "True" : "False", reason: done ? "UpToDate" : "NotUpToDate", message: "", lastTransitionTime: now, observedGeneration: generation },
    { type: "Available", status: "True", reason: "Available", message: "", lastTransitionTime: now, observedGeneration: generation },
  ];
  if (version === "v1beta2") {
    return {
      observedGeneration: generation,
      replicas,
      upToDateReplicas: upToDate,
      readyReplicas: ready,
      availableReplicas: ready,
      conditions: v1beta2Conditions,
    };
  }
  return {
    observedGeneration: generation,
    replicas,
    updatedReplicas: upToDate,
    readyReplicas: ready,
    unavailableReplicas: replicas - ready,
    ready: ready > 0,
    initialized: true,
    conditions: [
      done
        ? { type: "MachinesSpecUpToDate", status: "True", lastTransitionTime: now }
        : { type: "MachinesSpecUpToDate", status: "False", severity: "Warning", reason: "RollingUpdateInProgress", message: "Rolling out", lastTransitionTime: now },
      { type: "Ready", status: "True", lastTransitionTime: now },
    ],
    v1beta2: { upToDateReplicas: upToDate, readyReplicas: ready, availableReplicas: ready, conditions: v1beta2Conditions },
  };
}
