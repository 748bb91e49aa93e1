import { notObserved, replicaCounts, RolloutState } from "../kcp/rollout";
import { CapiVersion, KubeObject } from "./api";

/*
 * When has a MachineDeployment rolled out our template? The controller has seen our generation and
 * every machine is of the new revision and ready, with none of the old left. Unlike a KCP, no condition
 * is required: v1beta1 MachineDeployments have no rollout condition. spec.replicas is defaulted by CAPI
 * (to 1, or the autoscaler's minimum).
 *
 * The MachineDeployment's own counts are not enough. Cluster API v1.14 sums them from its MachineSets'
 * status, which their controller updates later: right after the MachineDeployment controller observes a
 * new template it reports e.g. "generation 2: 2/2 up to date, 2/2 ready, 2 machines" while both machines
 * still come from the old MachineSet and no new machine exists yet (seen on the real controllers,
 * docs/cluster-api.md). So when the caller passes the MachineDeployment's MachineSets and Machines, every
 * Machine must also belong to a MachineSet that names our template, be Ready and not be deleting.
 */

/** The MachineSets and Machines of one MachineDeployment (label cluster.x-k8s.io/deployment-name). */
export interface MachinesOf {
  readonly template: string;
  readonly sets: readonly KubeObject[];
  readonly machines: readonly KubeObject[];
}

/** The bootstrap template a MachineSet (or anything with spec.template.spec.bootstrap) creates machines from. */
export const bootstrapTemplateOf = (set: KubeObject): string | undefined =>
  ((set.spec?.template as { spec?: { bootstrap?: { configRef?: { name?: string } } } } | undefined)?.spec?.bootstrap?.configRef?.name);

const isReady = (machine: KubeObject): boolean =>
  ((machine.status?.conditions ?? []) as Array<{ type?: string; status?: string }>).some((c) => c.type === "Ready" && c.status === "True");

function machinesSummary(of: MachinesOf): { current: number; old: number; deleting: number; notReady: number } {
  const setTemplate = new Map(of.sets.map((s) => [s.metadata.name, bootstrapTemplateOf(s)]));
  let current = 0;
  let old = 0;
  let deleting = 0;
  let notReady = 0;
  for (const m of of.machines) {
    const owner = ((m.metadata.ownerReferences ?? []) as Array<{ kind?: string; name?: string }>).find((r) => r.kind === "MachineSet");
    if (owner && setTemplate.get(owner.name) === of.template) current++;
    else old++;
    if (m.metadata.deletionTimestamp) deleting++;
    else if (!isReady(m)) notReady++;
  }
  return { current, old, deleting, notReady };
}

export function machineDeploymentRolloutState(md: KubeObject, version: CapiVersion, generation: number, of?: MachinesOf): RolloutState {
  const counts = replicaCounts(md, version, generation);
  if (!counts) return notObserved(md, generation);
  const { observed, wanted, upToDate, ready, replicas } = counts;
  const reported = upToDate === wanted && ready === wanted && replicas === wanted;
  const summary = `generation ${observed}: ${upToDate}/${wanted} up to date, ${ready}/${wanted} ready, ${replicas} machines`;
  if (!of) return { done: reported, summary };
  const m = machinesSummary(of);
  return {
    done: reported && m.current === wanted && m.old === 0 && m.deleting === 0 && m.notReady === 0,
    summary: `${summary}; Machines from ${of.template}: ${m.current}, from older templates: ${m.old}, deleting: ${m.deleting}, not ready: ${m.notReady}`,
  };
}

/**
 * Old MachineSets (naming a template other than ours) that the MachineDeployment controller is about to
 * delete: scaled to zero and observed so, or already deleting. Cluster API v1.14 deletes every such
 * MachineSet, but only on a reconcile after the one that reports the rollout complete, so right after
 * the rollout they still name the old template. Older Cluster API keeps revisionHistoryLimit of them
 * (default 1) for rollbacks, so they may also never go.
 */
export function oldSetsAwaitingCleanup(sets: readonly KubeObject[], template: string): KubeObject[] {
  return sets.filter((s) => {
    if (bootstrapTemplateOf(s) === template) return false;
    if (s.metadata.deletionTimestamp) return true;
    const spec = (s.spec as { replicas?: number } | undefined)?.replicas;
    const status = s.status as { replicas?: number; observedGeneration?: number } | undefined;
    return spec === 0 && (status?.replicas ?? 0) === 0 && (status?.observedGeneration ?? 0) >= (s.metadata.generation ?? 0);
  });
}
