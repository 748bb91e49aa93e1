import type * as K8s from "@kubernetes/client-node";
import * as pulumi from "@pulumi/pulumi";
import { fetchServedChain } from "../core/served-chain";
import { ClusterConfig, StackConfig } from "../core/config/model";
import { loadKubeConfig } from "../core/kcp/api";
import { preflightPlan } from "../core/rotation/plan";
import { ClusterReader, LiveState, clientNodeClusterReader, PreflightPlan, evaluatePreflight, preflightVerdict, readLiveState } from "../core/rotation/preflight";

/** A cluster's reader from its kubeconfig path and context; client-node is loaded only when a cluster is configured. */
function clusterReader(cluster: ClusterConfig, kubeconfig: string): ClusterReader {
  const k8s = require("@kubernetes/client-node") as typeof K8s;
  return clientNodeClusterReader(k8s, loadKubeConfig(k8s, kubeconfig, cluster.context));
}

/** The live state read once, and the second pass to run against the bundle. */
export interface RotationPreflight {
  readonly plan: PreflightPlan;
  readonly live: LiveState;
  /** `bundlePem` again, resolving only once pass 2 found nothing in the way; fails `owner` otherwise. */
  gate(bundlePem: pulumi.Output<string>, bundleHash: pulumi.Output<string>, owner: pulumi.Resource): pulumi.Output<string>;
}

/**
 * Pass 1 of the rotation preflight (core/rotation/preflight.ts), run by the program before it registers
 * any resource, in preview as in update: throws a RunError naming everything unfinished.
 */
export async function rotationPreflight(config: StackConfig, kubeconfigOf: (c: ClusterConfig) => string): Promise<RotationPreflight> {
  const plan = preflightPlan(config, `${pulumi.getProject()}/${pulumi.getStack()}`);
  const allow = config.policy.preflightAllowUnreachable;
  const live = await readLiveState(plan, {
    fetchChain: fetchServedChain,
    cluster: (name) => {
      const c = config.clusters.find((x) => x.name === name);
      if (!c) throw new Error("not in clusters");
      return clusterReader(c, kubeconfigOf(c));
    },
  });
  const first = preflightVerdict(evaluatePreflight(plan, live), allow);
  if (first.error) throw new pulumi.RunError(first.error);
  // Deferred findings are decided by pass 2 in an update; a preview says what it will decide.
  for (const w of first.warnings) if (pulumi.runtime.isDryRun() || !w.includes("(decided once")) pulumi.log.warn(w);
  return {
    plan,
    live,
    gate(bundlePem, bundleHash, owner) {
      return pulumi.all([bundlePem, bundleHash]).apply(([pem, hash]) => {
        const second = preflightVerdict(evaluatePreflight(plan, live, { pem, hash }).filter((f) => f.kind !== "note" && f.kind !== "unreachable"), allow);
        if (second.error) throw new pulumi.ResourceError(second.error, owner);
        return pem;
      });
    },
  };
}
