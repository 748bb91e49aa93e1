import { createHash, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, verify, KeyObject } from "node:crypto";
import * as net from "node:net";
import { fingerprint } from "./host-key";

/*
 * Just enough of the SSH transport (RFC 4253, curve25519-sha256 of RFC 8731) to learn, within a deadline,
 * whether a host speaks SSH and which host key it proves it holds: TCP connect, version banners, KEXINIT,
 * one ECDH exchange, and the signature over the exchange hash checked with the presented key. It stops
 * before NEWKEYS: no encryption, no login, nothing runs on the host. (With the ssh2 npm package this whole
 * file would be `new Client().connect({ hostVerifier, readyTimeout })` stopped at the host key callback.)
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
}

/** Host key algorithms this probe can verify. RSA only with SHA-2, as OpenSSH ≥ 8.8 signs. */
export const VERIFIABLE_ALGORITHMS = [
  "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256",
] as const;

const KEX = ["curve25519-sha256", "curve25519-sha256@libssh.org"];
const MSG = { DISCONNECT: 1, IGNORE: 2, UNIMPLEMENTED: 3, DEBUG: 4, KEXINIT: 20, KEX_ECDH_INIT: 30, KEX_ECDH_REPLY: 31 } as const;
const CLIENT_VERSION = "SSH-2.0-registry_trust_precheck";

// --- wire encoding -------------------------------------------------------------------------------------

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const sshString = (b: Buffer | string) => {
  const buf = typeof b === "string" ? Buffer.from(b, "latin1") : b;
  return Buffer.concat([u32(buf.length), buf]);
};
const nameList = (names: readonly string[]) => sshString(names.join(","));
/** mpint of an unsigned big-endian number. */
function mpint(unsigned: Buffer): Buffer {
  let i = 0;
  while (i < unsigned.length && unsigned[i] === 0) i++;
  let v = unsigned.subarray(i);
  if (v.length > 0 && v[0] & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return sshString(v);
}

class Reader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}
  byte(): number {
    if (this.off + 1 > this.buf.length) throw new Error("truncated message");
    return this.buf[this.off++];
  }
  bytes(n: number): Buffer {
    if (this.off + n > this.buf.length) throw new Error("truncated message");
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return b;
  }
  uint32(): number {
    return this.bytes(4).readUInt32BE(0);
  }
  string(): Buffer {
    return this.bytes(this.uint32());
  }
  text(): string {
    return this.string().toString("latin1");
  }
  names(): string[] {
    const s = this.text();
    return s === "" ? [] : s.split(",");
  }
}

function packet(payload: Buffer): Buffer {
  // padding ≥ 4 and packet_length + 4 a multiple of 8 (the cipher block size before NEWKEYS).
  let pad = 8 - ((payload.length + 5) % 8);
  if (pad < 4) pad += 8;
  return Buffer.concat([u32(payload.length + pad + 1), Buffer.from([pad]), payload, randomBytes(pad)]);
}

// --- host keys and signatures --------------------------------------------------------------------------

const b64url = (b: Buffer) => b.toString("base64url");
const unsigned = (b: Buffer) => {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
};
const CURVES: Record<string, { crv: string; size: number; hash: string }> = {
  nistp256: { crv: "P-256", size: 32, hash: "sha256" },
  nistp384: { crv: "P-384", size: 48, hash: "sha384" },
  nistp521: { crv: "P-521", size: 66, hash: "sha512" },
};

