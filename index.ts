import { homedir } from "node:os";
import { resolve } from "node:path";
import { ControlPlaneTrust } from "./components/control-plane-trust";
import { NodeTrust } from "./components/node-trust";
import { RegistryPki } from "./components/registry-pki";
import { loadStackConfig, secretConfig } from "./components/stack-config";

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

const controlPlanes = config.clusters.flatMap((cluster) =>
  cluster.controlPlanes.map((cp) => new ControlPlaneTrust(`${cluster.name}-${cp.namespace}-${cp.name}`, {
    // A path, read by the provider when it runs, so a later delete still works after credentials rotate.
    kubeconfig: resolve(cluster.kubeconfig ?? process.env.KUBECONFIG ?? `${homedir()}/.kube/config`),
    context: cluster.context,
    controlPlane: cp,
    endpoints: config.registries,
    bundlePem: pki.bundlePem,
  })));

export const bundlePem = pki.bundlePem;
export const bundleHash = pki.bundleHash;
export const caGenerations = pki.generations;
export const caCertificates = pki.caCertificates;
export const servingCertificate = pki.servingCertificate;
export const servingChainPem = pki.servingChainPem;
export const nodes = nodeTrust.results;
export const controlPlaneTrust = controlPlanes.map((c) => ({ generation: c.generation, servedVersion: c.servedVersion, bundleHash: c.bundleHash }));
