import { createHash } from "node:crypto";
import { RegistryEndpoint } from "../config/model";
import { canonicalJson, desiredEntries, FileEntry, MANAGED_BY, MANAGED_BY_LABEL, nameLabelValue, pemHash, SECRET_KEY } from "../kcp/plan";

/*
 * What registry-trust puts into one ClusterClass variable, per shape of variable. The variable's value is
 * one opaque JSON value the class's patches read; we change only our part of it and keep everything else
 * (other products' entries) as it is. Every bundle gets its own Secret (or Secret key) named by its hash, so
 * a new bundle changes the value — which is what makes the topology controller roll the machines — and
 * machines still bootstrapping from the old value keep finding the old Secret until it is pruned.
 *
 *  - files: a list of cloud-init `files` entries the class appends to the KCP's and workers' files; ours are
 *    the CA file (contentFrom a Secret) and containerd hosts.toml per endpoint, at paths only we use.
 *  - pems: a list of CA PEM strings (the class writes them where it wants); ours are the certificates of
 *    our bundle, recorded in the ownership annotation by hash.
 *  - tkg-trust: vSphere with Tanzu / TKG Service `trust`: {additionalTrustedCAs: [{name}]}, each name a key
 *    of Secret `<cluster>-user-trusted-ca-secret` whose value is the PEM base64-encoded (then base64 again
 *    as every Secret value on the wire); ours are the keys starting `registry-trust-`.
 *  - caren-registries: Nutanix CAREN `imageRegistries`: [{url, credentials: {secretRef: {name}}}], the
 *    Secret holding `ca.crt`; ours is the entry for our endpoint's URL whose Secret we made.
 */

export const SHAPES = ["files", "pems", "tkg-trust", "caren-registries"] as const;
export type Shape = (typeof SHAPES)[number];

/** Annotation on the Cluster recording what we own in the variable (JSON of TopologyOwnership). */
export const TOPOLOGY_OWNERSHIP_ANNOTATION = "registry-trust.io/topology-trust";
/** Label on our Secrets naming the Cluster, so that stale ones can be found and pruned. */
export const CLUSTER_LABEL = "registry-trust.io/cluster";
export const TKG_KEY_PREFIX = "registry-trust-";

export interface TopologyOwnership {
  readonly variable: string;
  readonly shape: Shape;
  readonly bundleHash: string;
  /** pems: sha256 of each PEM we put in. */
  readonly pems?: string[];
  /** files / caren-registries: our Secret; tkg-trust: our key in the shared Secret. */
  readonly secret?: string;
  readonly key?: string;
}

export interface VariableTrustSpec {
  readonly variable: string;
  readonly shape: Shape;
  readonly endpoints: readonly RegistryEndpoint[];
  readonly bundlePem: string;
}

/** A Secret the value refers to; `data` in plain text (base64-encoded on the wire by the API layer). */
export interface SecretWrite {
  readonly name: string;
  readonly key: string;
  readonly data: string;
  /** Shared with others (tkg-trust): add our key, never create-or-replace the whole Secret. */
  readonly shared: boolean;
}

export interface VariablePlan {
  /** The whole new value (others' part kept). */
  readonly value: unknown;
  readonly secret?: SecretWrite;
  readonly ownership: TopologyOwnership;
}

const VARIABLE_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,254})$/;

/** Refuses a bad configuration before anything is touched: names the field, the value and the fix. */
export function validateVariableSpec(spec: { variable?: unknown; shape?: unknown; endpoints?: readonly RegistryEndpoint[] }): void {
  if (typeof spec.variable !== "string" || !VARIABLE_NAME.test(spec.variable)) {
    throw new Error(`variable: ${JSON.stringify(spec.variable)} is not a ClusterClass variable name (1–256 characters, letters, digits, '-', '_', '.'); ` +
      "set it to the name of the variable the class defines for registry trust (its spec.variables[].name)");
  }
  if (!(SHAPES as readonly unknown[]).includes(spec.shape)) {
    throw new Error(`shape: ${JSON.stringify(spec.shape)} is not one of ${SHAPES.join(", ")}; pick the one matching the variable's schema ` +
      "(docs/rotation.md, \"ClusterClass-managed clusters\")");
  }
  if (!spec.endpoints || spec.endpoints.length === 0) throw new Error("endpoints: at least one registry endpoint is needed");
}

/** Certificates of a PEM bundle, each as its own PEM block. */
export function splitPems(bundle: string): string[] {
  return (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? []).map((p) => (p.endsWith("\n") ? p : `${p}\n`));
}

/** Our Secret for one bundle: `<cluster>-registry-trust-<hash12>` (253 characters at most). */
export function bundleSecretName(cluster: string, hash: string): string {
  const suffix = `-registry-trust-${hash.slice(0, 12)}`;
  return `${cluster.slice(0, 253 - suffix.length).replace(/[.-]+$/, "")}${suffix}`;
}

export function tkgSecretName(cluster: string): string {
  return `${cluster}-user-trusted-ca-secret`;
}

export function secretLabelsOf(cluster: string): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY, [CLUSTER_LABEL]: nameLabelValue(cluster) };
}

function listOf(value: unknown, spec: VariableTrustSpec): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) {
    throw new Error(`variable ${spec.variable} holds ${canonicalJson(value).slice(0, 80)}, not a list, so it is not of shape ${spec.shape}; check \`shape\` against the class's schema`);
  }
  return value;
}

