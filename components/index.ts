/**
 * registry-trust: Pulumi components that make private container registries trusted by Kubernetes nodes
 * and keep them trusted through CA rotations. This is the package's main entry point (`registry-trust`);
 * the engine-free pieces (x509 verification, stack-config validation, node-script rendering) are in
 * `registry-trust/core`. docs/packaging.md says what is public and how the dynamic providers travel.
 *
 * @packageDocumentation
 */
export { RegistryPki, type RegistryPkiArgs } from "./registry-pki";
export { NodeTrust, type NodeTrustArgs, type NodeTrustResult } from "./node-trust";
export { ControlPlaneTrust, type ControlPlaneTrustArgs } from "./control-plane-trust";
export { WorkerTrust, type WorkerTrustArgs } from "./worker-trust";
export { TopologyTrust, type TopologyTrustArgs } from "./topology-trust";
export type { ClusterObjectTrustArgs } from "./cluster-object-trust";
export { BootstrapTrust, type BootstrapTrustArgs } from "./bootstrap-trust";
export { ServingCertificate, type ServingCertificateArgs } from "./serving-certificate";
export { RotationRecord, type RotationRecordArgs } from "./rotation-record";
export { rotationPreflight, type RotationPreflight } from "./rotation-preflight";
export { loadStackConfig, rawStackConfig, secretConfig } from "./stack-config";

// Types the Args above are made of, so that a consumer can name them without a second import.
export type {
  ClusterConfig,
  DaemonSetConfig,
  GeneratedCaConfig,
  ImportedCaConfig,
  KeyAlgorithm,
  NodeConfig,
  ObjectRef,
  OsFamily,
  ProxyConfig,
  RegistryEndpoint,
  Runtime,
  ServingConfig,
  ServingTarget,
  StackConfig,
} from "../core/config/model";
export type { Endpoint } from "../core/endpoint";
export { CA_MODES, KEY_ALGORITHMS, OS_FAMILIES, RUNTIMES, SERVING_MODES } from "../core/config/schema";
export type { ControlPlaneLive, LeaseLive, LiveState, MachineDeploymentLive, PreflightCluster, PreflightPlan } from "../core/rotation/preflight";
export { KCP_VERSIONS, type KcpVersion } from "../core/kcp/api";
export type { CapiVersion } from "../core/workers/api";
export type { CertSummary } from "../core/x509/cert";
export type { NodeReport } from "../core/node/types";
