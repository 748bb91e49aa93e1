/*
 * The serving switch for a registry behind an ingress or a pod that mounts a TLS Secret. Besides the
 * pair, the Secret records which bundle every node, control plane and worker template carried when it
 * was switched: the next run's preflight reads that record to tell a finished rotation from one that
 * stopped halfway (see core/rotation/preflight.ts).
 */

/** Annotation: sha256 of the bundle distributed before this certificate was switched in. */
export const BUNDLE_ANNOTATION = "registry-trust.io/bundle-sha256";
/** Annotation: the Pulumi project/stack that switched it. */
export const STACK_ANNOTATION = "registry-trust.io/stack";

export interface ServingSecretRef {
  readonly namespace: string;
  readonly name: string;
}

export interface ServingSecretManifest {
  readonly apiVersion: "v1";
  readonly kind: "Secret";
  readonly metadata: { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, string> };
  readonly type: "kubernetes.io/tls";
  readonly stringData: { "tls.crt": string; "tls.key": string };
}

/** Name, labels and the rotation record: nothing secret, so that a diff shows them. */
export function servingSecretMetadata(ref: ServingSecretRef, record: { bundleHash: string; stack: string }): ServingSecretManifest["metadata"] {
  if (!/^[0-9a-f]{64}$/.test(record.bundleHash)) throw new Error(`bundleHash must be 64 lowercase hex digits, got "${record.bundleHash}"`);
  return {
    name: ref.name,
    namespace: ref.namespace,
    labels: { "app.kubernetes.io/managed-by": "registry-trust" },
    annotations: { [BUNDLE_ANNOTATION]: record.bundleHash, [STACK_ANNOTATION]: record.stack },
  };
}

export function servingSecretManifest(ref: ServingSecretRef, chainPem: string, keyPem: string, record: { bundleHash: string; stack: string }): ServingSecretManifest {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: servingSecretMetadata(ref, record),
    type: "kubernetes.io/tls",
    stringData: { "tls.crt": chainPem, "tls.key": keyPem },
  };
}
