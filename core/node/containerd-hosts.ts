import { stringify } from "smol-toml";
import { RegistryEndpoint } from "../config/model";
import { endpointKey, parseEndpoint } from "../endpoint";

/** Start of the first line of every file we write; how a later run (and `remove`) recognises its files. */
export const MANAGED_MARKER = "# Managed by registry-trust";

/** The full marker line prefix for one owner (see NodeScriptInput.owner). */
export function managedMarker(owner = "default"): string {
  return `${MANAGED_MARKER} (owner ${owner})`;
}

export const CONTAINERD_CERTS_DIR = "/etc/containerd/certs.d";

/** Upstreams whose registry API is not served under their image-reference name. */
const UPSTREAM_SERVERS: Record<string, string> = { "docker.io": "https://registry-1.docker.io" };

export interface HostsFile {
  /** Directory name under certs.d: the registry part of image references ("host:port", or "host" on 443). */
  readonly dir: string;
  readonly content: string;
}

/** The CA file containerd uses for an endpoint, inside that endpoint's own certs.d directory. */
export function containerdCaPath(e: RegistryEndpoint, certsDir = CONTAINERD_CERTS_DIR): string {
  return `${certsDir}/${endpointKey(e)}/ca.crt`;
}

function hostEntry(e: RegistryEndpoint, certsDir: string) {
  return { capabilities: ["pull", "resolve"], ca: containerdCaPath(e, certsDir) };
}

/**
 * containerd hosts.toml files (read per pull, no restart): one per registry endpoint, trusting the
 * bundle for it, and one per mirrored upstream listing our endpoints as its mirrors, in config order.
 */
export function containerdHostsFiles(endpoints: readonly RegistryEndpoint[], certsDir = CONTAINERD_CERTS_DIR, owner = "default"): HostsFile[] {
  const marker = managedMarker(owner);
  const files: HostsFile[] = endpoints.map((e) => {
    const key = endpointKey(e);
    return {
      dir: key,
      content: `${marker}: trust for ${key}.\n${stringify({ server: `https://${key}`, host: { [`https://${key}`]: hostEntry(e, certsDir) } })}`,
    };
  });
  const upstreams = new Map<string, RegistryEndpoint[]>();
  for (const e of endpoints) for (const u of e.mirrorOf) upstreams.set(u, [...(upstreams.get(u) ?? []), e]);
  for (const [upstream, mirrors] of upstreams) {
    const dir = endpointKey(parseEndpoint(upstream));
    const server = UPSTREAM_SERVERS[dir] ?? `https://${dir}`;
    const host = Object.fromEntries(mirrors.map((m) => [`https://${endpointKey(m)}`, hostEntry(m, certsDir)]));
    files.push({ dir, content: `${marker}: ${dir} pulled through ${mirrors.map(endpointKey).join(", ")}.\n${stringify({ server, host })}` });
  }
  return files;
}
