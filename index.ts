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

export const bundlePem = pki.bundlePem;
export const bundleHash = pki.bundleHash;
export const caGenerations = pki.generations;
export const caCertificates = pki.caCertificates;
export const servingCertificate = pki.servingCertificate;
export const servingChainPem = pki.servingChainPem;
