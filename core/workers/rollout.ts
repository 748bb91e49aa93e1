import { RolloutState } from "../kcp/rollout";
import { CapiVersion, KubeObject } from "./api";

/*
 * When has a MachineDeployment rolled out our template? The controller has seen our generation and
 * every machine is of the new revision and ready, with none of the old left:
 *   v1beta1: status.updatedReplicas; v1beta2: status.upToDateReplicas (same meaning, renamed).
 */

const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);

export function machineDeploymentRolloutState(md: KubeObject, version: CapiVersion, generation: number): RolloutState {
  const status = md.status ?? {};
  // CAPI defaults spec.replicas (to 1, or to the autoscaler's minimum); absent only on an unreconciled object.
  const wanted = md.spec?.replicas ?? 1;
  const observed = num(status.observedGeneration);
  if (observed === undefined || observed < generation) {
    return { done: false, summary: `waiting for the controller to observe generation ${generation} (observed: ${observed ?? "none"})` };
  }
  const upToDate = num(version === "v1beta2" ? status.upToDateReplicas : status.updatedReplicas) ?? 0;
  const ready = num(status.readyReplicas) ?? 0;
  const replicas = num(status.replicas) ?? 0;
  return {
    done: upToDate === wanted && ready === wanted && replicas === wanted,
    summary: `generation ${observed}: ${upToDate}/${wanted} up to date, ${ready}/${wanted} ready, ${replicas} machines`,
  };
}
