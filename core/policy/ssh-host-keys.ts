import { unpinnableReason } from "../ssh/host-key";
import { isUnknown, record } from "./resources";

/*
 * @pulumi/command's remote.Command accepts any host key when `connection.hostKey` is empty, and so does each
 * `connection.proxy` hop: whoever answers at the address gets our push and a root shell on the node, and a
 * man in the middle on the bastion hop can relay our login to the real bastion. A pinned RSA key is no better:
 * the plugin then offers only "ssh-rsa" (SHA-1), which OpenSSH 8.8 and later refuse, so the node never works.
 */

const HOST_KEY_LINE = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+={0,3}(\s.*)?$/;

export interface HostKeyFindings {
  /** Hops without a pin (allowed only by registry-trust:allowUnpinnedHostKeys in a lab). */
  readonly unpinned: string[];
  /** Pins that are malformed or of a type the plugin cannot use (RSA): wrong in every stack. */
  readonly invalid: string[];
}

function hopFinding(hop: Readonly<Record<string, unknown>>, label: string, setting: string): { kind: keyof HostKeyFindings; text: string } | undefined {
  const key = hop.hostKey;
  if (isUnknown(key)) return undefined;
  const host = typeof hop.host === "string" ? hop.host : "?";
  const at = `${label} ${typeof hop.user === "string" ? `${hop.user}@` : ""}${host}`;
  const fix = `pin it with the output of \`ssh-keyscan -t ed25519 ${host} | cut -d' ' -f2-\` (registry-trust: ${setting})`;
  if (typeof key !== "string" || key.trim() === "") return { kind: "unpinned", text: `${at}: hostKey is not set, so any host key is accepted; ${fix}` };
  if (!HOST_KEY_LINE.test(key.trim())) return { kind: "invalid", text: `${at}: hostKey "${key.slice(0, 40)}" is not a public host key line ("ssh-ed25519 AAAA…"); ${fix}` };
  const reason = unpinnableReason(key.trim().split(" ")[0]);
  if (reason) return { kind: "invalid", text: `${at}: hostKey ${reason.replace(/HOST/g, host)}` };
  return undefined;
}

type Finding = { kind: keyof HostKeyFindings; text: string };

/** Findings hop by hop, in order from the first hop. */
function findings(props: Readonly<Record<string, unknown>>): Finding[] {
  if (isUnknown(props.connection)) return [];
  const out: Finding[] = [];
  let hop = record(props.connection);
  if (!hop) return [{ kind: "invalid", text: "connection is missing" }];
  let label = "connection";
  let setting = "nodes[].hostKey";
  // A proxy may itself have a proxy; every hop is a separate SSH handshake.
  while (hop) {
    const f = hopFinding(hop, label, setting);
    if (f) out.push(f);
    if (isUnknown(hop.proxy)) break;
    hop = record(hop.proxy);
    label = `${label}.proxy`;
    setting = setting.replace("hostKey", "proxy.hostKey");
  }
  return out;
}

/** Host key findings of a command:remote:Command's `connection` (and its proxy hops), by kind. */
export function hostKeyFindings(props: Readonly<Record<string, unknown>>): HostKeyFindings {
  const all = findings(props);
  return { unpinned: all.filter((f) => f.kind === "unpinned").map((f) => f.text), invalid: all.filter((f) => f.kind === "invalid").map((f) => f.text) };
}

/** Every host key problem of a command:remote:Command's `connection`, unpinned hops and bad pins alike. */
export function hostKeyProblems(props: Readonly<Record<string, unknown>>): string[] {
  return findings(props).map((f) => f.text);
}
