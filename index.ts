import * as k8s from "@pulumi/kubernetes";
import { homedir } from "node:os";
import { resolve } from "node:path";
import { BootstrapTrust } from "./components/bootstrap-trust";
import { ControlPlaneTrust } from "./components/control-plane-trust";
import { NodeTrust } from "./components/node-trust";
import { RegistryPki } from "./components/registry-pki";
import { RotationRecord } from "./components/rotation-record";
import { rotationPreflight } from "./components/rotation-preflight";
import { ServingCertificate } from "./components/serving-certificate";
import { loadStackConfig, secretConfig } from "./components/stack-config";
import { WorkerTrust } from "./components/worker-trust";
import { ClusterConfig } from "./core/config/model";
import { recordNamespaces } from "./core/rotation/record";
import { bundleHash as hashOf } from "./core/x509/bundle";

/*
 * One `pulumi up` is one rotation step, in this order: certificates → bundle → node trust and control-plane /
 * worker trust → serving certificate switch → rotation record. A CA generation is retired by leaving the bundle in the up
 * after the one that switched away from it (core/rotation/plan.ts). The program is async because the
 * rotation preflight reads live state before any resource is registered.
 */
export = async () => {
  // Validation runs before the first resource is registered: a bad stack config changes nothing.
  const config = loadStackConfig();

  // A kubeconfig path, read when the providers run, so a later delete still works after credentials rotate.
  const kubeconfigOf = (cluster: ClusterConfig) => resolve(cluster.kubeconfig ?? process.env.KUBECONFIG ?? `${homedir()}/.kube/config`);
  const preflight = await rotationPreflight(config, kubeconfigOf);

  const pki = new RegistryPki("registry", {
    endpoints: config.registries,
    ca: config.ca,
    serving: config.serving,
    externalServingKeyPem: secretConfig("servingKey"),
    expiryWarningDays: config.policy.expiryWarningDays,
  });

  // Everything downstream consumes this bundle: it resolves only once the serving chain verified against
  // it (RegistryPki) and the preflight's second pass found nothing unfinished.
  const bundlePem = preflight.gate(pki.bundlePem, pki.bundleHash, pki);
  const bundleHash = bundlePem.apply(hashOf);

  const nodeTrust = new NodeTrust("nodes", {
    nodes: config.nodes,
    registries: config.registries,
    bundlePem,
    bundleHash,
    servingChainPem: pki.servingChainPem,
    sshPrivateKey: secretConfig("sshPrivateKey"),
    requireHostKeys: config.policy.requireHostKeys,
    allowRuntimeRestart: config.policy.allowRuntimeRestart,
    probeImage: config.policy.probeImage,
    allowUnverified: config.policy.allowUnverifiedNodes,
  });

  const clusterAccess = (cluster: ClusterConfig) => ({ kubeconfig: kubeconfigOf(cluster), context: cluster.context, endpoints: config.registries, bundlePem });

  const controlPlanes = config.clusters.flatMap((cluster) =>
    cluster.controlPlanes.map((cp) => new ControlPlaneTrust(`${cluster.name}-${cp.namespace}-${cp.name}`, { ...clusterAccess(cluster), controlPlane: cp })));

  // New worker machines (rollouts and the cluster autoscaler) boot from a template that carries the bundle.
  const workers = config.clusters.flatMap((cluster) =>
    cluster.machineDeployments.map((md) => new WorkerTrust(`${cluster.name}-${md.namespace}-${md.name}`, { ...clusterAccess(cluster), machineDeployment: md })));

  // One Kubernetes provider per cluster that needs @pulumi/kubernetes (DaemonSet, serving Secret).
  const providers = new Map<string, k8s.Provider>();
  const providerFor = (name: string) => {
    const cluster = config.clusters.find((c) => c.name === name)!;
    let p = providers.get(name);
    if (!p) providers.set(name, (p = new k8s.Provider(`${name}-k8s`, { kubeconfig: kubeconfigOf(cluster), context: cluster.context })));
    return p;
  };

  // For nodes provisioned outside Cluster API: a cloud-init fragment to add to their user-data, and the
  // DaemonSet option for clusters without SSH access.
  const ds = config.daemonSet;
  const bootstrap = new BootstrapTrust("bootstrap", {
    registries: config.registries,
    os: config.nodeDefaults.os,
    runtimes: config.nodeDefaults.runtimes,
    bundlePem,
    servingChainPem: pki.servingChainPem,
    allowRuntimeRestart: config.policy.allowRuntimeRestart,
    daemonSet: ds ? { image: ds.image, namespace: ds.namespace, provider: providerFor(ds.cluster) } : undefined,
  });

  // Resolves once every node, control plane and worker template carries the bundle.
  const trust = [nodeTrust.results, ...controlPlanes.map((c) => c.generation), ...workers.map((w) => w.generation)];
  const target = config.servingTarget;
  const serving = target.kind === "none" ? undefined : new ServingCertificate("serving", {
    target,
    endpoints: config.registries,
    chainPem: pki.servingChainPem.apply((c) => c ?? ""),
    keyPem: pki.servingKeyPem.apply((k) => k ?? ""),
    bundleHash,
    distributed: trust,
    after: [nodeTrust, ...controlPlanes, ...workers, bootstrap],
    provider: target.kind === "kubernetesSecret" ? providerFor(target.cluster) : undefined,
    sshPrivateKey: secretConfig("sshPrivateKey"),
  });

  // Last: the record the next run's preflight compares the clusters' objects with.
  const recorded = config.clusters.filter((c) => recordNamespaces(c).length > 0);
  if (recorded.length > 0) {
    new RotationRecord("rotation", {
      clusters: recorded.map((c) => ({ name: c.name, namespaces: recordNamespaces(c), provider: providerFor(c.name) })),
      bundleHash,
      completed: serving ? [serving.servedFingerprint] : trust,
      after: serving ? [serving] : [nodeTrust, ...controlPlanes, ...workers, bootstrap],
    });
  }

  return {
    bundlePem,
    bundleHash,
    caGenerations: pki.generations,
    caCertificates: pki.caCertificates,
    servingCertificate: pki.servingCertificate,
    servingChainPem: pki.servingChainPem,
    ...(serving ? { servedFingerprint: serving.servedFingerprint } : {}),
    nodes: nodeTrust.results,
    controlPlaneTrust: controlPlanes.map((c) => ({ generation: c.generation, servedVersion: c.servedVersion, bundleHash: c.bundleHash })),
    workerTemplates: workers.map((w) => ({ template: w.template, generation: w.generation, bundleHash: w.bundleHash })),
    cloudInitFragment: bootstrap.cloudInit,
  };
};
