import { checkDaemonSetImage } from "../bootstrap/daemonset";
import { ClusterConfig, DaemonSetConfig, RegistryEndpoint, ServingTarget } from "./model";
import { Reader, checkFields, hostField, hostKeyField, isObj, portField, stringField } from "./reader";
import { PROJECT, SERVING_TARGET_KINDS } from "./schema";

/*
 * The two keys that point at a cluster or host outside the node list: where the serving certificate is
 * switched (servingTarget) and the DaemonSet option (daemonset). Both name a clusters[] entry rather than
 * carrying their own kubeconfig, so one cluster has one set of credentials in the stack.
 */

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const UNIX_USER = /^[a-z_][a-z0-9_-]{0,31}$/;
/** An absolute path of plain characters: it is written into the generated shell (single-quoted). */
export const SAFE_PATH = /^\/[A-Za-z0-9._+@-]+(\/[A-Za-z0-9._+@-]+)*$/;
/** One word of the reload command: no quotes, spaces, `$`, globs or other shell syntax. */
export const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;
const DEFAULT_VERIFY_SECONDS = 120;

function clusterRef(r: Reader, path: string, v: unknown, clusters: readonly ClusterConfig[]): string | undefined {
  if (typeof v !== "string" || !clusters.some((c) => c.name === v)) {
    r.issue(path, v, `must name one of clusters[].name (${clusters.map((c) => c.name).join(", ") || "no clusters configured"}).`, `Add the cluster to ${PROJECT}:clusters (name, kubeconfig, context), then set ${path} to its name.`);
    return undefined;
  }
  return v;
}

function verifySeconds(r: Reader, path: string, v: unknown): number {
  if (v === undefined) return DEFAULT_VERIFY_SECONDS;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 3600) {
    r.issue(path, v, "must be an integer from 0 to 3600 (0 = do not wait for the registry to serve the new certificate).", `pulumi config set --path '${PROJECT}:${path}' ${DEFAULT_VERIFY_SECONDS}`);
    return DEFAULT_VERIFY_SECONDS;
  }
  return v;
}

/** Why `p` is not an absolute, normalized path ("/etc/registry/../../etc/shadow" is not the file it seems). */
export function pathProblem(p: string): string | undefined {
  if (!p.startsWith("/")) return "is not an absolute path";
  if (p.includes("//")) return "contains an empty segment (\"//\")";
  const segments = p.slice(1).split("/");
  if (segments.some((s) => s === "." || s === "..")) return "is not normalized: it has a \".\" or \"..\" segment, so it names another file than it appears to";
  if (p.length > 1 && p.endsWith("/")) return "ends with \"/\": it names a directory, not a file";
  if (!SAFE_PATH.test(p)) return "has characters other than letters, digits and . _ + @ - (no spaces or shell characters)";
  return undefined;
}

function absPath(r: Reader, path: string, v: unknown): string | undefined {
  const example = "/etc/docker/registry/tls.crt";
  if (v === undefined) {
    r.issue(path, v, "is required.", `pulumi config set --path '${PROJECT}:${path}' ${example}`);
    return undefined;
  }
  const problem = typeof v === "string" ? pathProblem(v) : "is not a string";
  if (problem) {
    r.issue(path, v, `${problem}: it must be an absolute, normalized path.`, `Give the file's real absolute path without ".", ".." or "//" segments, e.g. pulumi config set --path '${PROJECT}:${path}' ${example}`);
    return undefined;
  }
  return v as string;
}

function reloadCommand(r: Reader, path: string, v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0) {
    r.issue(path, v, "must be the reload command as a non-empty list of words (argv), e.g. [systemctl, reload, docker-registry].", `Write it in the stack file: ${path}: [systemctl, reload, docker-registry]`);
    return [];
  }
  const words: string[] = [];
  v.forEach((w, i) => {
    if (typeof w !== "string" || !SAFE_WORD.test(w)) {
      r.issue(`${path}[${i}]`, w, "must be a plain word (letters, digits and _ @ % + = : , . / -): each word is passed as one quoted argument, so no spaces, quotes, $ or shell operators.", "Put anything more complex into a script on the registry host and give its path.");
    } else words.push(w);
  });
  return words;
}

