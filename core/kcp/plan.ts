import { createHash } from "node:crypto";
import { OsFamily, RegistryEndpoint } from "../config/model";
import { CONTAINERD_CERTS_DIR, containerdCaPath, containerdHostsFiles } from "../node/containerd-hosts";
import { OS_STORES, OsStore, storeFamily } from "../node/os-stores";
import { KcpObject, KcpVersion } from "./api";
import { kcpError } from "./errors";

/*
 * Pure planning of our entries in a KubeadmControlPlane. `files` is an atomic list shared with other
 * writers (CAPI providers, platform teams), so we merge by path: our entries are replaced or added, every
 * other entry is kept exactly as read. Which paths and commands are ours is recorded on the object itself,
 * written in the same update as the entries, so ownership and content never diverge: one annotation per
 * owner (a Pulumi stack, ownershipKey), so that two stacks writing one object keep each other's entries.
 * The unnamed OWNERSHIP_ANNOTATION is what callers without an owner write (and every release before
 * ownership per stack wrote); a named owner takes over from it only the paths it writes itself.
 */

/** Cluster API's maxLength of files[].content (enforced by the v1.14 CRDs in v1beta1 and v1beta2). */
export const KCP_CONTENT_LIMIT = 10_240;
export const OWNERSHIP_ANNOTATION = "registry-trust.io/control-plane-trust";
export const SECRET_KEY = "ca.crt";
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "registry-trust";
/** Label on our Secrets naming the KCP they belong to, so that stale ones can be found and deleted. */
export const KCP_LABEL = "registry-trust.io/kubeadm-control-plane";

/** One entry of spec.kubeadmConfigSpec.files; other writers' entries may carry any field. */
export interface FileEntry {
  path: string;
  content?: string;
  contentFrom?: { secret: { name: string; key: string } };
  owner?: string;
  permissions?: string;
  [field: string]: unknown;
}

/** What one owner owns on one KCP, as recorded in its annotation (ownershipKey). */
export interface Ownership {
  readonly paths: string[];
  readonly commands: string[];
  readonly bundleHash: string;
  /** The Secret holding the bundle when it is not inline. */
  readonly secret?: string;
  /** notBefore of the bundle's newest certificate (RFC 3339): orders bundles for the Lease fence (core/kcp/fence.ts). */
  readonly issuedAt?: string;
}

export interface TrustSpec {
  readonly endpoints: readonly RegistryEndpoint[];
  readonly bundlePem: string;
  /** Bundles longer than this go to a Secret referenced by contentFrom; capped at KCP_CONTENT_LIMIT. @default 10240 */
  readonly inlineMaxChars?: number;
  /** Also install the bundle into the OS trust store of new control-plane machines (preKubeadmCommands). @default none */
  readonly osTrustStore?: OsFamily;
  /** notBefore of the bundle's newest certificate, recorded with our entries. @default not recorded (no ordering) */
  readonly issuedAt?: string;
}

export interface SecretPlan {
  readonly name: string;
  readonly key: string;
  readonly data: string;
}

/** Our entries for one KCP. */
export interface Desired {
  readonly files: FileEntry[];
  readonly commands: string[];
  readonly secret?: SecretPlan;
  readonly ownership: Ownership;
}

/** Nothing of ours: what `remove` plans towards. */
export const NOTHING: Desired = { files: [], commands: [], ownership: { paths: [], commands: [], bundleHash: "" } };

/**
 * The command copying the bundle into the OS trust store. It only copies a file and re-runs the
 * distribution's update tool, so running it again on the same machine changes nothing. "auto" picks
 * the store by which anchor directory the image has.
 */
export function trustStoreCommand(os: OsFamily, caPath: string): string {
  const install = (s: OsStore) => `mkdir -p ${s.anchorsDir} && cp '${caPath}' ${s.anchorsDir}/registry-trust.${s.ext} && ${s.update}`;
  const family = storeFamily(os);
  if (family !== "auto") return install(OS_STORES[family]);
  return `if [ -d ${OS_STORES.rhel.anchorsDir} ]; then ${install(OS_STORES.rhel)}; ` +
    `elif [ -d ${OS_STORES.suse.anchorsDir} ]; then ${install(OS_STORES.suse)}; ` +
    `else ${install(OS_STORES.debian)}; fi`;
}