function publicKey(blob: Buffer): { type: string; key: KeyObject; curve?: (typeof CURVES)[string] } {
  const r = new Reader(blob);
  const type = r.text();
  if (type === "ssh-ed25519") {
    return { type, key: createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64url(r.string()) }, format: "jwk" }) };
  }
  if (type.startsWith("ecdsa-sha2-")) {
    const curve = CURVES[r.text()];
    const q = r.string();
    if (!curve || q[0] !== 4 || q.length !== 1 + 2 * curve.size) throw new Error(`unsupported ${type} key`);
    const x = q.subarray(1, 1 + curve.size);
    const y = q.subarray(1 + curve.size);
    return { type, curve, key: createPublicKey({ key: { kty: "EC", crv: curve.crv, x: b64url(x), y: b64url(y) }, format: "jwk" }) };
  }
  if (type === "ssh-rsa") {
    const e = unsigned(r.string());
    const n = unsigned(r.string());
    return { type, key: createPublicKey({ key: { kty: "RSA", n: b64url(n), e: b64url(e) }, format: "jwk" }) };
  }
  throw new Error(`unsupported host key type ${type}`);
}

/** Does `signature` (the SSH signature blob) sign `data` with the host key `blob` under `algorithm`? */
function verifySignature(algorithm: string, blob: Buffer, data: Buffer, signature: Buffer): boolean {
  const { type, key, curve } = publicKey(blob);
  const s = new Reader(signature);
  const sigAlg = s.text();
  const sig = s.string();
  if (sigAlg !== algorithm) return false;
  if (type === "ssh-ed25519") return verify(null, data, key, sig);
  if (curve) {
    const rs = new Reader(sig);
    const pad = (b: Buffer) => {
      const v = unsigned(b);
      return v.length > curve.size ? v : Buffer.concat([Buffer.alloc(curve.size - v.length), v]);
    };
    const raw = Buffer.concat([pad(rs.string()), pad(rs.string())]);
    return verify(curve.hash, data, { key, dsaEncoding: "ieee-p1363" }, raw);
  }
  if (type === "ssh-rsa" && (algorithm === "rsa-sha2-256" || algorithm === "rsa-sha2-512")) {
    return verify(algorithm === "rsa-sha2-256" ? "sha256" : "sha512", data, key, sig);
  }
  return false;
}

// --- the probe -----------------------------------------------------------------------------------------

/**
 * Connects to host:port and runs the key exchange far enough to see the host key the server proves it
 * holds. Rejects with a ProbeError naming the stage that failed or stalled (no banner, no KEXINIT, no
 * common algorithm, bad signature, deadline); always closes the socket.
 */