/** The serving target. A hostFiles target always needs its host key pinned: the serving private key goes there. */
export function servingTarget(r: Reader, clusters: readonly ClusterConfig[]): ServingTarget {
  const v = r.json("servingTarget");
  const key = "servingTarget";
  if (!isObj(v)) {
    r.issue(key, v, "must be a map with a kind field.", `Write it in the stack file, e.g. ${key}: {kind: none}`);
    return { kind: "none" };
  }
  const kind = v.kind;
  if (!SERVING_TARGET_KINDS.includes(kind as never)) {
    r.issue(`${key}.kind`, kind, `must be one of ${SERVING_TARGET_KINDS.join(", ")}.`, `pulumi config set --path '${PROJECT}:${key}.kind' none`);
    return { kind: "none" };
  }
  if (kind === "none") {
    checkFields(r, key, v, ["kind"]);
    return { kind: "none" };
  }
  if (kind === "kubernetesSecret") {
    checkFields(r, key, v, ["kind", "cluster", "namespace", "name", "verifyTimeoutSeconds"]);
    const cluster = clusterRef(r, `${key}.cluster`, v.cluster, clusters);
    const namespace = stringField(r, `${key}.namespace`, v.namespace ?? "default", DNS1123, "a Kubernetes namespace (DNS-1123 label)");
    if (v.name === undefined) r.issue(`${key}.name`, undefined, "is required: the name of the registry's TLS Secret.", `pulumi config set --path '${PROJECT}:${key}.name' registry-tls`);
    const name = stringField(r, `${key}.name`, v.name, DNS_SUBDOMAIN, "a Secret name (DNS-1123 subdomain)");
    const verifyTimeoutSeconds = verifySeconds(r, `${key}.verifyTimeoutSeconds`, v.verifyTimeoutSeconds);
    if (!cluster || !namespace || !name) return { kind: "none" };
    return { kind, cluster, namespace, name, verifyTimeoutSeconds };
  }
  checkFields(r, key, v, ["kind", "host", "port", "user", "hostKey", "certPath", "keyPath", "reloadCommand", "verifyTimeoutSeconds"]);
  const host = hostField(r, `${key}.host`, v.host);
  const port = portField(r, `${key}.port`, v.port, 22);
  const user = stringField(r, `${key}.user`, v.user ?? "root", UNIX_USER, "a Unix user name");
  const hostKey = hostKeyField(r, `${key}.hostKey`, v.hostKey, host);
  if (v.hostKey === undefined) {
    // In every stack, allowUnpinnedHostKeys or not: this push carries the registry's private key.
    r.issue(`${key}.hostKey`, undefined, "is required: the serving private key is pushed to this host, so whoever answered at an unpinned address would receive it.", `ssh-keyscan -t ed25519 ${host ?? "HOST"} | cut -d' ' -f2- , check its fingerprint out of band, then pulumi config set --path '${PROJECT}:${key}.hostKey' "ssh-ed25519 AAAA…"`);
  }
  const certPath = absPath(r, `${key}.certPath`, v.certPath);
  const keyPath = absPath(r, `${key}.keyPath`, v.keyPath);
  if (certPath && certPath === keyPath) r.issue(`${key}.keyPath`, keyPath, "is the same file as certPath.", "Give the key its own file.");
  const words = reloadCommand(r, `${key}.reloadCommand`, v.reloadCommand);
  const verifyTimeoutSeconds = verifySeconds(r, `${key}.verifyTimeoutSeconds`, v.verifyTimeoutSeconds);
  if (!host || !user || !hostKey || !certPath || !keyPath || words.length === 0) return { kind: "none" };
  return { kind: "hostFiles", host, port, user, hostKey, certPath, keyPath, reloadCommand: words, verifyTimeoutSeconds };
}

export function daemonSet(r: Reader, clusters: readonly ClusterConfig[], registries: readonly RegistryEndpoint[]): DaemonSetConfig | undefined {
  const v = r.json("daemonset");
  const key = "daemonset";
  if (!isObj(v)) {
    r.issue(key, v, "must be a map {enabled, cluster, namespace, image}.", `Write it in the stack file, e.g. ${key}: {enabled: false}`);
    return undefined;
  }
  checkFields(r, key, v, ["enabled", "cluster", "namespace", "image"]);
  if (v.enabled !== undefined && typeof v.enabled !== "boolean") r.issue(`${key}.enabled`, v.enabled, "must be true or false.", `pulumi config set --path '${PROJECT}:${key}.enabled' true`);
  if (v.enabled !== true) return undefined;
  const cluster = clusterRef(r, `${key}.cluster`, v.cluster, clusters);
  const namespace = stringField(r, `${key}.namespace`, v.namespace ?? "kube-system", DNS1123, "a Kubernetes namespace (DNS-1123 label)");
  let image: string | undefined;
  if (typeof v.image !== "string" || v.image === "") {
    r.issue(`${key}.image`, v.image, "is required: an image with sh and chroot from a registry the nodes already trust.", `pulumi config set --path '${PROJECT}:${key}.image' docker.io/library/busybox:1.36@sha256:…`);
  } else {
    try {
      checkDaemonSetImage(v.image, registries);
      image = v.image;
    } catch (e) {
      r.issue(`${key}.image`, v.image, (e as Error).message, "Pick an image the nodes can pull before they trust the private registry.");
    }
  }
  return cluster && namespace && image ? { cluster, namespace, image } : undefined;
}