/** An object name as a label value: those are at most 63 characters, so long names are hashed. */
export function nameLabelValue(name: string): string {
  return name.length <= 63 ? name : createHash("sha256").update(name).digest("hex").slice(0, 40);
}

/** Labels of our Secrets. */
export function secretLabels(kcpName: string): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY, [KCP_LABEL]: nameLabelValue(kcpName) };
}

/**
 * The same value as core/x509 bundleHash (sha256 of the PEM), computed here because this module is
 * serialized into the dynamic provider, which must not reach the x509 parser.
 */
export function pemHash(pem: string): string {
  return createHash("sha256").update(pem).digest("hex");
}

/**
 * Content-addressed, so a new bundle changes the KCP spec (and rolls out) and an old one is never rewritten.
 * `kind` tells apart the Secrets of a KCP ("ca") and of a MachineDeployment ("md-ca") of the same name,
 * which are pruned separately.
 */
export function secretName(ownerName: string, hash: string, kind: "ca" | "md-ca" = "ca"): string {
  const suffix = `-registry-trust-${kind}-${hash.slice(0, 12)}`;
  return `${ownerName.slice(0, 253 - suffix.length).replace(/[.-]+$/, "")}${suffix}`;
}

/**
 * Our files (CA bundle per endpoint and containerd hosts.toml per certs.d directory) and commands, for the
 * KCP or (with `secretKind` "md-ca") the MachineDeployment named `ownerName`.
 */
export function desiredEntries(ownerName: string, spec: TrustSpec, secretKind: "ca" | "md-ca" = "ca"): Desired {
  if (spec.endpoints.length === 0) throw new Error("at least one registry endpoint is needed");
  const hash = pemHash(spec.bundlePem);
  const limit = Math.min(spec.inlineMaxChars ?? KCP_CONTENT_LIMIT, KCP_CONTENT_LIMIT);
  const secret = spec.bundlePem.length > limit ? { name: secretName(ownerName, hash, secretKind), key: SECRET_KEY, data: spec.bundlePem } : undefined;
  const caFiles: FileEntry[] = spec.endpoints.map((e) => ({
    path: containerdCaPath(e),
    owner: "root:root",
    permissions: "0644",
    ...(secret ? { contentFrom: { secret: { name: secret.name, key: secret.key } } } : { content: spec.bundlePem }),
  }));
  const hostsFiles: FileEntry[] = containerdHostsFiles(spec.endpoints).map((h) => ({
    path: `${CONTAINERD_CERTS_DIR}/${h.dir}/hosts.toml`,
    owner: "root:root",
    permissions: "0644",
    content: h.content,
  }));
  const files = [...caFiles, ...hostsFiles];
  const commands = spec.osTrustStore ? [trustStoreCommand(spec.osTrustStore, caFiles[0].path)] : [];
  return {
    files,
    commands,
    secret,
    ownership: { paths: files.map((f) => f.path), commands, bundleHash: hash, ...(secret ? { secret: secret.name } : {}), ...(spec.issuedAt ? { issuedAt: spec.issuedAt } : {}) },
  };
}

/**
 * The annotation recording what `owner` (project/stack) owns: OWNERSHIP_ANNOTATION plus a hash of the
 * owner (annotation names are at most 63 characters); the annotation's value names the owner in full.
 * Without an owner, OWNERSHIP_ANNOTATION itself.
 */
export function ownershipKey(owner?: string): string {
  return owner ? `${OWNERSHIP_ANNOTATION}.${createHash("sha256").update(owner).digest("hex").slice(0, 12)}` : OWNERSHIP_ANNOTATION;
}

