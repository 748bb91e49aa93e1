import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { OsFamily, RegistryEndpoint, Runtime } from "../core/config/model";
import { renderCloudInit } from "../core/bootstrap/cloud-init";
import { checkDaemonSetImage, DaemonSetManifests, renderDaemonSet } from "../core/bootstrap/daemonset";

/*
 * Registries, OS, runtimes and the DaemonSet image are plain values: the image check must refuse before
 * any resource is registered, and they decide which resources exist. The bundle flows in as an Output.
 */
export interface BootstrapTrustArgs {
  /** Registry endpoints (and the upstreams they mirror) new nodes trust. */
  readonly registries: readonly RegistryEndpoint[];
  /** OS family of the nodes this boots; "auto" reads /etc/os-release on the node. @default "auto" */
  readonly os?: OsFamily;
  /** Container runtimes configured on the nodes. */
  readonly runtimes: readonly Runtime[];
  /** PEM trust bundle (RegistryPki.bundlePem). */
  readonly bundlePem: pulumi.Input<string>;
  /** The chain the registry serves (RegistryPki.servingChainPem), verified offline on each node. @default none */
  readonly servingChainPem?: pulumi.Input<string | undefined>;
  /** Names this installation's files on the nodes. @default "default" */
  readonly owner?: string;
  /** Allow a runtime restart when its configuration must change (containerd config_path). @default true */
  readonly allowRuntimeRestart?: boolean;
  /**
   * Apply the DaemonSet option too. Its image MUST come from a registry the nodes already trust (never one
   * of `registries`): refused here otherwise, before anything is registered.
   */
  readonly daemonSet?: {
    readonly image: string;
    /** @default "kube-system" */
    readonly namespace?: string;
    /** Kubernetes provider of the target cluster. @default the ambient one (KUBECONFIG) */
    readonly provider?: k8s.Provider;
  };
}

/**
 * Trust for nodes nobody SSHes into: a cloud-init fragment for user-data (stack output) and, optionally,
 * a DaemonSet applied to the cluster. Both carry the same rendered node install script as NodeTrust.
 */
export class BootstrapTrust extends pulumi.ComponentResource {
  /** The `#cloud-config` fragment (write_files + runcmd). */
  readonly cloudInit: pulumi.Output<string>;
  /** The ConfigMap and DaemonSet manifests, applied or not (for GitOps). Undefined without `daemonSet`. */
  readonly daemonSetManifests?: pulumi.Output<DaemonSetManifests>;

  constructor(name: string, args: BootstrapTrustArgs, opts?: pulumi.ComponentResourceOptions) {
    // Before super(): a refused image must leave no resource behind, not even this component.
    if (args.daemonSet) checkDaemonSetImage(args.daemonSet.image, args.registries);
    super("registry-trust:index:BootstrapTrust", name, {}, opts);
    const common = pulumi.all([args.bundlePem, args.servingChainPem]).apply(([bundlePem, servingChainPem]) => ({
      os: args.os ?? ("auto" as const), runtimes: args.runtimes, registries: args.registries, bundlePem, servingChainPem, owner: args.owner, allowRuntimeRestart: args.allowRuntimeRestart,
    }));
    this.cloudInit = common.apply((c) => renderCloudInit(c).text);
    const ds = args.daemonSet;
    if (ds) {
      const manifests = common.apply((c) => renderDaemonSet({ ...c, image: ds.image, namespace: ds.namespace }));
      this.daemonSetManifests = manifests;
      const childOpts = { parent: this, provider: ds.provider };
      // The manifests are engine-free plain objects; these casts only name their (matching) SDK shapes.
      const cm = manifests.apply((m) => m.configMap as unknown as k8s.types.output.core.v1.ConfigMap);
      const configMap = new k8s.core.v1.ConfigMap(`${name}-script`, { metadata: cm.apply((x) => x.metadata), data: cm.apply((x) => x.data) }, childOpts);
      const d = manifests.apply((m) => m.daemonSet as unknown as k8s.types.output.apps.v1.DaemonSet);
      new k8s.apps.v1.DaemonSet(`${name}-daemonset`, { metadata: d.apply((x) => x.metadata), spec: d.apply((x) => x.spec) }, { ...childOpts, dependsOn: [configMap] });
    }
    this.registerOutputs({ cloudInit: this.cloudInit });
  }
}
