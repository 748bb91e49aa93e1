import * as net from "node:net";
import type { Duplex } from "node:stream";
import { Client, type ServerHostKeyAlgorithm } from "ssh2";
import { fingerprint } from "./host-key";

/*
 * Whether a host speaks SSH and which host key it proves it holds, within a deadline, with the ssh2 client
 * (pinned 1.17.0): TCP connect, version banners, key exchange, and the server's signature over the exchange
 * hash checked with the key it presented. The probe ends when the key exchange completes, before
 * authentication: it never logs in and nothing runs on the host.
 */

export type ProbeStage = "connect" | "banner" | "key exchange";

export class ProbeError extends Error {
  constructor(readonly stage: ProbeStage, message: string) {
    super(message);
    this.name = "ProbeError";
  }
}

export interface ProbeResult {
  /** The server's version line, e.g. "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3". */
  readonly banner: string;
  /** Host key algorithm the exchange was signed with. */
  readonly algorithm: string;
  /** The host key blob the server proved it holds. */
  readonly hostKey: Buffer;
  readonly fingerprint: string;
}

export interface ProbeOptions {
  readonly host: string;
  readonly port: number;
  /** Deadline for the whole probe, connect to verified signature. */
  readonly timeoutMs: number;
  /** Host key algorithms offered, most preferred first: the pin's type, or every supported one. */
  readonly hostKeyAlgorithms: readonly string[];
  /**
   * A stream already connected to the host (e.g. a channel forwarded by a bastion) to speak SSH over instead
   * of dialling host:port; the probe then starts at the banner stage. @default a TCP connection to host:port
   */
  readonly sock?: Duplex;
}

/** Host key algorithms this probe can verify. RSA only with SHA-2, as OpenSSH ≥ 8.8 signs. */
export const VERIFIABLE_ALGORITHMS = [
  "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256",
] as const;

/** What the server's KEXINIT offered, as ssh2 1.17.0 reports it in its debug output (it has no other hook). */
const REMOTE_HOST_KEY_FORMATS = /^Handshake: \(remote\) Host key format: (.*)$/;
const REMOTE_KEX = /^Handshake: \(remote\) KEX method: (.*)$/;

// --- the probe -----------------------------------------------------------------------------------------

/**
 * Connects to host:port (or speaks over `sock`) and runs the key exchange until the server has proved the host
 * key it presented. Rejects with a ProbeError naming the stage that failed or stalled (no banner, no common
 * algorithm, bad signature, deadline); always closes the connection.
 */
export function probeHostKey(opts: ProbeOptions): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve, reject) => {
    let stage: ProbeStage = opts.sock ? "banner" : "connect";
    let done = false;
    let banner: string | undefined;
    let hostKey: Buffer | undefined;
    let remoteHostKeyFormats: string | undefined;
    let remoteKex: string | undefined;
    const socket: Duplex = opts.sock ?? net.connect({ host: opts.host, port: opts.port });
    const client = new Client();

    const finish = (err: ProbeError | undefined, result?: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off("data", sniff);
      client.end();
      socket.destroy();
      if (err) reject(err);
      else resolve(result!);
    };
    const fail = (message: string) => finish(new ProbeError(stage, message));
    const timer = setTimeout(() => {
      const what = {
        connect: "the TCP connection was not accepted",
        banner: "the connection was accepted but no SSH version banner arrived",
        "key exchange": "the SSH key exchange did not complete",
      }[stage];
      fail(`${what} within ${opts.timeoutMs / 1000} s`);
    }, opts.timeoutMs);

    // The server's version line, for the result and the stage: ssh2 keeps it to itself.
    let head = "";
    function sniff(chunk: Buffer): void {
      head += chunk.toString("latin1");
      const line = head.split("\n").slice(0, -1).find((l) => l.startsWith("SSH-"));
      if (line !== undefined) {
        banner = line.replace(/\r$/, "");
        stage = "key exchange";
        socket.off("data", sniff);
      } else if (head.length > 8192) {
        fail("no SSH version line in the first 8 KiB the server sent: this is not an SSH server");
      }
    }
    socket.on("data", sniff);
    if (!opts.sock) socket.once("connect", () => (stage = "banner"));

    client.on("handshake", (negotiated) => {
      // Emitted only after ssh2 verified the server's signature over the exchange hash with the presented key.
      if (!hostKey) return fail("the key exchange completed without a host key");
      finish(undefined, { banner: banner ?? "", algorithm: negotiated.serverHostKey, hostKey, fingerprint: fingerprint(hostKey) });
    });
    client.on("error", (e: Error & { level?: string; code?: string }) => {
      if (e.level === "client-socket") return fail(stage === "connect" ? `cannot connect: ${e.code ?? e.message}` : `the connection failed: ${e.code ?? e.message}`);
      if (/no matching host key format/.test(e.message)) {
        return fail(`no common host key algorithm: the server offers ${remoteHostKeyFormats || "none"}, the check (like the command plugin) accepts only ${opts.hostKeyAlgorithms.join(", ")}`);
      }
      if (/no matching key exchange algorithm/.test(e.message)) return fail(`no common key exchange algorithm (the server offers ${remoteKex || "none"})`);
      if (/signature verification failed/.test(e.message)) {
        return fail(`the server's signature over the key exchange does not verify: it does not hold the host key it presented`);
      }
      if (e.level === "protocol" || /identification|malformed|bad packet/i.test(e.message)) return fail(`the server sent a malformed SSH message: ${e.message}`);
      fail(`the SSH handshake failed: ${e.message}`);
    });
    client.on("close", () => fail(stage === "key exchange" ? "the server closed the connection during the key exchange" : "the server closed the connection without an SSH banner"));

    client.connect({
      sock: socket,
      // Never sent: the probe ends before authentication.
      username: "registry-trust-precheck",
      ident: "registry_trust_precheck",
      // The probe's own deadline bounds every stage.
      readyTimeout: 0,
      algorithms: { serverHostKey: [...opts.hostKeyAlgorithms] as ServerHostKeyAlgorithm[] },
      hostVerifier: (key: Buffer) => {
        // Called with the presented key before its signature is checked: accepted here, proved or refused by
        // ssh2 next, and compared with the pin by the caller only once proved.
        hostKey = Buffer.from(key);
        return true;
      },
      debug: (line: string) => {
        remoteHostKeyFormats = REMOTE_HOST_KEY_FORMATS.exec(line)?.[1] ?? remoteHostKeyFormats;
        remoteKex = REMOTE_KEX.exec(line)?.[1] ?? remoteKex;
      },
    });
  });
}

