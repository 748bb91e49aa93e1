import { StackConfig } from "../config/model";
import { bundleGenerations } from "../pki/plan";
import { PreflightPlan } from "./preflight";

/*
 * Retiring a CA generation needs no step of its own. A generation leaves the bundle in the first `up`
 * after the one that switched the serving certificate away from it (caRetainGenerations ≥ 1 keeps it
 * exactly that long), and the preflight proves before that `up` distributes anything that the
 * certificate served at that moment is not from a leaving generation. So within any one `up` the bundle
 * holds the CA of what is served before and after the switch: the overlap invariant.
 */

/** What the preflight checks for this stack config. */
export function preflightPlan(config: StackConfig, stack: string): PreflightPlan {
  const ca = config.ca.mode === "generate"
    ? { mode: "generate" as const, commonName: config.ca.commonName, generations: bundleGenerations(config.ca.generation, config.ca.retainGenerations) }
    : { mode: "import" as const };
  const t = config.servingTarget;
  return {
    registries: config.registries,
    ca,
    servingSecret: t.kind === "kubernetesSecret" ? { cluster: t.cluster, namespace: t.namespace, name: t.name } : undefined,
    clusters: config.clusters.map((c) => ({ name: c.name, controlPlanes: c.controlPlanes, machineDeployments: c.machineDeployments })),
    stack,
  };
}
