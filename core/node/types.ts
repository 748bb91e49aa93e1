import { OsFamily, RegistryEndpoint, Runtime } from "../config/model";

export type NodeAction = "install" | "remove";

/** Everything a node script is rendered from; validated by renderNodeScript before any text is produced. */
export interface NodeScriptInput {
  /** OS family of the node; "auto" detects it from /etc/os-release on the node. */
  readonly os: OsFamily;
  /** Container runtimes whose trust locations are written. */
  readonly runtimes: readonly Runtime[];
  /** Registry endpoints (and the upstreams they mirror) to trust. */
  readonly registries: readonly RegistryEndpoint[];
  /** PEM trust bundle. */
  readonly bundlePem: string;
  readonly action: NodeAction;
  /** Names this installation in the files' marker line and the OS store file names, so that two stacks managing the same node never touch each other's files. @default "default" */
  readonly owner?: string;
  /** The chain the registry serves (leaf first), verified offline on the node with openssl against the installed bundle. @default none */
  readonly servingChainPem?: string;
  /** Allow restarting a runtime whose configuration must change (containerd config_path, k3s/RKE2). @default true */
  readonly allowRuntimeRestart?: boolean;
  /** Image on the registry pulled through CRI (crictl) to verify; skipped when crictl is absent. @default none */
  readonly probeImage?: string;
  /** Probe https://<registry>/v2/ through the installed trust (curl, else openssl s_client). @default true */
  readonly probeTls?: boolean;
  /** Let the node succeed when a check cannot run there (no openssl, curl or crictl); it is reported as unverified. @default false */
  readonly allowUnverified?: boolean;
}

/** The machine-readable last line a node script prints (prefix NODE_REPORT_PREFIX, then JSON). */
export interface NodeReport {
  readonly action: NodeAction;
  /** Detected or given OS family. */
  readonly os: string;
  /** Files written or removed (absolute paths). */
  readonly changed: string[];
  /** Services restarted (e.g. "containerd"). */
  readonly restarted: string[];
  /** Checks that passed, e.g. "openssl-verify:/etc/containerd/certs.d/registry.test:5000/ca.crt". */
  readonly verified: string[];
  /** Checks that could not run on the node (a missing tool); non-empty only when allowUnverified. */
  readonly unverified?: string[];
  /** sha256 of the bundle installed (empty after remove). */
  readonly bundleSha256: string;
}

export const NODE_REPORT_PREFIX = "REGISTRY_TRUST_REPORT ";
