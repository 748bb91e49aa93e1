import { createHash } from "node:crypto";

/*
 * Pinned SSH host keys as ssh-keyscan prints them without the host ("ssh-ed25519 AAAA…"). The command plugin
 * (upstream pulumi-command 1.2.1) offers exactly the pinned key's type as its host key algorithm; for an RSA
 * key that is "ssh-rsa", the SHA-1 signature OpenSSH 8.8 and later refuse, so an RSA pin cannot work there
 * and is refused before anything runs.
 */

/** Host key types a pin may have: what the command plugin can verify against a current OpenSSH. */
export const PINNABLE_KEY_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"] as const;
export type PinnableKeyType = (typeof PINNABLE_KEY_TYPES)[number];

export interface HostKey {
  readonly type: PinnableKeyType;
  /** The key blob (RFC 4253 wire format) the server presents. */
  readonly blob: Buffer;
  /** "SHA256:…" as ssh-keygen -l prints it. */
  readonly fingerprint: string;
}

const LINE = /^([a-z0-9@.-]+) ([A-Za-z0-9+/]+={0,3})(?: .*)?$/;

export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** Why this type cannot be pinned, and the fix; undefined for a pinnable type. */
export function unpinnableReason(type: string): string | undefined {
  if ((PINNABLE_KEY_TYPES as readonly string[]).includes(type)) return undefined;
  if (type === "ssh-rsa") {
    return "is an RSA host key: the command plugin (pulumi-command 1.2.1) then offers only the \"ssh-rsa\" (SHA-1) host key algorithm, which OpenSSH 8.8 and later refuse (\"no common algorithm for host key\"), so every run against this node would fail. Pin the node's ed25519 (or ECDSA) key instead: ssh-keyscan -t ed25519 HOST, checked out of band";
  }
  return `is a ${type} host key, which cannot be pinned (pin one of ${PINNABLE_KEY_TYPES.join(", ")}: ssh-keyscan -t ed25519 HOST, checked out of band)`;
}

/** Parses a pin; throws a message saying what is wrong and how to fix it. */
export function parseHostKey(line: string): HostKey {
  const m = LINE.exec(line.trim());
  if (!m) throw new Error("is not a public host key line such as \"ssh-ed25519 AAAAC3…\" (ssh-keyscan -t ed25519 HOST | cut -d' ' -f2-)");
  const reason = unpinnableReason(m[1]);
  if (reason) throw new Error(reason);
  const blob = Buffer.from(m[2], "base64");
  // The blob starts with its own type name: a line whose name and blob disagree is a copy-paste accident.
  const len = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (len < 0 || blob.subarray(4, 4 + len).toString("latin1") !== m[1]) {
    throw new Error(`is not a valid ${m[1]} key: the base64 blob does not hold a ${m[1]} key (copy the whole line from ssh-keyscan)`);
  }
  return { type: m[1] as PinnableKeyType, blob, fingerprint: fingerprint(blob) };
}
