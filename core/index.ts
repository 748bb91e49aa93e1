/**
 * The engine-free part of registry-trust (`registry-trust/core`): no Pulumi, no Kubernetes client at load
 * time. Verify a served chain against a CA bundle the way containerd and the kubelet (Go's crypto/x509)
 * would, validate a stack configuration, render the POSIX sh script that installs a bundle on a node,
 * and the cloud-init / DaemonSet renderings for nodes without SSH.
 *
 * @packageDocumentation
 */

// Endpoints
export { parseEndpoint, endpointKey, hostProblem, portProblem, type Endpoint } from "./endpoint";

// x509: parse, assemble, verify
export { parsePemCertificates, toPem, type ParsedPem } from "./x509/pem";
export { parseCertificate, summarizeCert, describePublicKey, type CertInfo, type CertSummary, type IpNet, type NameConstraintSet, type PublicKeyInfo, type SigAlg } from "./x509/cert";
export { assembleBundle, bundleHash, inspectBundle, type BundleReport } from "./x509/bundle";
export { verifyServing, type VerifyInput, type Verdict } from "./x509/verify";
export { formatProblem, hasErrors, PROBLEM_CODES, type Problem, type ProblemCode, type Severity } from "./x509/problems";
export { fetchServedChain } from "./served-chain";

// Stack configuration
export { parseStackConfig, type ParseOptions, type RawConfig } from "./config/validate";
export { ConfigError, formatIssues, type ConfigIssue } from "./config/issues";
export { CA_MODES, CONFIG_KEYS, KEY_ALGORITHMS, OS_FAMILIES, PROJECT, RUNTIMES, SERVING_MODES, type ConfigKey, type KeyDef, type PulumiType } from "./config/schema";
export type {
  CaMode,
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
  ServingMode,
  ServingTarget,
  StackConfig,
} from "./config/model";

// Node scripts and the files they write
export { renderNodeScript, parseNodeReport, NodeScriptError } from "./node/render";
export { NODE_REPORT_PREFIX, type NodeAction, type NodeReport, type NodeScriptInput } from "./node/types";
export { containerdHostsFiles, containerdCaPath, type HostsFile } from "./node/containerd-hosts";
export { renderCloudInit, type CloudInitFragment, type CloudInitInput } from "./bootstrap/cloud-init";
export { renderDaemonSet, checkDaemonSetImage, DaemonSetImageError, type DaemonSetInput, type DaemonSetManifests } from "./bootstrap/daemonset";
