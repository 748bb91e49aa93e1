import * as net from "node:net";
import { parseHostKey } from "./host-key";
import { ProbeError, ProbeOptions, ProbeResult, VERIFIABLE_ALGORITHMS, probeHostKey } from "./transport";

/*
 * The program-side SSH pre-check. The command plugin bounds only the TCP connect (perDialTimeout), never
 * the SSH handshake, and neither through a bastion: a host that accepts TCP and never speaks SSH hangs its
 * resource for good. So before any command is registered, every host the plugin will dial directly is
 * checked here, concurrently and each within a deadline: TCP, banner, key exchange up to the host key,
 * compared with the pin. A node behind a bastion is reached only through it, so its bastion is the hop
 * checked (the node's own handshake runs inside the bastion's SSH session, which this check cannot open
 * without logging in).
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
}

export interface PrecheckFailure {
  readonly target: PrecheckTarget;
  readonly message: string;
}

export interface PrecheckOptions {
  /** Deadline per hop (connect, banner and key exchange together). */
  readonly timeoutMs: number;
  /** Hops probed at the same time. @default 16 */
  readonly concurrency?: number;
  /** The probe; tests may pass another. @default probeHostKey */
  readonly probe?: (opts: ProbeOptions) => Promise<ProbeResult>;
}

const hopKey = (h: SshHop) => JSON.stringify([h.host, h.port, h.hostKey ?? null]);

/** Checks one hop; resolves to the problem, or undefined when it is fine. */
async function checkHop(hop: SshHop, opts: PrecheckOptions): Promise<string | undefined> {
  let algorithms: readonly string[] = VERIFIABLE_ALGORITHMS;
  let pinned;
  if (hop.hostKey !== undefined) {
    try {
      pinned = parseHostKey(hop.hostKey);
    } catch (e) {
      return `hostKey ${(e as Error).message}`;
    }
    // Offer only the pin's type, as the command plugin does: a host without that key type fails here too.
    algorithms = [pinned.type];
  }
  try {
    const seen = await (opts.probe ?? probeHostKey)({ host: hop.host, port: hop.port, timeoutMs: opts.timeoutMs, hostKeyAlgorithms: algorithms });
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

/**
 * Pre-checks every target's hop (a bastion shared by many nodes once), at most `concurrency` at a time, each
 * bounded by timeoutMs: the whole check takes about ceil(hops / concurrency) × timeoutMs at worst.
 */
export async function precheckHops(targets: readonly PrecheckTarget[], opts: PrecheckOptions): Promise<PrecheckFailure[]> {
  const unique = new Map<string, SshHop>();
  for (const t of targets) unique.set(hopKey(t.hop), t.hop);
  const hops = [...unique.values()];
  const results = await bounded(hops, opts.concurrency ?? 16, (h) => checkHop(h, opts));
  const byKey = new Map(hops.map((h, i) => [hopKey(h), results[i]]));
  return targets.flatMap((t) => {
    const problem = byKey.get(hopKey(t.hop));
    return problem ? [{ target: t, message: problem }] : [];
  });
}

/** One line per failure, naming the target and the hop. */
export function formatPrecheckFailures(failures: readonly PrecheckFailure[]): string {
  return failures
    .map((f) => `${f.target.name}: ${f.target.role === "bastion" ? "its bastion " : ""}${f.target.hop.host}:${f.target.hop.port}: ${f.message}`)
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
