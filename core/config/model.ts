import { Endpoint } from "../endpoint";
import { CA_MODES, KEY_ALGORITHMS, OS_FAMILIES, RUNTIMES, SERVING_MODES } from "./schema";

export type CaMode = (typeof CA_MODES)[number];
export type ServingMode = (typeof SERVING_MODES)[number];
export type KeyAlgorithm = (typeof KEY_ALGORITHMS)[number];
export type OsFamily = (typeof OS_FAMILIES)[number];
export type Runtime = (typeof RUNTIMES)[number];

export interface RegistryEndpoint extends Endpoint {
  /** Upstream registries (e.g. "docker.io") for which this endpoint is a mirror. */
  readonly mirrorOf: readonly string[];
}

export interface GeneratedCaConfig {
  readonly mode: "generate";
  readonly generation: number;
  readonly retainGenerations: number;
  readonly keyAlgorithm: KeyAlgorithm;
  readonly validityDays: number;
  readonly commonName: string;
  readonly organization?: string;
}

export interface ImportedCaConfig {
  readonly mode: "import";
  /** PEM text of the imported bundle (read from caBundle or caBundleFile). */
  readonly bundlePem: string;
  /** Where it came from, for messages. */
  readonly source: string;
}

export interface ServingConfig {
  readonly mode: ServingMode;
  readonly keyAlgorithm: KeyAlgorithm;
  readonly validityDays: number;
  readonly renewBeforeDays: number;
  /** External mode: the chain the registry serves, when given. */
  readonly chainPem?: string;
  /** External mode: whether a serving key was configured (the key itself stays in Pulumi config as a secret). */
  readonly hasKey: boolean;
}

export interface ProxyConfig {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly hostKey?: string;
}

export interface NodeConfig {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly os: OsFamily;
  readonly runtimes: readonly Runtime[];
  readonly hostKey?: string;
  readonly proxy?: ProxyConfig;
}

export interface ObjectRef {
  readonly namespace: string;
  readonly name: string;
}

export interface ClusterConfig {
  readonly name: string;
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly controlPlanes: readonly ObjectRef[];
  readonly machineDeployments: readonly ObjectRef[];
}

/** Where the serving certificate is switched (after the bundle is everywhere). */
export type ServingTarget =
  | { readonly kind: "none" }
  | {
    readonly kind: "kubernetesSecret";
    /** A clusters[].name: its kubeconfig/context reach the Secret. */
    readonly cluster: string;
    readonly namespace: string;
    readonly name: string;
    readonly verifyTimeoutSeconds: number;
  }
  | {
    readonly kind: "hostFiles";
    readonly host: string;
    readonly port: number;
    readonly user: string;
    /** Pinned ed25519/ECDSA host key: required, the serving private key is pushed there. */
    readonly hostKey: string;
    /** Absolute, normalized paths on the registry host. */
    readonly certPath: string;
    readonly keyPath: string;
    /** argv run after both files are in place; each word is passed single-quoted. */
    readonly reloadCommand: readonly string[];
    readonly verifyTimeoutSeconds: number;
  };

export interface DaemonSetConfig {
  /** A clusters[].name. */
  readonly cluster: string;
  readonly namespace: string;
  readonly image: string;
}

/** The validated stack configuration: everything index.ts needs, nothing secret. */
export interface StackConfig {
  readonly production: boolean;
  readonly registries: readonly RegistryEndpoint[];
  readonly ca: GeneratedCaConfig | ImportedCaConfig;
  readonly serving: ServingConfig;
  readonly ssh: { readonly user: string; readonly port: number; readonly useAgent: boolean };
  readonly nodes: readonly NodeConfig[];
  /** OS family and runtimes of nodes not listed in `nodes` (new nodes booting with the cloud-init fragment). */
  readonly nodeDefaults: { readonly os: OsFamily; readonly runtimes: readonly Runtime[] };
  readonly clusters: readonly ClusterConfig[];
  readonly servingTarget: ServingTarget;
  /** The DaemonSet option, when enabled. */
  readonly daemonSet?: DaemonSetConfig;
  readonly policy: {
    readonly requireHostKeys: boolean;
    readonly allowRuntimeRestart: boolean;
    readonly probeImage?: string;
    /** A node whose checks cannot run (missing openssl/curl/crictl) succeeds, its checks reported unverified. */
    readonly allowUnverifiedNodes: boolean;
    readonly expiryWarningDays: number;
    /** The rotation preflight warns instead of failing when live state cannot be read. */
    readonly preflightAllowUnreachable: boolean;
  };
}
