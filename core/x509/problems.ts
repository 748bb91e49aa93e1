/**
 * Stable problem codes. Tools, tests and runbooks key on these strings, so a code is never renamed;
 * a new situation gets a new code.
 */
export const PROBLEM_CODES = [
  // input
  "EMPTY_INPUT", "PEM_GARBAGE", "CERT_UNPARSEABLE", "PRIVATE_KEY_IN_BUNDLE", "DUPLICATE_CERT", "KEY_UNPARSEABLE", "KEY_MISMATCH",
  // what Go crypto/x509 refuses
  "UNKNOWN_AUTHORITY", "MISSING_INTERMEDIATE", "BAD_SIGNATURE", "INSECURE_SIGNATURE_ALGORITHM", "ISSUER_NOT_CA",
  "ISSUER_KEY_USAGE", "PATH_LEN_EXCEEDED", "NAME_CONSTRAINT_VIOLATION", "EKU_NOT_SERVER_AUTH",
  "UNHANDLED_CRITICAL_EXTENSION", "EXPIRED", "NOT_YET_VALID", "HOSTNAME_MISMATCH", "CN_ONLY_NO_SAN",
  "CHAIN_BUILD_BUDGET_EXCEEDED", "POLICY_INVALID", "VERIFY_FAILED",
  // our policy and advice
  "WEAK_KEY", "WEAK_SELF_SIGNATURE", "EXPIRES_SOON", "BUNDLE_ENTRY_NOT_CA", "BUNDLE_CA_EXPIRED",
] as const;

export type ProblemCode = (typeof PROBLEM_CODES)[number];

export type Severity = "error" | "warning";

export interface Problem {
  readonly code: ProblemCode;
  readonly severity: Severity;
  /** True when Go crypto/x509 (containerd, kubelet) would refuse for this reason; false for our own policy. */
  readonly runtimeRefuses: boolean;
  readonly message: string;
  readonly fix: string;
  /** The certificate concerned, when there is one. */
  readonly cert?: { readonly subject: string; readonly fingerprint256: string; readonly source: string };
}

export function formatProblem(p: Problem): string {
  const who = p.cert ? ` [${p.cert.source}: ${p.cert.subject}, SHA256 ${p.cert.fingerprint256}]` : "";
  return `${p.severity.toUpperCase()} ${p.code}${who}: ${p.message} Fix: ${p.fix}`;
}

export function hasErrors(problems: readonly Problem[]): boolean {
  return problems.some((p) => p.severity === "error");
}
