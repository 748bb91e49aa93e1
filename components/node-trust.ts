import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { gzipSync } from "node:zlib";
import { NodeConfig, RegistryEndpoint } from "../core/config/model";
import { hostProblem, portProblem } from "../core/endpoint";
import { expectedChecks, parseNodeReport, renderNodeScriptPair } from "../core/node/render";
import { NodeReport, NodeScriptInput } from "../core/node/types";
import { parseHostKey } from "../core/ssh/host-key";
import { PrecheckTarget } from "../core/ssh/precheck";
import { DEFAULT_PRECHECK_SECONDS, sshGate } from "./ssh-precheck";

/*
 * Nodes and registries are plain values, not Inputs: they decide which Command resources exist and what
 * they are named, which Pulumi must know while registering them. Only the bundle (and the chain it is
 * checked against) flows in as Outputs from RegistryPki.
 */
export interface NodeTrustArgs {
  /** Nodes reached over SSH (StackConfig.nodes), each gets its own Command resource. */
  readonly nodes: readonly NodeConfig[];
  /** Registry endpoints (and the upstreams they mirror) every node trusts (StackConfig.registries). */
  readonly registries: readonly RegistryEndpoint[];
  /** PEM trust bundle (RegistryPki.bundlePem). */
  readonly bundlePem: pulumi.Input<string>;
  /** sha256 hex of the canonical bundlePem (RegistryPki.bundleHash); a change re-runs the install, and each node must report it back. */
  readonly bundleHash: pulumi.Input<string>;
  /** The chain the registry serves, leaf first, verified offline on each node (RegistryPki.servingChainPem). @default none */
  readonly servingChainPem?: pulumi.Input<string | undefined>;
  /** SSH private key (PEM/OpenSSH); stored only as a secret. @default the SSH agent */
  readonly sshPrivateKey?: pulumi.Input<string>;
  /** SSH agent socket used when no private key is given. @default SSH_AUTH_SOCK of the provider process at run time */
  readonly agentSocketPath?: string;
  /** Refuse nodes (and bastions) without a pinned hostKey (StackConfig.policy.requireHostKeys; false only for labs). @default true */
  readonly requireHostKeys?: boolean;
  /** Allow a runtime restart when its configuration must change (StackConfig.policy.allowRuntimeRestart). @default true */
  readonly allowRuntimeRestart?: boolean;
  /** Image on the registry pulled through CRI on each node to verify (StackConfig.policy.probeImage). @default none */
  readonly probeImage?: string;
  /** Probe https://<registry>/v2/ on each node through the installed trust. @default true */
  readonly probeTls?: boolean;
  /** Let a node succeed when a check cannot run on it (no openssl, curl or crictl), reported as unverified (StackConfig.policy.allowUnverifiedNodes). @default false */
  readonly allowUnverified?: boolean;
  /** Names this installation on the nodes, so two stacks managing the same node never touch each other's files. @default "default" */
  readonly owner?: string;
  /** Failed dial attempts allowed before a node's resource fails (the plugin dials once more; its own default, 10, hides a dead node for minutes). @default 3 */
  readonly dialErrorLimit?: number;
  /** Seconds per dial attempt; bounds the TCP connect only, as upstream's plugin does. @default 15 */
  readonly perDialTimeoutSeconds?: number;
  /** Seconds the program-side SSH pre-check gives each node or bastion (TCP, banner, host key; with sshPrivateKey also each node through its bastion), in preview and up; 0 skips it. @default 10 */
  readonly sshPrecheckSeconds?: number;
}

/** What one node reported after the install: its host plus the script's report line. */
export interface NodeTrustResult extends NodeReport {
  readonly node: string;
  readonly host: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Installs the trust bundle on every node over SSH and verifies it there, one @pulumi/command
 * `remote.Command` per node. Every node (or its bastion) must first pass the SSH pre-check, so a silent or
 * wrong host stops the run before anything runs anywhere; past it, nodes are independent resources (no
 * dependency between them): a failing node fails only its own resource, `--continue-on-error` finishes the rest.
 * Dropping a node from the config runs its remove script; a node that no longer exists cannot run it, so
 * its resource has to leave the state by hand (`pulumi state delete URN`).
 */
export class NodeTrust extends pulumi.ComponentResource {
  /** The Command resource of each node, by node name. */
  readonly commands: Readonly<Record<string, command.remote.Command>>;
  /** Each node's report (files changed, restarts, checks passed, bundle installed), by node name. */
  readonly nodeResults: Readonly<Record<string, pulumi.Output<NodeTrustResult>>>;
  /** All nodes' reports; resolves only when every node succeeded. */
  readonly results: pulumi.Output<NodeTrustResult[]>;

