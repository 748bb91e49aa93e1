import * as pulumi from "@pulumi/pulumi";
import { ObjectRef, OsFamily } from "../core/config/model";
import { ClusterObjectTrustArgs, checkedTrustInputs } from "./cluster-object-trust";
import { CapiVersion } from "../core/workers/api";
import { WorkerTrustInputs, WorkerTrustOutputs, workerTrustProvider } from "./worker-trust-provider";

/*
 * Structural settings are plain values (they name the child resource and decide what is written); the
 * bundle and the kubeconfig are Inputs, the kubeconfig always kept secret. Same shape as ControlPlaneTrust;
 * a bundle over Cluster API's 10,240 characters goes to a Secret owned by the MachineDeployment, as for a KCP.
 */
export interface WorkerTrustArgs extends ClusterObjectTrustArgs {
  /** The MachineDeployment whose new machines receive the bundle. */
  readonly machineDeployment: ObjectRef;
  /** Cluster API version to use. @default v1beta2 when served, else v1beta1 */
  readonly apiVersion?: CapiVersion;
  /** Take over files at our paths in the MachineDeployment's template that registry-trust did not write. @default false */
  readonly adopt?: boolean;
  /** Also install the bundle into the OS trust store of new machines (preKubeadmCommands). @default none */
  readonly osTrustStore?: OsFamily;
  /** Wait until the MachineDeployment has replaced its machines; our unreferenced templates are deleted only then. @default true */
  readonly waitForRollout?: boolean;
  /** Fail when the MachineDeployment has not rolled out within this many seconds. @default 1800 */
  readonly rolloutTimeoutSeconds?: number;
  /** How long to wait while another run holds the MachineDeployment's Lease. @default 1800 */
  readonly leaseWaitTimeoutSeconds?: number;
  /** Give up retrying resourceVersion conflicts after this long. @default 60 */
  readonly conflictDeadlineSeconds?: number;
}

type ResourceInputs = { [K in keyof WorkerTrustInputs]: pulumi.Input<WorkerTrustInputs[K]> };

class WorkerTrustResource extends pulumi.dynamic.Resource {
  declare readonly template: pulumi.Output<string>;
  declare readonly generation: pulumi.Output<number>;
  declare readonly servedVersion: pulumi.Output<string>;
  declare readonly ownedPaths: pulumi.Output<string[]>;
  declare readonly secretName: pulumi.Output<string | undefined>;

  constructor(name: string, inputs: ResourceInputs, opts: pulumi.CustomResourceOptions) {
    const outputs: Record<Exclude<keyof WorkerTrustOutputs, keyof WorkerTrustInputs>, undefined> = {
      template: undefined, generation: undefined, servedVersion: undefined, ownedPaths: undefined, secretName: undefined, drift: undefined,
    };
    super(workerTrustProvider, name, { ...inputs, ...outputs }, opts, "registry-trust", "WorkerTrust");
  }
}

/**
 * Makes the machines a Cluster API MachineDeployment creates from now on (rollouts, the cluster
 * autoscaler) trust the registry: a new KubeadmConfigTemplate named after its content, a copy of the
 * current one with our files, and the MachineDeployment repointed at it (Lease, resourceVersion, retries,
 * read-back), then the rollout awaited and our unreferenced templates deleted. Delete points it back at
 * the original template.
 */
export class WorkerTrust extends pulumi.ComponentResource {
  /** The KubeadmConfigTemplate the MachineDeployment names. */
  readonly template: pulumi.Output<string>;
  readonly generation: pulumi.Output<number>;
  readonly servedVersion: pulumi.Output<string>;
  readonly ownedPaths: pulumi.Output<string[]>;
  /** The Secret holding a bundle over Cluster API's 10,240 characters; undefined while it fits inline. */
  readonly secretName: pulumi.Output<string | undefined>;
  readonly bundleHash: pulumi.Output<string>;

  constructor(name: string, args: WorkerTrustArgs, opts?: pulumi.ComponentResourceOptions) {
    super("registry-trust:index:WorkerTrust", name, {}, opts);
    const { bundleHash, inputs } = checkedTrustInputs(this, "machineDeployment", "MachineDeployment", args.machineDeployment, args);
    this.bundleHash = bundleHash;

    const trust = new WorkerTrustResource(name, {
      ...inputs,
      apiVersion: args.apiVersion,
      adopt: args.adopt,
      osTrustStore: args.osTrustStore,
      waitForRollout: args.waitForRollout,
      rolloutTimeoutSeconds: args.rolloutTimeoutSeconds,
      leaseWaitTimeoutSeconds: args.leaseWaitTimeoutSeconds,
      conflictDeadlineSeconds: args.conflictDeadlineSeconds,
    }, { parent: this, additionalSecretOutputs: ["kubeconfig"] });

    this.template = trust.template;
    this.generation = trust.generation;
    this.servedVersion = trust.servedVersion;
    this.ownedPaths = trust.ownedPaths;
    this.secretName = trust.secretName;
    this.registerOutputs({
      template: this.template, generation: this.generation, servedVersion: this.servedVersion, ownedPaths: this.ownedPaths,
      secretName: this.secretName, bundleHash: this.bundleHash,
    });
  }
}
