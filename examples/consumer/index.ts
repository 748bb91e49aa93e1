/*
 * edge-platform: a platform team's own Pulumi program that installs registry-trust from its package and
 * composes the components into its infrastructure, with its own configuration (Pulumi.yaml), not
 * registry-trust's stack config. The registry's certificate comes from a CA the team already runs
 * (import mode): its nodes must trust that CA for the registry, and new Cluster API machines must boot
 * trusting it.
 */
import * as path from "node:path";
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { ControlPlaneTrust, NodeConfig, NodeTrust, ObjectRef, RegistryEndpoint, RegistryPki, WorkerTrust } from "registry-trust";
import { formatProblem, hasErrors, inspectBundle, parseEndpoint } from "registry-trust/core";

const config = new pulumi.Config();

/** A config value naming a file, read relative to this program's directory. */
function readConfigFile(key: string): { pem: string; source: string } {
  const file = path.resolve(config.require(key));
  try {
    return { pem: readFileSync(file, "utf8"), source: file };
  } catch (e) {
    throw new pulumi.RunError(`${key}: cannot read ${file} (${(e as Error).message}); set it to the PEM file's path`);
  }
}

/** "NAMESPACE/NAME" → ObjectRef, or undefined when the key is empty. */
function objectRef(key: string): ObjectRef | undefined {
  const value = config.get(key) ?? "";
  if (value === "") return undefined;
  const [namespace, name, ...rest] = value.split("/");
  if (!namespace || !name || rest.length > 0) throw new pulumi.RunError(`${key} "${value}" is not NAMESPACE/NAME`);
  return { namespace, name };
}

// Input checks with the package's engine-free core, before any resource is registered.
let registry: RegistryEndpoint;
try {
  registry = { ...parseEndpoint(config.require("registry")), mirrorOf: [] };
} catch (e) {
  throw new pulumi.RunError(`registry: ${(e as Error).message}`);
}
const caBundle = readConfigFile("caBundleFile");
const { problems } = inspectBundle(caBundle.pem, caBundle.source);
if (hasErrors(problems)) throw new pulumi.RunError(`caBundleFile:\n${problems.map(formatProblem).join("\n")}`);
for (const p of problems) pulumi.log.warn(`caBundleFile: ${formatProblem(p)}`);
const servingChain = readConfigFile("servingChainFile");

interface Host {
  name: string;
  address: string;
  port?: number;
  hostKey: string;
}
const nodes: NodeConfig[] = config.requireObject<Host[]>("nodes").map((h) => ({
  name: h.name,
  host: h.address,
  port: h.port ?? 22,
  user: "root",
  os: "auto",
  runtimes: ["containerd"],
  hostKey: h.hostKey,
}));

// The bundle resolves only once the chain the registry serves verified against it.
const pki = new RegistryPki("registry", {
  endpoints: [registry],
  ca: { mode: "import", bundlePem: caBundle.pem, source: caBundle.source },
  serving: { mode: "external", chainPem: servingChain.pem, hasKey: false, keyAlgorithm: "ECDSA-P256", validityDays: 90, renewBeforeDays: 30 },
});

const probeImage = config.get("probeImage") || undefined;
const nodeTrust = new NodeTrust("workers", {
  nodes,
  registries: [registry],
  bundlePem: pki.bundlePem,
  bundleHash: pki.bundleHash,
  servingChainPem: pki.servingChainPem,
  sshPrivateKey: config.requireSecret("sshPrivateKey"),
  requireHostKeys: true,
  probeImage,
});

// New machines of the Cluster API cluster boot with the bundle: the control plane and the workers.
const kubeconfig = config.get("kubeconfig") ? path.resolve(config.require("kubeconfig")) : undefined;
const controlPlane = objectRef("controlPlane");
const machineDeployment = objectRef("machineDeployment");
if ((controlPlane || machineDeployment) && !kubeconfig) throw new pulumi.RunError("kubeconfig: required when controlPlane or machineDeployment is set");
const clusterAccess = { kubeconfig: kubeconfig!, endpoints: [registry], bundlePem: pki.bundlePem };
const kcp = controlPlane && new ControlPlaneTrust("mgmt-control-plane", { ...clusterAccess, controlPlane });
const md = machineDeployment && new WorkerTrust("mgmt-workers", { ...clusterAccess, machineDeployment });

export const bundleHash = pki.bundleHash;
export const caCertificates = pki.caCertificates;
export const nodeReports = nodeTrust.results;
export const controlPlaneGeneration = kcp ? kcp.generation : undefined;
export const workerTemplate = md ? md.template : undefined;