  constructor(name: string, args: NodeTrustArgs, opts?: pulumi.ComponentResourceOptions) {
    super("registry-trust:index:NodeTrust", name, {}, opts);
    this.refuseBadArgs(name, args);

    const unpinned = args.nodes.filter((n) => !n.hostKey).map((n) => n.name);
    if (unpinned.length > 0) {
      pulumi.log.warn(`SSH host keys not pinned for ${unpinned.join(", ")}: whoever answers at those addresses receives the bundle push and a root shell. Pin them (nodes[].hostKey); only a lab should run with allowUnpinnedHostKeys.`, this);
    }
    const privateKey = args.sshPrivateKey === undefined ? undefined : pulumi.secret(args.sshPrivateKey);
    // The plugin bounds neither the SSH handshake nor anything through a bastion: every directly dialled hop
    // (and, with sshPrivateKey, every node through its bastion) is checked first, and no node's Command is
    // registered before all passed.
    const gate = sshGate({
      owner: `NodeTrust ${name}`,
      targets: args.nodes.map((n): PrecheckTarget => (n.proxy
        ? {
          name: `node ${n.name}`, role: "bastion", hop: { host: n.proxy.host, port: n.proxy.port, hostKey: n.proxy.hostKey },
          behind: { node: { host: n.host, port: n.port, hostKey: n.hostKey }, user: n.proxy.user },
        }
        : { name: `node ${n.name}`, role: "node", hop: { host: n.host, port: n.port, hostKey: n.hostKey } })),
      agentSocket: args.agentSocketPath ?? process.env.SSH_AUTH_SOCK,
      seconds: args.sshPrecheckSeconds ?? DEFAULT_PRECHECK_SECONDS,
      privateKey,
    }, this);
    const scripts = new ScriptCache(args);
    const commands: Record<string, command.remote.Command> = {};
    const nodeResults: Record<string, pulumi.Output<NodeTrustResult>> = {};

    for (const node of args.nodes) {
      const rendered = pulumi.all([args.bundlePem, args.servingChainPem, args.bundleHash]).apply(([bundlePem, chain, hash]) => {
        if (!SHA256_HEX.test(hash)) throw new pulumi.ResourceError(`bundleHash must be 64 lowercase hex digits (sha256), got "${hash}"`, this);
        try {
          return { hash, script: scripts.get(node, bundlePem, chain), checks: scripts.checks(node, bundlePem, chain) };
        } catch (e) {
          throw new pulumi.ResourceError(`node ${node.name} (${node.host}): cannot render its script: ${(e as Error).message}`, this);
        }
      });
      const lines = rendered.apply((r) => nodeCommand(node.user, r.hash, r.script));
      const cmd = new command.remote.Command(`${name}-${node.name}`, {
        connection: this.connection(node, args, privateKey, gate),
        create: lines.create,
        stdin: lines.stdin,
        delete: lines.delete,
        // No `update` and no `triggers`. In @pulumi/command 1.2.x `triggers` is replaceOnChanges: a new bundle
        // would create a new Command (install) and then run the old one's delete, the remove script, wiping
        // the trust it had just installed. A change of create/stdin/delete text is an in-place update, which
        // runs `create` again: the install script is idempotent, so that is the whole update.
        // The previous stdout is not needed on the node, and sshd without AcceptEnv would warn on every run.
        addPreviousOutputInEnv: false,
      }, { parent: this });
      commands[node.name] = cmd;
      nodeResults[node.name] = pulumi.all([cmd.stdout, rendered]).apply(([stdout, r]) => this.result(node, stdout, r.hash, r.checks, args.allowUnverified ?? false));
    }

    this.commands = commands;
    this.nodeResults = nodeResults;
    this.results = pulumi.all(Object.values(nodeResults));
    // The per-node Outputs stay properties, not registered outputs: registering them would make one failed
    // node also fail the component's own registration, a second error that names no node.
    this.registerOutputs({});
  }

