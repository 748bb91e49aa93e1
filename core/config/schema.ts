/*
 * Every top-level stack config key, in one table. Pulumi.yaml's `config:` block must declare exactly these
 * (test/unit/pulumi-yaml.test.ts keeps the two in step), and the README's configuration reference is
 * checked against it too. Pulumi's project schema can only type scalars and arrays of scalars, so the
 * structured keys (registries, nodes, clusters) carry no `type` there; their shape is validated here.
 */

export type PulumiType = "string" | "integer" | "boolean" | "array<string>";

export interface KeyDef {
  readonly type: PulumiType | "structured";
  readonly description: string;
  readonly default: string | number | boolean | readonly unknown[] | Readonly<Record<string, unknown>>;
  /** Set it with `pulumi config set --secret`; refused when stored in plain text. */
  readonly secret?: boolean;
}

export const CA_MODES = ["generate", "import"] as const;
export const SERVING_MODES = ["generate", "external"] as const;
export const KEY_ALGORITHMS = ["ECDSA-P256", "ECDSA-P384", "RSA-3072", "RSA-4096"] as const;
export const OS_FAMILIES = ["auto", "debian", "ubuntu", "rhel", "fedora", "rocky", "amazon", "suse", "alpine", "flatcar", "photon"] as const;
export const RUNTIMES = ["containerd", "docker", "crio", "podman", "k3s", "rke2"] as const;
export const SERVING_TARGET_KINDS = ["none", "kubernetesSecret", "hostFiles"] as const;

export const CONFIG_KEYS = {
  production: { type: "boolean", default: false, description: "Marks a production stack: allowUnpinnedHostKeys is refused and at least one previous CA generation retained." },
  registries: { type: "structured", default: [], description: "Registry endpoints the serving certificate covers and nodes trust: a list of {host, port (default 443), mirrorOf (upstream registries this one mirrors, default [])}." },
  caMode: { type: "string", default: "generate", description: "generate: CAs are created per generation by this stack; import: an existing (enterprise) CA bundle is distributed." },
  caGeneration: { type: "integer", default: 1, description: "Current CA generation (generate mode). Raise it by one to rotate: the new CA joins the bundle, is distributed and verified, then the serving certificate switches." },
  caRetainGenerations: { type: "integer", default: 1, description: "Previous CA generations kept in the bundle (generate mode). At least 1 keeps nodes trusting the certificate served during a rotation." },
  caKeyAlgorithm: { type: "string", default: "ECDSA-P384", description: "Key algorithm of newly created CA generations: ECDSA-P256, ECDSA-P384, RSA-3072 or RSA-4096." },
  caValidityDays: { type: "integer", default: 1825, description: "Validity of newly created CA generations, in days." },
  caCommonName: { type: "string", default: "registry-trust CA", description: "Common Name of generated CAs; the generation is appended (\" G3\")." },
  caOrganization: { type: "string", default: "", description: "Organization (O) of generated CAs; empty = none." },
  caBundle: { type: "string", default: "", description: "Import mode: the CA bundle as PEM text (one or more certificates). Exclusive with caBundleFile." },
  caBundleFile: { type: "string", default: "", description: "Import mode: path of a PEM CA bundle, relative to the project directory. Exclusive with caBundle." },
  servingCertMode: { type: "string", default: "generate", description: "generate: the serving certificate is issued by the current CA generation; external: it comes from elsewhere (required in import mode)." },
  servingKeyAlgorithm: { type: "string", default: "ECDSA-P256", description: "Key algorithm of the generated serving certificate." },
  servingValidityDays: { type: "integer", default: 90, description: "Validity of the generated serving certificate, in days." },
  servingRenewBeforeDays: { type: "integer", default: 30, description: "Renew the serving certificate this many days before expiry (takes effect on `pulumi up --refresh`)." },
  servingCertChainFile: { type: "string", default: "", description: "External mode: PEM file with the chain the registry serves (leaf first), checked against the bundle before anything is distributed. Empty = not checked." },
  servingKey: { type: "string", default: "", secret: true, description: "External mode: the serving private key (PEM), only to check it matches the certificate. Set with --secret." },
  sshUser: { type: "string", default: "root", description: "Default SSH user for nodes." },
  sshPort: { type: "integer", default: 22, description: "Default SSH port for nodes." },
  sshPrivateKey: { type: "string", default: "", secret: true, description: "SSH private key (PEM/OpenSSH) for nodes; empty = use the SSH agent. Set with --secret." },
  nodeOs: { type: "string", default: "auto", description: "Default OS family of nodes (auto detects from /etc/os-release)." },
  nodeRuntimes: { type: "array<string>", default: ["containerd"], description: "Default container runtimes configured on nodes: containerd, docker, crio, podman, k3s, rke2." },
  nodes: { type: "structured", default: [], description: "Nodes reached over SSH: a list of {name, host, port, user, os, runtimes, hostKey (pinned ed25519 or ECDSA key, 'ssh-ed25519 AAAA…'; RSA is refused), proxy {host, port, user, hostKey (the bastion's, pinned like the node's)}}; unset fields take the defaults above." },
  allowUnpinnedHostKeys: { type: "boolean", default: false, description: "Labs only: let nodes and their bastions go without a pinned SSH hostKey (by default every one must be pinned). Refused in production; the policy pack reports it; the hostFiles serving target needs its hostKey regardless." },
  allowRuntimeRestart: { type: "boolean", default: true, description: "Allow a runtime restart when its configuration must change (e.g. enabling containerd config_path); when false such nodes fail with a message instead." },
  probeImage: { type: "string", default: "", description: "Image (on the registry) pulled through CRI on each node to verify trust; empty = TLS probe only." },
  allowUnverifiedNodes: { type: "boolean", default: false, description: "Let a node succeed when a check cannot run on it (no openssl, curl, or crictl for probeImage); the checks are reported as unverified. By default such a node fails." },
  clusters: { type: "structured", default: [], description: "Clusters whose Cluster API objects carry the bundle: a list of {name, kubeconfig (path), context, controlPlanes [{namespace, name}], machineDeployments [{namespace, name}]}." },
  expiryWarningDays: { type: "integer", default: 30, description: "Warn when a CA or serving certificate expires within this many days." },
  servingTarget: { type: "structured", default: { kind: "none" }, description: "Where the serving certificate is switched once every node, control plane and worker template trusts the new bundle: {kind: none} | {kind: kubernetesSecret, cluster (a clusters[].name), namespace, name} | {kind: hostFiles, host, port, user, hostKey (required in every stack: the serving private key is pushed there), certPath and keyPath (absolute, normalized), reloadCommand [argv]}; plus verifyTimeoutSeconds (default 120, 0 = do not wait for the registry to serve it)." },
  daemonset: { type: "structured", default: { enabled: false }, description: "Trust through a privileged DaemonSet for nodes without SSH: {enabled, cluster (a clusters[].name), namespace (default kube-system), image}. The image must come from a registry the nodes already trust, never one of registries." },
  preflightAllowUnreachable: { type: "boolean", default: false, description: "Let `pulumi up` go on with a warning when the rotation preflight cannot read live state (registry endpoint, serving Secret, KubeadmControlPlane or its Lease); by default that is an error." },
} as const satisfies Record<string, KeyDef>;

export type ConfigKey = keyof typeof CONFIG_KEYS;
export const PROJECT = "registry-trust";
