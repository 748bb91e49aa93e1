import { isIP } from "node:net";

/*
 * Host names and ports end up in file paths on nodes (certs.d/<host:port>), in TOML/YAML keys and in
 * generated shell, so they are validated strictly here, once, before anything is rendered or touched.
 */

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** Why `host` is not a plain DNS name or IP literal, or undefined when it is one. */
export function hostProblem(host: string): string | undefined {
  if (host.length === 0) return "is empty";
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(host)) return "has a URL scheme; give only the host name";
  if (/[/?#@\s'"`$;&|<>\\(){}*!]/.test(host)) return "contains characters that are not allowed in a host name (no path, user, spaces or shell metacharacters)";
  if (isIP(host)) return undefined;
  if (host.includes(":")) return "contains ':' (put the port in its own field, or use host:port where a single string is expected)";
  if (host.length > 253) return "is longer than 253 characters";
  const labels = host.replace(/\.$/, "").split(".");
  if (labels.some((l) => !LABEL.test(l))) return "is not a valid DNS name (labels of letters, digits and inner hyphens, at most 63 characters each)";
  if (/^\d+$/.test(labels[labels.length - 1])) return "looks like an IP address but is not a valid one";
  return undefined;
}

export function portProblem(port: unknown): string | undefined {
  return typeof port === "number" && Number.isInteger(port) && port >= 1 && port <= 65535 ? undefined : "must be an integer from 1 to 65535";
}

/**
 * Parses "host[:port]" or "[v6]:port". The port defaults to `defaultPort`. Throws an Error whose message
 * says what is wrong; callers add the field name.
 */
export function parseEndpoint(text: string, defaultPort = 443): Endpoint {
  let host = text;
  let port: number = defaultPort;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) {
    host = v6[1];
    if (v6[2] !== undefined) port = Number(v6[2]);
    if (isIP(host) !== 6) throw new Error(`"${text}" has brackets but no IPv6 address inside`);
  } else if (isIP(text) !== 6) {
    const m = /^(.*):(\d*)$/.exec(text);
    if (m) {
      host = m[1];
      if (m[2] === "") throw new Error(`"${text}" ends with ':' but has no port`);
      port = Number(m[2]);
    }
  }
  const hp = hostProblem(host);
  if (hp) throw new Error(`host "${host}" ${hp}`);
  const pp = portProblem(port);
  if (pp) throw new Error(`port ${port} ${pp}`);
  return { host: host.toLowerCase().replace(/\.$/, ""), port };
}

/**
 * The registry part of an image reference, which is also the certs.d directory name containerd, Docker and
 * CRI-O look up: the port is part of it unless it is 443, IPv6 literals are bracketed.
 */
export function endpointKey(e: Endpoint): string {
  const host = isIP(e.host) === 6 ? `[${e.host}]` : e.host;
  return e.port === 443 ? host : `${host}:${e.port}`;
}