  private connection(node: NodeConfig, args: NodeTrustArgs, privateKey: pulumi.Output<string> | undefined, gate: pulumi.Output<true>): command.types.input.remote.ConnectionArgs {
    // The agent socket path is left to the provider when not given: agent sockets move between login
    // sessions, and a stored path would both re-run every node on the next up and break a later delete.
    const auth = privateKey ? { privateKey } : args.agentSocketPath ? { agentSocketPath: args.agentSocketPath } : {};
    const dial = { dialErrorLimit: args.dialErrorLimit ?? 3, perDialTimeout: args.perDialTimeoutSeconds ?? 15 };
    return {
      host: gate.apply(() => node.host),
      port: node.port,
      user: node.user,
      ...(node.hostKey ? { hostKey: node.hostKey } : {}),
      ...auth,
      ...dial,
      // The bastion gets the same credentials, so its key is pinned too when given; the node's own hostKey is
      // checked end to end through the tunnel either way, so a rogue bastion cannot pose as the node.
      ...(node.proxy
        ? { proxy: { host: node.proxy.host, port: node.proxy.port, user: node.proxy.user, ...(node.proxy.hostKey ? { hostKey: node.proxy.hostKey } : {}), ...auth, ...dial } }
        : {}),
    };
  }

  private result(node: NodeConfig, stdout: string, expectedHash: string, checks: readonly string[], allowUnverified: boolean): NodeTrustResult {
    let report: NodeReport;
    try {
      report = parseNodeReport(stdout);
    } catch (e) {
      throw new pulumi.ResourceError(`node ${node.name} (${node.host}): the script succeeded but its report is unreadable: ${(e as Error).message}`, this);
    }
    // Both sides hash the canonical PEM, so a difference means the node holds another bundle than the one
    // RegistryPki verified against the serving chain: nothing downstream may assume this node is ready.
    if (report.action === "install" && report.bundleSha256 !== expectedHash) {
      throw new pulumi.ResourceError(`node ${node.name} (${node.host}) reports bundle sha256 ${report.bundleSha256}, expected ${expectedHash}`, this);
    }
    // The hash says which bundle landed, not that it works: every check the script was rendered with must
    // have passed, or (only when allowed) be reported as one that could not run there.
    if (report.action === "install") {
      const missing = checks.filter((c) => !report.verified.includes(c));
      const unverified = missing.filter((c) => allowUnverified && (report.unverified ?? []).includes(c));
      const failed = missing.filter((c) => !unverified.includes(c));
      if (failed.length > 0) {
        throw new pulumi.ResourceError(`node ${node.name} (${node.host}) did not verify ${failed.join(", ")}; ${(report.unverified ?? []).length > 0 ? `it could not run ${report.unverified!.join(", ")} (install curl or openssl, and crictl for probeImage; or set registry-trust:allowUnverifiedNodes)` : "its report lists no such check"}`, this);
      }
      if (unverified.length > 0) pulumi.log.warn(`node ${node.name} (${node.host}): not verified, the tools are missing there: ${unverified.join(", ")} (allowUnverifiedNodes)`, this);
    }
    return { node: node.name, host: node.host, ...report };
  }

  /** Every mistake in the node list at once, before any resource is registered. */
  private refuseBadArgs(name: string, args: NodeTrustArgs): void {
    const problems: string[] = [];
    if (args.nodes.length > 0 && args.registries.length === 0) problems.push("registries is empty: there is nothing for the nodes to trust");
    if (args.nodes.length > 0 && args.sshPrivateKey === undefined && !args.agentSocketPath && !process.env.SSH_AUTH_SOCK) {
      problems.push("no SSH credentials: set sshPrivateKey (pulumi config set --secret registry-trust:sshPrivateKey < key) or run with an SSH agent (SSH_AUTH_SOCK)");
    }
    const seen = new Set<string>();
    for (const n of args.nodes) {
      const at = `node "${n.name}"`;
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(n.name)) problems.push(`${at}: the name must be letters, digits, '.', '_' or '-' (it names the node's resource)`);
      if (seen.has(n.name)) problems.push(`${at}: the name is used twice`);
      seen.add(n.name);
      const hp = hostProblem(n.host);
      if (hp) problems.push(`${at}: host "${n.host}" ${hp}`);
      const pp = portProblem(n.port);
      if (pp) problems.push(`${at}: port ${n.port} ${pp}`);
      if (!/^[a-z_][a-z0-9_.-]*$/i.test(n.user)) problems.push(`${at}: user "${n.user}" is not a Unix user name`);
      if (n.runtimes.length === 0) problems.push(`${at}: runtimes is empty`);
      const requireHostKeys = args.requireHostKeys ?? true;
      if (requireHostKeys && !n.hostKey) problems.push(`${at}: hostKey is required: pin the node's ed25519 key (ssh-keyscan -t ed25519 ${n.host}, checked out of band), or for a lab set requireHostKeys false`);
      if (requireHostKeys && n.proxy && !n.proxy.hostKey) problems.push(`${at}: proxy.hostKey is required: pin the bastion's ed25519 key (ssh-keyscan -t ed25519 ${n.proxy.host}, checked out of band)`);
      for (const [field, key] of [["hostKey", n.hostKey], ["proxy.hostKey", n.proxy?.hostKey]] as const) {
        if (key === undefined) continue;
        try {
          parseHostKey(key);
        } catch (e) {
          problems.push(`${at}: ${field} ${(e as Error).message}`);
        }
      }
      if (n.proxy) {
        const php = hostProblem(n.proxy.host);
        if (php) problems.push(`${at}: proxy host "${n.proxy.host}" ${php}`);
        const ppp = portProblem(n.proxy.port);
        if (ppp) problems.push(`${at}: proxy port ${n.proxy.port} ${ppp}`);
      }
    }
    if (problems.length > 0) throw new pulumi.ResourceError(`NodeTrust ${name}: refusing the node configuration, nothing was touched:\n  ${problems.join("\n  ")}`, this);
  }
}

