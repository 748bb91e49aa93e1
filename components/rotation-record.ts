import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { recordManifest } from "../core/rotation/record";

/*
 * Clusters and namespaces are plain values: they decide which ConfigMaps exist. The bundle hash and the
 * outputs that mark the rotation complete are Inputs.
 */
export interface RotationRecordArgs {
  /** Where the stack's KCPs and MachineDeployments are: a provider per cluster and their namespaces. */
  readonly clusters: readonly { readonly name: string; readonly namespaces: readonly string[]; readonly provider: k8s.Provider }[];
  /** sha256 of the bundle this run distributed. */
  readonly bundleHash: pulumi.Input<string>;
  /** Outputs that resolve only once the rotation is complete (ServingCertificate.servedFingerprint, or trust results). */
  readonly completed: pulumi.Input<unknown>[];
  /** Resources the record is written after. */
  readonly after: pulumi.Resource[];
}

/**
 * Records the completed rotation in each namespace holding a KCP or MachineDeployment of this stack
 * (core/rotation/record.ts): the next run's preflight tells a finished rotation from one that stopped
 * halfway by it. Written last, so a failed run leaves the previous record in place.
 */
export class RotationRecord extends pulumi.ComponentResource {
  constructor(name: string, args: RotationRecordArgs, opts?: pulumi.ComponentResourceOptions) {
    super("registry-trust:index:RotationRecord", name, {}, opts);
    const stack = `${pulumi.getProject()}/${pulumi.getStack()}`;
    const hash = pulumi.all([args.bundleHash, pulumi.all(args.completed)]).apply(([h]) => h);
    for (const cluster of args.clusters) {
      for (const namespace of cluster.namespaces) {
        const m = hash.apply((h) => recordManifest(namespace, stack, h));
        new k8s.core.v1.ConfigMap(`${name}-${cluster.name}-${namespace}`, {
          metadata: { name: m.metadata.name, namespace, labels: m.metadata.labels },
          data: m.data,
        }, { parent: this, provider: cluster.provider, dependsOn: args.after });
      }
    }
    this.registerOutputs({});
  }
}
