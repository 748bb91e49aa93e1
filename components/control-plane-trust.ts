import * as pulumi from "@pulumi/pulumi";
import { ObjectRef, OsFamily, RegistryEndpoint } from "../core/config/model";
import { KcpVersion } from "../core/kcp/api";
import { refuseInvalidBundle } from "../core/kcp/apply";
import { bundleHash } from "../core/x509/bundle";
import { ControlPlaneTrustInputs, ControlPlaneTrustOutputs, controlPlaneTrustProvider } from "./control-plane-trust-provider";

/*
 * Structural settings (the KCP reference, endpoints, options) are plain values: they name the child
 * resource and decide what is written, which Pulumi must know while registering it. The bundle and the
 * kubeconfig are Inputs, the kubeconfig always kept secret.
 */
export interface ControlPlaneTrustArgs {
  /** Kubeconfig of the management cluster: file content, or a path read when the provider runs. Stored as a secret. */
  readonly kubeconfig: pulumi.Input<string>;
  /** Kubeconfig context. @default the kubeconfig's current context */
  readonly context?: string;
  /** The KubeadmControlPlane whose machines receive the bundle. */
  readonly controlPlane: ObjectRef;
  /** Registry endpoints: a CA file and a containerd hosts.toml each (plus hosts.toml for mirrored upstreams). */
  readonly endpoints: readonly RegistryEndpoint[];
  /** The PEM trust bundle (e.g. RegistryPki.bundlePem, which resolves only once verified). */
  readonly bundlePem: pulumi.Input<string>;
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
  /** @default 1800 */
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

  constructor(name: string, inputs: ResourceInputs, opts: pulumi.CustomResourceOptions) {
    const outputs: Partial<Record<Exclude<keyof ControlPlaneTrustOutputs, keyof ControlPlaneTrustInputs>, undefined>> = {
      generation: undefined, servedVersion: undefined, ownedPaths: undefined, secretName: undefined,
    };
    super(controlPlaneTrustProvider, name, { ...inputs, ...outputs }, opts, "registry-trust", "ControlPlaneTrust");
  }
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

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
  /** sha256 of the bundle written. */
  readonly bundleHash: pulumi.Output<string>;

  constructor(name: string, args: ControlPlaneTrustArgs, opts?: pulumi.ComponentResourceOptions) {
    super("registry-trust:index:ControlPlaneTrust", name, {}, opts);
    const { namespace, name: kcpName } = args.controlPlane;
    if (!DNS_SUBDOMAIN.test(namespace) || !DNS_SUBDOMAIN.test(kcpName)) {
      throw new pulumi.ResourceError(`controlPlane ${namespace}/${kcpName} is not a valid namespace/name (lowercase DNS names)`, this);
    }
    if (args.endpoints.length === 0) {
      throw new pulumi.ResourceError(`no registry endpoints for control plane ${namespace}/${kcpName}: set registries in the stack config`, this);
    }
    const inline = args.inlineMaxChars;
    if (inline !== undefined && (!Number.isInteger(inline) || inline < 0)) {
      throw new pulumi.ResourceError(`inlineMaxChars must be a non-negative integer, got ${inline}`, this);
    }

    // Validated here rather than in the provider: a bad bundle then fails the preview too.
    const bundlePem = pulumi.output(args.bundlePem).apply((pem) => {
      try {
        refuseInvalidBundle(pem, args.controlPlane);
      } catch (e) {
        throw new pulumi.ResourceError((e as Error).message, this);
      }
      return pem;
    });
    this.bundleHash = bundlePem.apply(bundleHash);

    const trust = new ControlPlaneTrustResource(name, {
      kubeconfig: pulumi.secret(args.kubeconfig),
      context: args.context,
      namespace,
      name: kcpName,
      apiVersion: args.apiVersion,
      endpoints: args.endpoints.map((e) => ({ host: e.host, port: e.port, mirrorOf: [...e.mirrorOf] })),
      bundlePem,
      bundleHash: this.bundleHash,
      holder: `${pulumi.getProject()}/${pulumi.getStack()}`,
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
    this.registerOutputs({ generation: this.generation, servedVersion: this.servedVersion, ownedPaths: this.ownedPaths, bundleHash: this.bundleHash });
  }
}
