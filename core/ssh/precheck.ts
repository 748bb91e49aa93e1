import * as net from "node:net";
import { HostKey, parseHostKey } from "./host-key";
import { ProbeError, ProbeOptions, ProbeResult, Tunnel, TunnelOptions, VERIFIABLE_ALGORITHMS, openTunnel, probeHostKey } from "./transport";

/*
 * The program-side SSH pre-check. The command plugin bounds only the TCP connect (perDialTimeout), never
 * the SSH handshake, and neither through a bastion: a host that accepts TCP and never speaks SSH hangs its
 * resource for good. So before any command is registered, every host the plugin will dial directly is
 * checked here, concurrently and each within a deadline: TCP, banner, key exchange up to the host key,
 * compared with the pin. A node behind a bastion is reached only inside the bastion's SSH session: its
 * bastion is checked so, and, given the private key the plugin logs in with, the node too, through a channel
 * the bastion forwards (login to the bastion, no command run on either).
 */

export interface SshHop {
  readonly host: string;
  readonly port: number;
  /** The pinned key line; undefined when unpinned (then only that the host speaks SSH is checked). */
  readonly hostKey?: string;
}

export interface PrecheckTarget {
  /** What the failure names: a node name, or e.g. "serving host registry-1". */
  readonly name: string;
  /** The directly dialled hop: the node itself, or its bastion. */
  readonly hop: SshHop;
  /** "node" or "bastion": how the message calls the hop. */
  readonly role: "node" | "bastion";
  /** With role "bastion": the node behind it and the bastion login, to check the node through a tunnel. */
  readonly behind?: { readonly node: SshHop; readonly user: string };
}

export interface PrecheckFailure {
  readonly target: PrecheckTarget;
  readonly message: string;
  /** The failure is the node's own, seen through its bastion's tunnel (the bastion itself passed). */
  readonly throughBastion?: boolean;
}

export interface PrecheckOptions {
  /** Deadline per hop (connect, banner and key exchange together). */
  readonly timeoutMs: number;
  /** Hops probed at the same time. @default 16 */
  readonly concurrency?: number;
  /** The probe; tests may pass another. @default probeHostKey */
  readonly probe?: (opts: ProbeOptions) => Promise<ProbeResult>;
  /**
   * The private key the command plugin logs in with: with it, each node behind a bastion is also checked
   * through the bastion. Without it (agent only) only the bastion is. Kept in memory, never in a message.
   */
  readonly privateKey?: string;
  /** Opens the tunnel through a bastion; tests may pass another. @default openTunnel */
  readonly tunnel?: (opts: TunnelOptions) => Promise<Tunnel>;
}

const hopKey = (h: SshHop) => JSON.stringify([h.host, h.port, h.hostKey ?? null]);

/** The pin of a hop and the host key algorithms to offer it (only the pin's type, as the command plugin does). */
function pinOf(hop: SshHop): { pinned?: HostKey; algorithms: readonly string[] } {
  if (hop.hostKey === undefined) return { algorithms: VERIFIABLE_ALGORITHMS };
  const pinned = parseHostKey(hop.hostKey);
  return { pinned, algorithms: [pinned.type] };
}

/**
 * Checks one hop, dialled directly or spoken to over `via` (a tunnel's stream); resolves to the problem, or
 * undefined when it is fine.
 */
async function checkHop(hop: SshHop, opts: PrecheckOptions, via?: Tunnel): Promise<string | undefined> {
  let pin;
  try {
    pin = pinOf(hop);
  } catch (e) {
    return `hostKey ${(e as Error).message}`;
  }
  const { pinned, algorithms } = pin;
  try {
    const seen = await (opts.probe ?? probeHostKey)({ host: hop.host, port: hop.port, timeoutMs: opts.timeoutMs, hostKeyAlgorithms: algorithms, sock: via?.stream });
    if (pinned && !seen.hostKey.equals(pinned.blob)) {
      return `host key mismatch: the server proved it holds ${seen.algorithm} ${seen.fingerprint} but the pin is ${pinned.type} ${pinned.fingerprint}. Another machine may be answering at this address, or the host was re-keyed: check its key out of band before pinning a new one`;
    }
    return undefined;
  } catch (e) {
    const stage = e instanceof ProbeError ? ` (${e.stage})` : "";
    return `${(e as Error).message}${stage}`;
  }
}

