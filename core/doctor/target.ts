import { isIP } from "node:net";
import { Endpoint, endpointKey, parseEndpoint } from "../endpoint";

/*
 * What `doctor` is pointed at, validated before any connection: these values end up on the ssh command
 * line and inside the probe script, so anything outside a strict grammar is refused with a message that
 * names the flag, the value, what is wrong and how to fix it.
 */

export interface SshNode {
  readonly user: string;
  readonly host: string;
  readonly port: number;
}

export interface DoctorTarget {
  readonly node: SshNode;
  readonly registry: Endpoint;
  /** Image on the registry to pull through CRI, when given. */
  readonly image?: string;
}

export class TargetError extends Error {}

const USER = /^[a-z_][a-z0-9_.-]{0,31}$/i;
const REPOSITORY = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Parses --node ssh://USER@HOST[:PORT]. */
export function parseNode(value: string): SshNode {
  const bad = (what: string, fix: string) => new TargetError(`--node "${value}" ${what}; ${fix}`);
  const m = /^ssh:\/\/([^@/]*)@([^/?#]*)$/.exec(value);
  if (!m) throw bad("is not an ssh URL", "use ssh://USER@HOST[:PORT], e.g. ssh://root@10.0.0.5:22");
  const [, user, hostPort] = m;
  if (!USER.test(user)) throw bad(`has user "${user}", which is not a login name`, "use letters, digits, '_', '.', '-' (at most 32, not starting with a digit or '-'), without a password");
  let endpoint: Endpoint;
  try {
    endpoint = parseEndpoint(hostPort, 22);
  } catch (e) {
    throw bad((e as Error).message, "use ssh://USER@HOST[:PORT] with a DNS name or IP address (IPv6 in brackets)");
  }
  return { user, host: endpoint.host, port: endpoint.port };
}

/** Parses --registry HOST[:PORT] (443 when omitted, as in image references). */
export function parseRegistry(value: string): Endpoint {
  try {
    return parseEndpoint(value);
  } catch (e) {
    throw new TargetError(`--registry "${value}": ${(e as Error).message}; give HOST[:PORT] exactly as in image references, e.g. registry.example:5000`);
  }
}

/**
 * Parses --image: a reference on --registry (registry/repository[:tag][@sha256:digest]). An image on
 * another registry would test a different certificate, so it is refused.
 */
export function parseImage(value: string, registry: Endpoint): string {
  const key = endpointKey(registry);
  const bad = (what: string) => new TargetError(`--image "${value}" ${what}; give ${key}/REPOSITORY[:TAG], e.g. ${key}/library/pause:3.9`);
  if (/\s/.test(value)) throw bad("contains white space");
  const slash = value.indexOf("/");
  if (slash < 0) throw bad(`names no registry (it would be pulled from docker.io, not ${key})`);
  const reg = value.slice(0, slash);
  let rest = value.slice(slash + 1);
  if (reg.toLowerCase() !== key) throw bad(`is on "${reg}", not on --registry ${key}`);
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(`has digest "${digest}", which is not sha256:<64 hex digits>`);
  }
  const colon = rest.lastIndexOf(":");
  const repo = colon >= 0 ? rest.slice(0, colon) : rest;
  const tag = colon >= 0 ? rest.slice(colon + 1) : undefined;
  if (!REPOSITORY.test(repo)) throw bad(`has repository "${repo}", which is not lowercase path components (letters, digits, '.', '_', '-')`);
  if (tag !== undefined && !TAG.test(tag)) throw bad(`has tag "${tag}", which is not 1-128 letters, digits, '_', '.', '-'`);
  return `${key}/${repo}${tag !== undefined ? `:${tag}` : ""}${digest ? `@${digest}` : ""}`;
}

/** ssh's destination for a node (IPv6 without brackets; ssh takes the port separately). */
export function sshDestination(n: SshNode): string {
  return `${n.user}@${n.host}`;
}

/** The node as the user wrote it, normalised, for reports. */
export function nodeLabel(n: SshNode): string {
  return `ssh://${n.user}@${isIP(n.host) === 6 ? `[${n.host}]` : n.host}:${n.port}`;
}
