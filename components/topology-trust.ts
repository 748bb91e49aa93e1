import * as pulumi from "@pulumi/pulumi";
import { ObjectRef } from "../core/config/model";
import { Shape, validateVariableSpec } from "../core/topology/shapes";
import { ClusterObjectTrustArgs, checkedTrustInputs } from "./cluster-object-trust";
import { TopologyTrustInputs, TopologyTrustOutputs, topologyTrustProvider } from "./topology-trust-provider";

export interface TopologyTrustArgs extends ClusterObjectTrustArgs {
  /** The ClusterClass-managed Cluster (spec.topology set). */
  readonly cluster: ObjectRef;
  /** Name of the ClusterClass variable the class patches into the KCP and workers' templates. */
  readonly variable: string;
  /** The variable's shape: files, pems, tkg-trust or caren-registries (docs/rotation.md). */
  readonly shape: Shape;
  /** Wait until the topology controller reconciled the change and the KCP and every MachineDeployment rolled out. @default true */
  readonly waitForRollout?: boolean;
  /** Fail when the rollout has not finished within this many seconds. @default 1800 */
  readonly rolloutTimeoutSeconds?: number;
  /** How long to wait while another run holds the control plane's Lease. @default 1800 */
  readonly leaseWaitTimeoutSeconds?: number;
  /** Give up retrying conflicts on the Cluster after this long. @default 60 */
  readonly conflictDeadlineSeconds?: number;
}

type ResourceInputs = { [K in keyof TopologyTrustInputs]: pulumi.Input<TopologyTrustInputs[K]> };

class TopologyTrustResource extends pulumi.dynamic.Resource {
  declare readonly generation: pulumi.Output<number>;
  declare readonly secretName: pulumi.Output<string | undefined>;

  constructor(name: string, inputs: ResourceInputs, opts: pulumi.CustomResourceOptions) {
    const outputs: Partial<Record<Exclude<keyof TopologyTrustOutputs, keyof TopologyTrustInputs>, undefined>> = { generation: undefined, secretName: undefined };
    super(topologyTrustProvider, name, { ...inputs, ...outputs }, opts, "registry-trust", "TopologyTrust");
  }
}

/**
 * Delivers the registry trust bundle to a ClusterClass-managed cluster through a ClusterClass variable, the
 * route the topology controller does not revert: a Secret per bundle, the variable updated with a JSON patch
 * that tests its current value (others' entries and per-MachineDeployment overrides kept), under the
 * control plane's Lease; waits for the topology rollout, then prunes older Secrets.
 */
export class TopologyTrust extends pulumi.ComponentResource {
  /** Cluster metadata.generation that carries the bundle and has rolled out. */
  readonly generation: pulumi.Output<number>;
  /** The Secret the variable refers to. */
  readonly secretName: pulumi.Output<string | undefined>;
  /** sha256 of the bundle written. */
  readonly bundleHash: pulumi.Output<string>;

  constructor(name: string, args: TopologyTrustArgs, opts?: pulumi.ComponentResourceOptions) {
    super("registry-trust:index:TopologyTrust", name, {}, opts);
    try {
      validateVariableSpec(args);
    } catch (e) {
      throw new pulumi.ResourceError((e as Error).message, this);
    }
    const { bundleHash, inputs } = checkedTrustInputs(this, "cluster", "cluster", args.cluster, args);
    this.bundleHash = bundleHash;
    const trust = new TopologyTrustResource(name, {
      ...inputs,
      variable: args.variable,
      shape: args.shape,
      waitForRollout: args.waitForRollout,
      rolloutTimeoutSeconds: args.rolloutTimeoutSeconds,
      leaseWaitTimeoutSeconds: args.leaseWaitTimeoutSeconds,
      conflictDeadlineSeconds: args.conflictDeadlineSeconds,
    }, { parent: this, additionalSecretOutputs: ["kubeconfig"] });
    this.generation = trust.generation;
    this.secretName = trust.secretName;
    this.registerOutputs({ generation: this.generation, secretName: this.secretName, bundleHash: this.bundleHash });
  }
}
