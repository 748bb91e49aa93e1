import { notObserved, replicaCounts, RolloutState } from "../kcp/rollout";
import { CapiVersion, KubeObject } from "./api";

/*
 * When has a MachineDeployment rolled out our template? The controller has seen our generation and
 * every machine is of the new revision and ready, with none of the old left. Unlike a KCP, no condition
 * is required: v1beta1 MachineDeployments have no rollout condition. spec.replicas is defaulted by CAPI
 * (to 1, or the autoscaler's minimum).
 */
export function machineDeploymentRolloutState(md: KubeObject, version: CapiVersion, generation: number): RolloutState {
  const counts = replicaCounts(md, version, generation);
  if (!counts) return notObserved(md, generation);
  const { observed, wanted, upToDate, ready, replicas } = counts;
  return {
    done: upToDate === wanted && ready === wanted && replicas === wanted,
    summary: `generation ${observed}: ${upToDate}/${wanted} up to date, ${ready}/${wanted} ready, ${replicas} machines`,
  };
}
