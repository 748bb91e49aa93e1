import * as pulumi from "@pulumi/pulumi";
import { ObjectRef, OsFamily } from "../core/config/model";
import { KcpVersion } from "../core/kcp/api";
import { ClusterObjectTrustArgs, checkedTrustInputs } from "./cluster-object-trust";
import { ControlPlaneTrustInputs, ControlPlaneTrustOutputs, controlPlaneTrustProvider } from "./control-plane-trust-provider";

/*
 * Structural settings (the KCP reference, endpoints, options) are plain values: they name the child
 * resource and decide what is written, which Pulumi must know while registering it. The bundle and the
 * kubeconfig are Inputs, the kubeconfig always kept secret.
 */
export interface ControlPlaneTrustArgs extends ClusterObjectTrustArgs {
  /** The KubeadmControlPlane whose machines receive the bundle. */
  readonly controlPlane: ObjectRef;
  /** KCP API version to use. @default v1beta2 when served, else v1beta1 */
  readonly apiVersion?: KcpVersion;
  /** Take over files at our paths that registry-trust did not write. @default false */
  readonly adopt?: boolean;
  /** Bundles longer than this go to a Secret (contentFrom); always above CAPI's 10,240 characters. @default 10240 */
  readonly inlineMaxChars?: number;
  /** Also install the bundle into the OS trust store of new control-plane machines (preKubeadmCommands). @default none */
  readonly osTrustStore?: OsFamily;
  /** RFC 3339 time: force a rollout of control-plane machines created before it. @default none */
  readonly rolloutAfter?: string;
  /** Wait until the control plane has rolled out the change. @default true */
  readonly waitForRollout?: boolean;
  /** Fail when the control plane has not rolled out within this many seconds. @default 1800 */
  readonly rolloutTimeoutSeconds?: number;
  /** How long to wait while another run holds the KCP's Lease. @default 1800 */
  readonly leaseWaitTimeoutSeconds?: number;
  /** Give up retrying resourceVersion conflicts after this long. @default 60 */
  readonly conflictDeadlineSeconds?: number;
}

type ResourceInputs = { [K in keyof ControlPlaneTrustInputs]: pulumi.Input<ControlPlaneTrustInputs[K]> };

/** The dynamic resource running the sequencer; outputs as ControlPlaneTrustOutputs. */
class ControlPlaneTrustResource extends pulumi.dynamic.Resource {
  declare readonly generation: pulumi.Output<number>;
  declare readonly servedVersion: pulumi.Output<string>;
  declare readonly ownedPaths: pulumi.Output<string[]>;
  declare readonly secretName: pulumi.Output<string | undefined>;

  constructor(name: string, inputs: ResourceInputs, opts: pulumi.CustomResourceOptions) {
    const outputs: Partial<Record<Exclude<keyof ControlPlaneTrustOutputs, keyof ControlPlaneTrustInputs>, undefined>> = {
      generation: undefined, servedVersion: undefined, ownedPaths: undefined, secretName: undefined, drift: undefined,
    };
    super(controlPlaneTrustProvider, name, { ...inputs, ...outputs }, opts, "registry-trust", "ControlPlaneTrust");
  }
}

/**
 * Puts the registry trust bundle and containerd hosts.toml files into one Cluster API KubeadmControlPlane
 * (spec.kubeadmConfigSpec.files) without losing or interleaving updates: a Lease per KCP, writes with the
 * resourceVersion read, retries on conflict, read-back, then waits for the control-plane rollout. Other
 * writers' files are kept as they are; on delete only our entries are removed.
 */
export class ControlPlaneTrust extends pulumi.ComponentResource {
  /** KCP metadata.generation that carries the bundle and has rolled out. */
  readonly generation: pulumi.Output<number>;
  /** KCP API version written. */
  readonly servedVersion: pulumi.Output<string>;
  /** Paths in spec.kubeadmConfigSpec.files that registry-trust owns. */
  readonly ownedPaths: pulumi.Output<string[]>;
  /** Secret holding the bundle when it is too large to inline (contentFrom), else undefined. */
  readonly secretName: pulumi.Output<string | undefined>;
  /** sha256 of the bundle written. */
  readonly bundleHash: pulumi.Output<string>;

  constructor(name: string, args: ControlPlaneTrustArgs, opts?: pulumi.ComponentResourceOptions) {
    super("registry-trust:index:ControlPlaneTrust", name, {}, opts);
    const { bundleHash, inputs } = checkedTrustInputs(this, "controlPlane", "control plane", args.controlPlane, args);
    const inline = args.inlineMaxChars;
    if (inline !== undefined && (!Number.isInteger(inline) || inline < 0)) {
      throw new pulumi.ResourceError(`inlineMaxChars must be a non-negative integer, got ${inline}`, this);
    }

    this.bundleHash = bundleHash;

    const trust = new ControlPlaneTrustResource(name, {
      ...inputs,
      apiVersion: args.apiVersion,
      adopt: args.adopt,
      inlineMaxChars: inline,
      osTrustStore: args.osTrustStore,
      rolloutAfter: args.rolloutAfter,
      waitForRollout: args.waitForRollout,
      rolloutTimeoutSeconds: args.rolloutTimeoutSeconds,
      leaseWaitTimeoutSeconds: args.leaseWaitTimeoutSeconds,
      conflictDeadlineSeconds: args.conflictDeadlineSeconds,
    }, { parent: this, additionalSecretOutputs: ["kubeconfig"] });

    this.generation = trust.generation;
    this.servedVersion = trust.servedVersion;
    this.ownedPaths = trust.ownedPaths;
    this.secretName = trust.secretName;
    this.registerOutputs({ generation: this.generation, servedVersion: this.servedVersion, ownedPaths: this.ownedPaths, secretName: this.secretName, bundleHash: this.bundleHash });
  }
}
