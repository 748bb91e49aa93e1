/*
 * What the policies see of a resource, as plain data: the policy wiring (policy/) converts what the engine
 * sends into this shape, so the rules here run without Pulumi. During `pulumi preview` some values are not
 * known yet; they arrive as UNKNOWN, and a rule that needs one says nothing until `pulumi up`, where the
 * engine analyzes every resource again with its final inputs before touching it.
 */

/** A value the engine does not know until the update runs. */
export const UNKNOWN: unique symbol = Symbol("unknown during preview");
export type Unknown = typeof UNKNOWN;

export interface ResourceView {
  /** Type token, e.g. "tls:index/privateKey:PrivateKey". */
  readonly type: string;
  readonly urn: string;
  readonly name: string;
  /** Inputs (resource policies) or outputs (stack policies); unknown values are UNKNOWN. */
  readonly props: Readonly<Record<string, unknown>>;
}

/** One violation found across the stack: what is wrong and how to fix it; `urn` names the resource when there is one. */
export interface Finding {
  readonly message: string;
  readonly urn?: string;
}

export const TLS_PRIVATE_KEY = "tls:index/privateKey:PrivateKey";
export const TLS_SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert";
export const TLS_LOCALLY_SIGNED_CERT = "tls:index/locallySignedCert:LocallySignedCert";
export const TLS_CERT_REQUEST = "tls:index/certRequest:CertRequest";
export const REMOTE_COMMAND = "command:remote:Command";
export const COMPONENT_PREFIX = "registry-trust:index:";
export const REGISTRY_PKI = `${COMPONENT_PREFIX}RegistryPki`;

/**
 * The types from the stack root down to the resource itself, read from its URN
 * (`urn:pulumi:STACK::PROJECT::ParentType$...$Type::name`).
 */
export function typeChain(urn: string): string[] {
  const parts = urn.split("::");
  return parts.length >= 4 ? parts[2].split("$") : [];
}

/** The type of the resource's parent, from its URN; undefined for resources directly under the stack. */
export function parentType(urn: string): string | undefined {
  const chain = typeChain(urn);
  return chain.length >= 2 ? chain[chain.length - 2] : undefined;
}

/** True for resources inside one of this module's components (ours to hold to the production rules). */
export function insideOurComponent(urn: string): boolean {
  return typeChain(urn).slice(0, -1).some((t) => t.startsWith(COMPONENT_PREFIX));
}

export function isUnknown(v: unknown): v is Unknown {
  return v === UNKNOWN;
}

/** The record at `v`, or undefined when it is absent, unknown or not a record. */
export function record(v: unknown): Readonly<Record<string, unknown>> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}