export interface TunnelOptions {
  /** The bastion to log in to. */
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** The private key the command plugin logs in with (PEM or OpenSSH format); kept in memory only. */
  readonly privateKey: string;
  /** The bastion's pinned key blob: a bastion presenting another key is not logged in to. */
  readonly hostKey?: Buffer;
  /** Host key algorithms offered to the bastion (the pin's type, or every supported one). */
  readonly hostKeyAlgorithms: readonly string[];
  /** Where the bastion is to forward the channel: the node behind it. */
  readonly to: { readonly host: string; readonly port: number };
  readonly timeoutMs: number;
}

export interface Tunnel {
  /** The forwarded channel: SSH to the node is spoken over it (ProbeOptions.sock). */
  readonly stream: Duplex;
  close(): void;
}

/**
 * Logs in to a bastion and opens a direct-tcpip channel to the node behind it, as the command plugin's
 * `connection.proxy` does; runs nothing on the bastion. Rejects naming what failed (host key, login,
 * forwarding, deadline) and closes the bastion connection then.
 */
export function openTunnel(opts: TunnelOptions): Promise<Tunnel> {
  return new Promise<Tunnel>((resolve, reject) => {
    const client = new Client();
    let done = false;
    let keyRefused = false;
    const settle = (err: Error | undefined, stream?: Duplex) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        client.end();
        reject(err);
      } else resolve({ stream: stream!, close: () => client.end() });
    };
    const timer = setTimeout(() => settle(new Error(`the bastion did not open a channel to ${opts.to.host}:${opts.to.port} within ${opts.timeoutMs / 1000} s`)), opts.timeoutMs);
    client.on("ready", () => {
      client.forwardOut("127.0.0.1", 0, opts.to.host, opts.to.port, (err, stream) => {
        if (err) return settle(new Error(`the bastion refused to forward to ${opts.to.host}:${opts.to.port}: ${err.message}`));
        settle(undefined, stream);
      });
    });
    client.on("error", (e: Error & { level?: string }) => {
      if (keyRefused) return settle(new Error("the bastion presented another host key than the pin"));
      if (e.level === "client-authentication") return settle(new Error(`cannot log in to the bastion as ${opts.user} with the SSH private key (${e.message})`));
      settle(new Error(`the bastion connection failed: ${e.message}`));
    });
    client.on("close", () => settle(new Error("the bastion closed the connection")));
    try {
      client.connect({
        host: opts.host, port: opts.port, username: opts.user, privateKey: opts.privateKey, readyTimeout: 0,
        ident: "registry_trust_precheck",
        algorithms: { serverHostKey: [...opts.hostKeyAlgorithms] as ServerHostKeyAlgorithm[] },
        hostVerifier: (key: Buffer) => {
          keyRefused = opts.hostKey !== undefined && !key.equals(opts.hostKey);
          return !keyRefused;
        },
      });
    } catch (e) {
      // ssh2 throws synchronously for a key it cannot parse; its message says nothing secret.
      settle(new Error(`the SSH private key cannot be used to log in to the bastion: ${(e as Error).message}`));
    }
  });
}
