/*
 * Stands in for one duty of kube-controller-manager's garbage collector, which the lab's bare apiserver
 * does not run. @pulumi/kubernetes deletes with propagationPolicy Foreground: the apiserver only marks the
 * object (deletionTimestamp + the `foregroundDeletion` finalizer), and the garbage collector deletes the
 * object's dependents and then removes the finalizer. Without it such a delete never completes, and
 * `pulumi destroy` (or a replacement) of e.g. the stack's rotation-record ConfigMap waits forever.
 *
 * Scope: the kinds the stack manages through @pulumi/kubernetes (ConfigMaps, Secrets, DaemonSets). An object
 * that another object of these kinds names in its ownerReferences is left alone, as the real collector
 * would first have to delete that dependent.
 */
import * as k8s from "@kubernetes/client-node";

const FINALIZER = "foregroundDeletion";

type Meta = { name?: string; namespace?: string; uid?: string; deletionTimestamp?: unknown; finalizers?: string[]; ownerReferences?: Array<{ uid?: string }> };

export class SimGarbageCollector {
  /** Objects whose foreground deletion was completed, as namespace/name (kind). */
  readonly completed: string[] = [];
  readonly errors: string[] = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(kubeConfig: k8s.KubeConfig, private readonly pollMs = 300) {
    const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
    const apps = kubeConfig.makeApiClient(k8s.AppsV1Api);
    const mergePatch = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
    const kinds = [
      {
        kind: "ConfigMap",
        list: async () => (await core.listConfigMapForAllNamespaces()).items.map((o) => o.metadata as Meta),
        patch: (m: Meta, body: object) => core.patchNamespacedConfigMap({ name: m.name!, namespace: m.namespace!, body }, mergePatch),
      },
      {
        kind: "Secret",
        list: async () => (await core.listSecretForAllNamespaces()).items.map((o) => o.metadata as Meta),
        patch: (m: Meta, body: object) => core.patchNamespacedSecret({ name: m.name!, namespace: m.namespace!, body }, mergePatch),
      },
      {
        kind: "DaemonSet",
        list: async () => (await apps.listDaemonSetForAllNamespaces()).items.map((o) => o.metadata as Meta),
        patch: (m: Meta, body: object) => apps.patchNamespacedDaemonSet({ name: m.name!, namespace: m.namespace!, body }, mergePatch),
      },
    ];
    this.loop = (async () => {
      while (this.running) {
        try {
          const all = await Promise.all(kinds.map(async (k) => ({ k, items: await k.list() })));
          const owners = new Set(all.flatMap(({ items }) => items.flatMap((m) => (m.ownerReferences ?? []).map((r) => r.uid))));
          for (const { k, items } of all) {
            for (const m of items) {
              if (!m.deletionTimestamp || !m.finalizers?.includes(FINALIZER) || owners.has(m.uid)) continue;
              await k.patch(m, { metadata: { finalizers: m.finalizers.filter((f) => f !== FINALIZER) } });
              this.completed.push(`${m.namespace}/${m.name} (${k.kind})`);
            }
          }
        } catch (e) {
          // A patch racing the object's removal, or the apiserver stopping under us: try again next round.
          this.errors.push(String((e as Error).message).slice(0, 200));
        }
        await new Promise((r) => setTimeout(r, this.pollMs));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}