/**
 * What a node's Command runs: `script` is renderNodeScriptPair's (install and remove in one), sent on stdin
 * gzipped and base64-encoded; create runs it with `install`, delete with `remove`. The provider keeps the
 * inputs in the checkpoint twice (as input and as output) for every node, and it runs `delete` later with
 * the *stored* stdin, so the script travels and is stored once, packed: its size is the state's size per
 * node (issue 16). The lines carry no host, bundle or other configured text except the validated hex hash;
 * the hash is on the create line only so a preview diff shows which bundle the node moves to. Nodes need
 * gzip and base64 (coreutils, busybox); without gzip the line fails naming it instead of running nothing.
 */
export function nodeCommand(user: string, bundleHash: string, script: string): { create: string; stdin: string; delete: string } {
  if (!SHA256_HEX.test(bundleHash)) throw new Error(`bundleHash must be 64 lowercase hex digits (sha256), got "${bundleHash}"`);
  const shell = user === "root" ? "sh -s" : "sudo -n sh -s";
  const unpack = "{ command -v gzip >/dev/null || { echo 'registry-trust: the node needs gzip' >&2; exit 127; }; } && base64 -d | gzip -dc |";
  return {
    create: `${unpack} ${shell} install # registry-trust bundle sha256:${bundleHash}`,
    stdin: packScript(script),
    delete: `${unpack} ${shell} remove`,
  };
}

/**
 * gzip (level 9) then base64. The header's OS byte is set to 255 ("unknown"): zlib writes the platform
 * that compressed, and the same stack run from another OS must not see every node's stdin change. A
 * different zlib producing other bytes would only re-run the (idempotent) install once on every node.
 */
export function packScript(script: string): string {
  const gz = gzipSync(Buffer.from(script, "utf8"), { level: 9 });
  gz[9] = 0xff;
  return gz.toString("base64");
}

/**
 * Scripts depend on the node only through its OS family and runtimes, so nodes sharing those share one
 * rendering per bundle (a 500-node fleet renders a handful of scripts, not 1000).
 */
class ScriptCache {
  private readonly cache = new Map<string, string>();

  constructor(private readonly args: NodeTrustArgs) {}

  /** The `verified` entries a successful install on `node` must report. */
  checks(node: NodeConfig, bundlePem: string, servingChainPem: string | undefined): string[] {
    return expectedChecks({ ...this.input(node, bundlePem, servingChainPem), action: "install" });
  }

  /** The install-or-remove script of `node` (renderNodeScriptPair). */
  get(node: NodeConfig, bundlePem: string, servingChainPem: string | undefined): string {
    const key = JSON.stringify([node.os, node.runtimes, bundlePem, servingChainPem ?? null]);
    let script = this.cache.get(key);
    if (script === undefined) {
      script = renderNodeScriptPair(this.input(node, bundlePem, servingChainPem));
      this.cache.set(key, script);
    }
    return script;
  }

  private input(node: NodeConfig, bundlePem: string, servingChainPem: string | undefined): Omit<NodeScriptInput, "action"> {
    return {
      os: node.os,
      runtimes: node.runtimes,
      registries: this.args.registries,
      bundlePem,
      owner: this.args.owner,
      servingChainPem,
      allowRuntimeRestart: this.args.allowRuntimeRestart ?? true,
      probeImage: this.args.probeImage,
      probeTls: this.args.probeTls ?? true,
      allowUnverified: this.args.allowUnverified ?? false,
    };
  }
}
