import { isUnknown, record } from "./resources";

/*
 * @pulumi/command's remote.Command accepts any host key when `connection.hostKey` is empty, and so does each
 * `connection.proxy` hop: whoever answers at the address gets our push and a root shell on the node, and a
 * man in the middle on the bastion hop can relay our login to the real bastion.
 */

const HOST_KEY_LINE = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+={0,3}(\s.*)?$/;

function hopProblem(hop: Readonly<Record<string, unknown>>, label: string, setting: string): string | undefined {
  const key = hop.hostKey;
  if (isUnknown(key)) return undefined;
  const host = typeof hop.host === "string" ? hop.host : "?";
  const at = `${label} ${typeof hop.user === "string" ? `${hop.user}@` : ""}${host}`;
  const fix = `pin it with the output of \`ssh-keyscan -t ed25519 ${host} | cut -d' ' -f2-\` (registry-trust: ${setting})`;
  if (typeof key !== "string" || key.trim() === "") return `${at}: hostKey is not set, so any host key is accepted; ${fix}`;
  if (!HOST_KEY_LINE.test(key.trim())) return `${at}: hostKey "${key.slice(0, 40)}" is not a public host key line ("ssh-ed25519 AAAA…"); ${fix}`;
  return undefined;
}

/** Problems with the host key pinning of a command:remote:Command's `connection` (and its proxy hops). */
export function hostKeyProblems(props: Readonly<Record<string, unknown>>): string[] {
  if (isUnknown(props.connection)) return [];
  const out: string[] = [];
  let hop = record(props.connection);
  if (!hop) return ["connection is missing"];
  let label = "connection";
  let setting = "nodes[].hostKey";
  // A proxy may itself have a proxy; every hop is a separate SSH handshake.
  while (hop) {
    const p = hopProblem(hop, label, setting);
    if (p) out.push(p);
    if (isUnknown(hop.proxy)) break;
    hop = record(hop.proxy);
    label = `${label}.proxy`;
    setting = setting.replace("hostKey", "proxy.hostKey");
  }
  return out;
}