function parseOwnership(o: KcpObject, key: string): Ownership & { owner?: string } {
  const text = o.metadata.annotations?.[key];
  if (text === undefined) return NOTHING.ownership;
  try {
    const v = JSON.parse(text) as Partial<Ownership> & { owner?: unknown };
    if (Array.isArray(v.paths) && Array.isArray(v.commands) && typeof v.bundleHash === "string") {
      return {
        paths: v.paths.map(String), commands: v.commands.map(String), bundleHash: v.bundleHash,
        ...(v.secret ? { secret: String(v.secret) } : {}), ...(typeof v.issuedAt === "string" ? { issuedAt: v.issuedAt } : {}),
        ...(typeof v.owner === "string" ? { owner: v.owner } : {}),
      };
    }
  } catch {
    // Reported below with the annotation's name.
  }
  throw kcpError("INVALID_OWNERSHIP", `annotation ${key} on ${kindOf(o)} ${o.metadata.namespace}/${o.metadata.name} ` +
    "is not what registry-trust writes; it was edited by hand. Restore or remove it (removing it makes our files foreign: then set adopt).");
}

/**
 * What `owner` owns on a KCP (or KubeadmConfigTemplate); an empty ownership when nothing. A named owner
 * with no annotation of its own gets the unnamed one, which is what it wrote before ownership per stack.
 */
export function readOwnership(o: KcpObject, owner?: string): Ownership {
  const { owner: _, ...own } = parseOwnership(o, ownershipKey(owner));
  if (owner && own.paths.length === 0 && own.commands.length === 0) {
    const { owner: __, ...legacy } = parseOwnership(o, OWNERSHIP_ANNOTATION);
    return legacy;
  }
  return own;
}

/** Every owner's ownership recorded on the object, by annotation name (the unnamed one included). */
export function allOwnerships(o: KcpObject): Map<string, Ownership & { owner?: string }> {
  const out = new Map<string, Ownership & { owner?: string }>();
  for (const key of Object.keys(o.metadata.annotations ?? {})) {
    if (key === OWNERSHIP_ANNOTATION || key.startsWith(`${OWNERSHIP_ANNOTATION}.`)) out.set(key, parseOwnership(o, key));
  }
  return out;
}

export interface PlanOptions {
  readonly version: KcpVersion;
  /** Whose entries these are (project/stack): other owners' entries are kept. @default the unnamed owner */
  readonly owner?: string;
  /** Take over files at our paths that we did not write. @default false */
  readonly adopt?: boolean;
  /** RFC 3339 time: CAPI replaces every control-plane machine created before it. @default none */
  readonly rolloutAfter?: string;
}

export interface Plan {
  /** The object to write (a copy of the one read, with our changes), or undefined when nothing changes. */
  readonly update?: KcpObject;
  readonly ownership: Ownership;
}

/*
 * Where a kind keeps its kubeadm config (files, preKubeadmCommands): core/workers merges into
 * KubeadmConfigTemplates exactly as this module does into KCPs. Objects without a kind are KCPs.
 */
const CONFIG_SPEC_PATH: Record<string, readonly string[]> = { KubeadmControlPlane: ["kubeadmConfigSpec"], KubeadmConfigTemplate: ["template", "spec"] };

function kindOf(o: KcpObject): string {
  return o.kind && CONFIG_SPEC_PATH[o.kind] ? o.kind : "KubeadmControlPlane";
}

function kubeadmConfigSpec(o: KcpObject): Record<string, unknown> {
  let at: unknown = o.spec;
  for (const key of CONFIG_SPEC_PATH[kindOf(o)]) at = at && typeof at === "object" ? (at as Record<string, unknown>)[key] : undefined;
  return at && typeof at === "object" ? (at as Record<string, unknown>) : {};
}

/** Keys sorted, so that two JSON values compare equal whatever order the apiserver returns keys in. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x);
}

/**
 * Merges `desired` into the KCP read: entries at our paths are replaced in place, ours that are no longer
 * desired are dropped, new ones are appended, every other entry is kept untouched. A file at one of our
 * paths that the recorded ownership does not list belongs to someone else and is refused unless `adopt`.
 */
