/*
 * Refusals and failures of the KCP sequencer and of core/workers. Plain Errors with a stable `code` rather than a subclass:
 * these functions are serialized into a Pulumi dynamic provider, where a plain object shape survives best.
 */

export const KCP_ERROR_CODES = [
  "KCP_NOT_FOUND",
  "VERSION_NOT_SERVED",
  "FOREIGN_FILE",
  "FORBIDDEN",
  "INVALID_BUNDLE",
  "INVALID_OWNERSHIP",
  "CONFLICT_DEADLINE",
  "LEASE_HELD",
  "LEASE_LOST",
  "ROLLOUT_TIMEOUT",
  "SECRET_CONFLICT",
  "MACHINE_DEPLOYMENT_NOT_FOUND",
  "TEMPLATE_NOT_FOUND",
  "UNSUPPORTED_BOOTSTRAP",
  "TEMPLATE_CONFLICT",
  "ENTRIES_REVERTED",
  "STALE_RUN",
  "TOPOLOGY_OWNED",
  "TOPOLOGY_VARIABLE",
] as const;
export type KcpErrorCode = (typeof KCP_ERROR_CODES)[number];

export interface KcpError extends Error {
  readonly code: KcpErrorCode;
}

export function kcpError(code: KcpErrorCode, message: string): KcpError {
  return Object.assign(new Error(message), { code });
}

/** One of our refusals; system errors (e.g. node-fetch's FetchError) carry string codes like ECONNRESET too. */
export function isKcpError(e: unknown, code?: KcpErrorCode): e is KcpError {
  const c = (e as Partial<KcpError> | undefined)?.code;
  return e instanceof Error && (KCP_ERROR_CODES as readonly unknown[]).includes(c) && (code === undefined || c === code);
}

/** HTTP status of a failed Kubernetes API call (client-node's ApiException keeps it in `code`). */
export function httpStatus(e: unknown): number | undefined {
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === "number" ? code : undefined;
}

/** The apiserver's own sentence for a failed call (its Status.message), else the error's message. */
export function apiMessage(e: unknown): string {
  const body = (e as { body?: unknown } | undefined)?.body;
  if (typeof body === "string") {
    try {
      const status = JSON.parse(body) as { message?: unknown };
      if (typeof status.message === "string") return status.message;
    } catch {
      // Not a Status object: fall through to the error's own message.
    }
  }
  return e instanceof Error ? e.message : String(e);
}

/** The permissions the KCP sequencer needs, named in its FORBIDDEN errors. */
export const KCP_GRANTS = "get/update on kubeadmcontrolplanes.controlplane.cluster.x-k8s.io, " +
  "get/create/update/delete on leases.coordination.k8s.io, get/list/create/delete on secrets and get on configmaps";

/**
 * Turns an RBAC refusal into a clear error naming what was attempted and the permissions to grant (in
 * the target's namespace); every other error passes through. The apiserver's message already names the
 * user, verb and resource.
 */
export function refuseForbidden(e: unknown, attempted: string, grants: string = KCP_GRANTS): unknown {
  if (httpStatus(e) !== 403) return e;
  return kcpError("FORBIDDEN", `forbidden while trying to ${attempted}: ${apiMessage(e)}. ` +
    `Grant the identity in the kubeconfig ${grants} in that namespace.`);
}