export function probeHostKey(opts: ProbeOptions): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve, reject) => {
    let stage: ProbeStage = "connect";
    let done = false;
    let inbox = Buffer.alloc(0);
    let banner: string | undefined;
    let serverKexInit: Buffer | undefined;
    let clientKexInit: Buffer | undefined;
    let algorithm: string | undefined;
    const ecdh = generateKeyPairSync("x25519");
    const qc = Buffer.from(ecdh.publicKey.export({ format: "jwk" }).x!, "base64url");

    const socket = net.connect({ host: opts.host, port: opts.port });
    const finish = (err: ProbeError | undefined, result?: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
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

    const send = (payload: Buffer) => socket.write(packet(payload));

    const onPacket = (payload: Buffer) => {
      const type = payload[0];
      if (type === MSG.IGNORE || type === MSG.DEBUG || type === MSG.UNIMPLEMENTED) return;
      const r = new Reader(payload.subarray(1));
      if (type === MSG.DISCONNECT) {
        r.uint32();
        return fail(`the server disconnected: ${r.text()}`);
      }
      if (type === MSG.KEXINIT && !serverKexInit) {
        serverKexInit = payload;
        r.bytes(16);
        const kex = r.names();
        const hostKeyAlgs = r.names();
        const common = KEX.find((k) => kex.includes(k));
        if (!common) return fail(`no common key exchange algorithm (the server offers ${kex.join(", ")}; this check speaks ${KEX.join(", ")})`);
        algorithm = opts.hostKeyAlgorithms.find((a) => hostKeyAlgs.includes(a));
        if (!algorithm) {
          return fail(`no common host key algorithm: the server offers ${hostKeyAlgs.join(", ") || "none"}, the check (like the command plugin) accepts only ${opts.hostKeyAlgorithms.join(", ")}`);
        }
        send(Buffer.concat([Buffer.from([MSG.KEX_ECDH_INIT]), sshString(qc)]));
        return;
      }
      if (type === MSG.KEX_ECDH_REPLY && serverKexInit && clientKexInit && algorithm) {
        const ks = r.string();
        const qs = r.string();
        const sig = r.string();
        if (qs.length !== 32) return fail("the server's curve25519 public value is not 32 bytes");
        const serverPub = createPublicKey({ key: { kty: "OKP", crv: "X25519", x: b64url(qs) }, format: "jwk" });
        const k = diffieHellman({ privateKey: ecdh.privateKey, publicKey: serverPub });
        const h = createHash("sha256").update(Buffer.concat([
          sshString(CLIENT_VERSION), sshString(banner!), sshString(clientKexInit), sshString(serverKexInit),
          sshString(ks), sshString(qc), sshString(qs), mpint(k),
        ])).digest();
        let ok: boolean;
        try {
          ok = verifySignature(algorithm, ks, h, sig);
        } catch (e) {
          return fail(`cannot read the server's host key: ${(e as Error).message}`);
        }
        if (!ok) return fail(`the server's ${algorithm} signature over the key exchange does not verify: it does not hold the host key it presented`);
        return finish(undefined, { banner: banner!, algorithm, hostKey: ks, fingerprint: fingerprint(ks) });
      }
      fail(`unexpected SSH message ${type} during the key exchange`);
    };

    const onData = (chunk: Buffer) => {
      inbox = Buffer.concat([inbox, chunk]);
      try {
        while (!done && banner === undefined) {
          // RFC 4253 4.2: the server may send other lines before its version line.
          const nl = inbox.indexOf(0x0a);
          if (nl < 0) {
            if (inbox.length > 8192) return fail("no SSH version line in the first 8 KiB the server sent: this is not an SSH server");
            return;
          }
          const line = inbox.subarray(0, nl).toString("latin1").replace(/\r$/, "");
          inbox = inbox.subarray(nl + 1);
          if (line.startsWith("SSH-")) {
            if (!/^SSH-(2\.0|1\.99)-/.test(line)) return fail(`the server speaks an SSH protocol version this check does not: ${line.slice(0, 80)}`);
            banner = line;
            stage = "key exchange";
            clientKexInit = Buffer.concat([
              Buffer.from([MSG.KEXINIT]), randomBytes(16),
              nameList(KEX), nameList(opts.hostKeyAlgorithms),
              nameList(["aes128-ctr", "aes256-ctr", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]),
              nameList(["aes128-ctr", "aes256-ctr", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]),
              nameList(["hmac-sha2-256-etm@openssh.com", "hmac-sha2-256"]), nameList(["hmac-sha2-256-etm@openssh.com", "hmac-sha2-256"]),
              nameList(["none"]), nameList(["none"]), nameList([]), nameList([]),
              Buffer.from([0]), u32(0),
            ]);
            send(clientKexInit);
          }
        }
        while (!done && inbox.length >= 5) {
          const len = inbox.readUInt32BE(0);
          if (len < 5 || len > 35_000) return fail(`the server sent a malformed SSH packet (length ${len})`);
          if (inbox.length < 4 + len) return;
          const padLen = inbox[4];
          const payload = inbox.subarray(5, 4 + len - padLen);
          inbox = inbox.subarray(4 + len);
          onPacket(payload);
        }
      } catch (e) {
        fail(`the server sent a malformed SSH message: ${(e as Error).message}`);
      }
    };

    socket.on("connect", () => {
      stage = "banner";
      socket.write(`${CLIENT_VERSION}\r\n`);
    });
    socket.on("data", onData);
    socket.on("error", (e: NodeJS.ErrnoException) => fail(stage === "connect" ? `cannot connect: ${e.code ?? e.message}` : `the connection failed: ${e.code ?? e.message}`));
    socket.on("close", () => fail(stage === "banner" ? "the server closed the connection without an SSH banner" : "the server closed the connection during the key exchange"));
  });
}