export function planMerge(kcp: KcpObject, desired: Desired, opts: PlanOptions): Plan {
  const key = ownershipKey(opts.owner);
  const owners = allOwnerships(kcp);
  const owned = owners.get(key) ?? NOTHING.ownership;
  const spec = kubeadmConfigSpec(kcp);
  const files = (Array.isArray(spec.files) ? spec.files : []) as FileEntry[];
  const commands = (Array.isArray(spec.preKubeadmCommands) ? spec.preKubeadmCommands : []) as string[];

  const wanted = new Map(desired.files.map((f) => [f.path, f]));
  // Entries recorded under the unnamed annotation are taken over by a named owner at the paths it writes
  // (they are its own from before ownership per stack, or it would have to adopt them anyway); the rest stays there.
  const legacy = opts.owner ? owners.get(OWNERSHIP_ANNOTATION) : undefined;
  const ownedPaths = new Set([...owned.paths, ...(legacy?.paths.filter((p) => wanted.has(p)) ?? [])]);
  const ownerOf = (path: string) => [...owners].find(([k, o]) => k !== key && o.paths.includes(path));
  const foreign = files.filter((f) => wanted.has(f.path) && !ownedPaths.has(f.path));
  if (foreign.length > 0 && !opts.adopt) {
    const whose = (path: string) => {
      const other = ownerOf(path);
      return other ? `${path} (written by registry-trust ${other[1].owner ? `stack "${other[1].owner}"` : "without an owner"})` : path;
    };
    throw kcpError("FOREIGN_FILE", `${kindOf(kcp)} ${kcp.metadata.namespace}/${kcp.metadata.name} already has ` +
      `${foreign.map((f) => whose(f.path)).join(", ")} in spec.${CONFIG_SPEC_PATH[kindOf(kcp)].join(".")}.files, not written by ${opts.owner ? `this stack (${opts.owner})` : "registry-trust"}. ` +
      "Remove that entry, or set adopt to let registry-trust replace and own it.");
  }

  const merged: FileEntry[] = [];
  const placed = new Set<string>();
  for (const f of files) {
    const ours = wanted.get(f.path);
    if (ours) {
      if (!placed.has(f.path)) merged.push(ours);
      placed.add(f.path);
    } else if (!owned.paths.includes(f.path)) {
      merged.push(f);
    }
  }
  merged.push(...desired.files.filter((f) => !placed.has(f.path)));

  const otherCommands = new Set([...owners].filter(([k]) => k !== key).flatMap(([, o]) => o.commands));
  const ownedCommands = new Set(owned.commands.filter((c) => !otherCommands.has(c)));
  const ourCommands = new Set(desired.commands);
  const mergedCommands = [...commands.filter((c) => !ownedCommands.has(c) && !ourCommands.has(c)), ...desired.commands];

  // Every other owner keeps its record, minus the paths (and commands) this write takes over from it.
  const records: Record<string, string | undefined> = {};
  for (const [k, o] of owners) {
    if (k === key) continue;
    const paths = o.paths.filter((p) => !wanted.has(p));
    const cmds = o.commands.filter((c) => !ourCommands.has(c));
    records[k] = annotationText({ ...o, paths, commands: cmds }, o.owner);
  }
  records[key] = annotationText(desired.ownership, opts.owner);

  const rolloutAfter = currentRolloutAfter(kcp, opts.version);
  const before = { files, commands, records: Object.fromEntries([...owners.keys()].map((k) => [k, kcp.metadata.annotations?.[k]])), rolloutAfter };
  const after = { files: merged, commands: mergedCommands, records, rolloutAfter: opts.rolloutAfter ?? rolloutAfter };
  if (canonicalJson(before) === canonicalJson(after)) return { ownership: desired.ownership };
  return { update: withEntries(kcp, merged, mergedCommands, records, opts), ownership: desired.ownership };
}

