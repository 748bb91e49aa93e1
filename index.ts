import { homedir } from "node:os";
import { resolve } from "node:path";
import { BootstrapTrust } from "./components/bootstrap-trust";
import { ControlPlaneTrust } from "./components/control-plane-trust";
import { NodeTrust } from "./components/node-trust";
import { RegistryPki } from "./components/registry-pki";
import { loadStackConfig, secretConfig } from "./components/stack-config";
import { WorkerTrust } from "./components/worker-trust";

// Validation runs before the first resource is registered: a bad stack config changes nothing.
const config = loadStackConfig();

const pki = new RegistryPki("registry", {
  endpoints: config.registries,
  ca: config.ca,
  serving: config.serving,
  externalServingKeyPem: secretConfig("servingKey"),
  expiryWarningDays: config.policy.expiryWarningDays,
});

// Both consume pki.bundlePem, which resolves only once the serving chain verified against it.
const nodeTrust = new NodeTrust("nodes", {
  nodes: config.nodes,
  registries: config.registries,
  bundlePem: pki.bundlePem,
  bundleHash: pki.bundleHash,
  servingChainPem: pki.servingChainPem,
  sshPrivateKey: secretConfig("sshPrivateKey"),
  requireHostKeys: config.policy.requireHostKeys,
  allowRuntimeRestart: config.policy.allowRuntimeRestart,
  probeImage: config.policy.probeImage,
});

// A kubeconfig path, read by the providers when they run, so a later delete still works after credentials rotate.
const clusterAccess = (cluster: (typeof config.clusters)[number]) => ({
  kubeconfig: resolve(cluster.kubeconfig ?? process.env.KUBECONFIG ?? `${homedir()}/.kube/config`),
  context: cluster.context,
  endpoints: config.registries,
  bundlePem: pki.bundlePem,
});

const controlPlanes = config.clusters.flatMap((cluster) =>
  cluster.controlPlanes.map((cp) => new ControlPlaneTrust(`${cluster.name}-${cp.namespace}-${cp.name}`, { ...clusterAccess(cluster), controlPlane: cp })));

// New worker machines (rollouts and the cluster autoscaler) boot from a template that carries the bundle.
const workers = config.clusters.flatMap((cluster) =>
  cluster.machineDeployments.map((md) => new WorkerTrust(`${cluster.name}-${md.namespace}-${md.name}`, { ...clusterAccess(cluster), machineDeployment: md })));

// For nodes provisioned outside Cluster API: a cloud-init fragment to add to their user-data.
const bootstrap = new BootstrapTrust("bootstrap", {
  registries: config.registries,
  os: config.nodeDefaults.os,
  runtimes: config.nodeDefaults.runtimes,
  bundlePem: pki.bundlePem,
  servingChainPem: pki.servingChainPem,
  allowRuntimeRestart: config.policy.allowRuntimeRestart,
});

export const bundlePem = pki.bundlePem;
export const bundleHash = pki.bundleHash;
export const caGenerations = pki.generations;
export const caCertificates = pki.caCertificates;
export const servingCertificate = pki.servingCertificate;
export const servingChainPem = pki.servingChainPem;
export const nodes = nodeTrust.results;
export const controlPlaneTrust = controlPlanes.map((c) => ({ generation: c.generation, servedVersion: c.servedVersion, bundleHash: c.bundleHash }));
export const workerTemplates = workers.map((w) => ({ template: w.template, generation: w.generation, bundleHash: w.bundleHash }));
export const cloudInitFragment = bootstrap.cloudInit;
