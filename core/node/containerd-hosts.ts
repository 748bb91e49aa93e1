import type * as SmolToml from "smol-toml";
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
  // Loaded here, not at module level: ControlPlaneTrust/WorkerTrust's dynamic providers capture this module
  // by value from a checkout, and @pulumi/pulumi's closure serializer since pulumi/pulumi#22388 (in 3.270.0
  // and 3.276.0, not in 3.260.0) mistakes smol-toml's CommonJS exports (a `default` holding every named
  // export) for an `import * as` wrapper, misses it in the require cache and serializes it by value, which
  // fails on its reference to the `Temporal` global. A `require` inside a function is left for run time.
  const { stringify } = require("smol-toml") as typeof SmolToml;
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