/** Our desired entries in the `files` shape: the CA file from a Secret, hosts.toml inline. */
function ourFiles(spec: VariableTrustSpec, secret: string): FileEntry[] {
  // inlineMaxChars 0: the CA always goes to the per-bundle Secret; hosts.toml stays inline.
  const desired = desiredEntries(secret, { endpoints: spec.endpoints, bundlePem: spec.bundlePem, inlineMaxChars: 0 });
  return desired.files.map((f) => (f.contentFrom ? { ...f, contentFrom: { secret: { name: secret, key: SECRET_KEY } } } : f));
}

/**
 * The new value of the variable: `current` with our previous part (per `previous`) replaced by the
 * bundle's. Throws when `current` is not of the shape.
 */
export function planVariable(cluster: string, current: unknown, spec: VariableTrustSpec, previous: TopologyOwnership | undefined): VariablePlan {
  const hash = pemHash(spec.bundlePem);
  const base = { variable: spec.variable, shape: spec.shape, bundleHash: hash };
  switch (spec.shape) {
    case "files": {
      const secret = bundleSecretName(cluster, hash);
      const ours = ourFiles(spec, secret);
      const paths = new Set(ours.map((f) => f.path));
      const others = listOf(current, spec).filter((f) => !paths.has((f as FileEntry).path));
      return { value: [...others, ...ours], secret: { name: secret, key: SECRET_KEY, data: spec.bundlePem, shared: false }, ownership: { ...base, secret } };
    }
    case "pems": {
      const pems = splitPems(spec.bundlePem);
      const hashes = pems.map((p) => pemHash(p));
      const mine = new Set([...(previous?.pems ?? []), ...hashes]);
      const others = listOf(current, spec).filter((p) => typeof p !== "string" || !mine.has(pemHash(p)));
      return { value: [...others, ...pems], ownership: { ...base, pems: hashes } };
    }
    case "tkg-trust": {
      if (current !== undefined && current !== null && (typeof current !== "object" || Array.isArray(current))) {
        throw new Error(`variable ${spec.variable} holds ${canonicalJson(current).slice(0, 80)}, not an object, so it is not of shape tkg-trust ({additionalTrustedCAs: [{name}]})`);
      }
      const trust = (current ?? {}) as { additionalTrustedCAs?: unknown };
      const key = `${TKG_KEY_PREFIX}${hash.slice(0, 12)}`;
      const others = listOf(trust.additionalTrustedCAs, spec).filter((e) => !String((e as { name?: unknown }).name ?? "").startsWith(TKG_KEY_PREFIX));
      // TKG decodes the Secret value once more: the PEM is stored base64-encoded inside the (base64) data.
      const data = Buffer.from(spec.bundlePem, "utf8").toString("base64");
      return {
        value: { ...trust, additionalTrustedCAs: [...others, { name: key }] },
        secret: { name: tkgSecretName(cluster), key, data, shared: true },
        ownership: { ...base, secret: tkgSecretName(cluster), key },
      };
    }
    case "caren-registries": {
      const secret = bundleSecretName(cluster, hash);
      const urls = new Set(spec.endpoints.map((e) => `https://${e.host}${e.port === 443 ? "" : `:${e.port}`}`));
      const list = listOf(current, spec) as Array<{ url?: string; credentials?: { secretRef?: { name?: string } } }>;
      const foreign = list.find((r) => r.url && urls.has(r.url) && r.credentials?.secretRef?.name && r.credentials.secretRef.name !== previous?.secret && !r.credentials.secretRef.name.includes("-registry-trust-"));
      if (foreign) {
        throw new Error(`variable ${spec.variable} already has an entry for ${foreign.url} with Secret ${foreign.credentials!.secretRef!.name}, which registry-trust did not write; ` +
          "remove that entry or put the CA into that Secret's ca.crt yourself");
      }
      const others = list.filter((r) => !(r.url && urls.has(r.url)));
      const ours = [...urls].map((url) => ({ url, credentials: { secretRef: { name: secret } } }));
      return { value: [...others, ...ours], secret: { name: secret, key: SECRET_KEY, data: spec.bundlePem, shared: false }, ownership: { ...base, secret } };
    }
  }
}

/** The value with nothing of ours left (remove), per the recorded ownership. */
export function withoutOurs(current: unknown, ownership: TopologyOwnership, ourPaths: readonly string[]): unknown {
  switch (ownership.shape) {
    case "files":
      return Array.isArray(current) ? current.filter((f) => !ourPaths.includes((f as FileEntry).path)) : current;
    case "pems":
      return Array.isArray(current) ? current.filter((p) => typeof p !== "string" || !(ownership.pems ?? []).includes(pemHash(p))) : current;
    case "tkg-trust": {
      const trust = (current ?? {}) as { additionalTrustedCAs?: Array<{ name?: string }> };
      return { ...trust, additionalTrustedCAs: (trust.additionalTrustedCAs ?? []).filter((e) => !String(e.name ?? "").startsWith(TKG_KEY_PREFIX)) };
    }
    case "caren-registries":
      return Array.isArray(current) ? current.filter((r) => (r as { credentials?: { secretRef?: { name?: string } } }).credentials?.secretRef?.name !== ownership.secret) : current;
  }
}

/** A short stable id of a value, for events. */
export function valueId(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex").slice(0, 12);
}