/** Runs fn over items with at most `limit` running at once, results in input order. */
async function bounded<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Checks the node behind a bastion through a channel the bastion forwards, within timeoutMs in all. */
async function checkBehind(t: PrecheckTarget, behind: NonNullable<PrecheckTarget["behind"]>, privateKey: string, opts: PrecheckOptions): Promise<string | undefined> {
  const started = Date.now();
  let tunnel: Tunnel;
  try {
    const { pinned, algorithms } = pinOf(t.hop);
    tunnel = await (opts.tunnel ?? openTunnel)({
      host: t.hop.host, port: t.hop.port, user: behind.user, privateKey, hostKey: pinned?.blob, hostKeyAlgorithms: algorithms,
      to: { host: behind.node.host, port: behind.node.port }, timeoutMs: opts.timeoutMs,
    });
  } catch (e) {
    return (e as Error).message;
  }
  try {
    return await checkHop(behind.node, { ...opts, timeoutMs: Math.max(1, opts.timeoutMs - (Date.now() - started)) }, tunnel);
  } finally {
    tunnel.close();
  }
}

/**
 * Pre-checks every target's hop (a bastion shared by many nodes once), at most `concurrency` at a time, each
 * bounded by timeoutMs; then, given the private key, each node behind a bastion that passed, through it. The
 * whole check takes about 2 × ceil(hops / concurrency) × timeoutMs at worst.
 */
export async function precheckHops(targets: readonly PrecheckTarget[], opts: PrecheckOptions): Promise<PrecheckFailure[]> {
  const limit = opts.concurrency ?? 16;
  const unique = new Map<string, SshHop>();
  for (const t of targets) unique.set(hopKey(t.hop), t.hop);
  const hops = [...unique.values()];
  const results = await bounded(hops, limit, (h) => checkHop(h, opts));
  const byKey = new Map(hops.map((h, i) => [hopKey(h), results[i]]));
  const privateKey = opts.privateKey;
  const tunnelled = privateKey === undefined ? [] : targets.filter((t) => t.behind && byKey.get(hopKey(t.hop)) === undefined);
  const behindResults = await bounded(tunnelled, limit, (t) => checkBehind(t, t.behind!, privateKey!, opts));
  const behindProblems = new Map(tunnelled.map((t, i) => [t, behindResults[i]]));
  return targets.flatMap((t): PrecheckFailure[] => {
    const problem = byKey.get(hopKey(t.hop));
    if (problem) return [{ target: t, message: problem }];
    const through = behindProblems.get(t);
    return through ? [{ target: t, message: through, throughBastion: true }] : [];
  });
}

/** One line per failure, naming the target and the hop. */
export function formatPrecheckFailures(failures: readonly PrecheckFailure[]): string {
  return failures
    .map((f) => {
      const { hop, behind } = f.target;
      if (f.throughBastion && behind) return `${f.target.name}: ${behind.node.host}:${behind.node.port} through its bastion ${hop.host}:${hop.port}: ${f.message}`;
      return `${f.target.name}: ${f.target.role === "bastion" ? "its bastion " : ""}${hop.host}:${hop.port}: ${f.message}`;
    })
    .join("\n  ");
}

/**
 * The agent socket the command plugin will dial for every connection (agentSocketPath, else SSH_AUTH_SOCK),
 * even with a private key: resolves to the problem when nothing accepts a connection there within timeoutMs.
 */
export function checkAgentSocket(path: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ path });
    const done = (problem: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(problem);
    };
    const timer = setTimeout(() => done(`the SSH agent socket ${path} did not accept a connection within ${timeoutMs / 1000} s`), timeoutMs);
    socket.on("connect", () => done(undefined));
    socket.on("error", (e: NodeJS.ErrnoException) => done(`the SSH agent socket ${path} is unusable (${e.code ?? e.message})`));
  });
}