/** The annotation recording `ownership` of `owner`; none once it owns nothing. */
function annotationText(ownership: Ownership & { owner?: string }, owner?: string): string | undefined {
  const { owner: _, ...rest } = ownership;
  if (rest.paths.length === 0 && rest.commands.length === 0) return undefined;
  return JSON.stringify(owner ? { owner, ...rest } : rest);
}

function currentRolloutAfter(kcp: KcpObject, version: KcpVersion): string | undefined {
  const spec = kcp.spec ?? {};
  const v = version === "v1beta2" ? (spec.rollout as { after?: unknown } | undefined)?.after : spec.rolloutAfter;
  return typeof v === "string" ? v : undefined;
}

function withEntries(kcp: KcpObject, files: FileEntry[], commands: string[], records: Record<string, string | undefined>, opts: PlanOptions): KcpObject {
  const copy = JSON.parse(JSON.stringify(kcp)) as KcpObject;
  let cfg: Record<string, unknown> = (copy.spec ??= {});
  for (const key of CONFIG_SPEC_PATH[kindOf(copy)]) cfg = (cfg[key] ??= {}) as Record<string, unknown>;
  // v1beta2 declares minItems: 1 on both lists: an empty list must be absent, not [].
  if (files.length > 0) cfg.files = files;
  else delete cfg.files;
  if (commands.length > 0) cfg.preKubeadmCommands = commands;
  else delete cfg.preKubeadmCommands;

  const annotations = { ...(copy.metadata.annotations ?? {}) };
  for (const [key, text] of Object.entries(records)) {
    if (text !== undefined) annotations[key] = text;
    else delete annotations[key];
  }
  copy.metadata.annotations = annotations;

  if (opts.rolloutAfter !== undefined) {
    if (opts.version === "v1beta2") copy.spec.rollout = { ...((copy.spec.rollout as object | undefined) ?? {}), after: opts.rolloutAfter };
    else copy.spec.rolloutAfter = opts.rolloutAfter;
  }
  return copy;
}

/** Our entries as they are on `kcp` (by the paths and commands of `ownership`), for read-back checks. */
export function entriesOn(kcp: KcpObject, ownership: Ownership, owner?: string): { files: FileEntry[]; commands: string[]; annotation?: string } {
  const spec = kubeadmConfigSpec(kcp);
  const paths = new Set(ownership.paths);
  const files = ((Array.isArray(spec.files) ? spec.files : []) as FileEntry[]).filter((f) => paths.has(f.path));
  const commands = ((Array.isArray(spec.preKubeadmCommands) ? spec.preKubeadmCommands : []) as string[]).filter((c) => ownership.commands.includes(c));
  return { files, commands, annotation: kcp.metadata.annotations?.[ownershipKey(owner)] };
}

/**
 * Why the entries on `kcp` differ from `desired`, or undefined when they are exactly what we wrote and
 * nothing is left at the paths we owned before (`previous`) and no longer want.
 */
export function verifyEntries(kcp: KcpObject, desired: Desired, previous: Ownership = NOTHING.ownership, owner?: string): string | undefined {
  const on = entriesOn(kcp, desired.ownership, owner);
  const dropped = new Set(previous.paths.filter((p) => !desired.ownership.paths.includes(p)));
  const left = entriesOn(kcp, { ...previous, paths: [...dropped] }).files.map((f) => f.path);
  if (left.length > 0) return `files we removed are back: ${left.join(", ")}`;
  const byPath = (fs: FileEntry[]) => canonicalJson([...fs].sort((a, b) => (a.path < b.path ? -1 : 1)));
  if (byPath(on.files) !== byPath(desired.files)) {
    const differing = desired.files.filter((d) => canonicalJson(on.files.find((f) => f.path === d.path)) !== canonicalJson(d)).map((d) => d.path);
    return `files differ from what was written: ${differing.join(", ") || "unexpected extra entries"}`;
  }
  if (canonicalJson(on.commands) !== canonicalJson(desired.commands)) return "preKubeadmCommands differ from what was written";
  if (on.annotation !== annotationText(desired.ownership, owner)) return `annotation ${ownershipKey(owner)} differs from what was written`;
  return undefined;
}
