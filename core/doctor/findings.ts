import { ProblemCode } from "../x509/problems";

/*
 * What doctor concludes. Codes are stable (runbooks and --json consumers key on them): a code is never
 * renamed, a new situation gets a new code. Certificate problems reuse core/x509's codes.
 */

export const DOCTOR_CODES = [
  "REGISTRY_UNREACHABLE",
  "CERTS_DIR_WITHOUT_PORT",
  "CONFIG_PATH_NOT_SET",
  "RUNTIME_RESTART_NEEDED",
  "OS_STORE_NOT_REBUILT",
  "INSECURE_SKIP_VERIFY",
  "PULL_FAILED",
  "NO_RUNTIME",
  "NO_CRICTL",
  "NODE_CLOCK_SKEW",
] as const;

export type DoctorCode = (typeof DOCTOR_CODES)[number];
export type FindingCode = DoctorCode | ProblemCode;

/** error: pulls fail because of it; risk: pulls may work but trust is broken (e.g. verification off). */
export type FindingSeverity = "error" | "risk" | "warning" | "info";

export interface Finding {
  readonly code: FindingCode;
  readonly severity: FindingSeverity;
  /** Which trust view it concerns: a runtime ("containerd", "docker", "crio", "k3s", "rke2"), "os", or "registry" for the served chain. */
  readonly scope: string;
  readonly message: string;
  readonly fix: string;
  /** Files, processes or outputs the conclusion rests on. */
  readonly evidence: readonly string[];
  /** The CRI pull failed with the error this cause produces. */
  readonly confirmedByPull: boolean;
}

/*
 * Most likely cause first. A cause that explains a pull failure comes first; then severity; then the
 * more specific cause before the generic one it produces (a certs.d directory without the port shows up
 * as "unknown authority", so it ranks above it).
 */
const CAUSE_ORDER: readonly FindingCode[] = [
  "REGISTRY_UNREACHABLE",
  "EXPIRED",
  "NOT_YET_VALID",
  "HOSTNAME_MISMATCH",
  "CN_ONLY_NO_SAN",
  "MISSING_INTERMEDIATE",
  "CERTS_DIR_WITHOUT_PORT",
  "CONFIG_PATH_NOT_SET",
  "RUNTIME_RESTART_NEEDED",
  "OS_STORE_NOT_REBUILT",
  "UNKNOWN_AUTHORITY",
];
const SEVERITY_ORDER: readonly FindingSeverity[] = ["error", "risk", "warning", "info"];

function causeRank(code: FindingCode): number {
  const i = CAUSE_ORDER.indexOf(code);
  if (i >= 0) return i;
  return code === "PULL_FAILED" ? CAUSE_ORDER.length + 1 : CAUSE_ORDER.length;
}

export function rankFindings(findings: readonly Finding[]): Finding[] {
  return [...findings].sort(
    (a, b) =>
      Number(b.confirmedByPull) - Number(a.confirmedByPull) ||
      SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity) ||
      causeRank(a.code) - causeRank(b.code),
  );
}

/** The Go error text each cause produces in a failed pull (containerd and CRI-O wrap Go's crypto/x509 errors). */
export function pullConfirms(code: FindingCode, pullOutput: string): boolean {
  const o = pullOutput;
  switch (code) {
    case "EXPIRED":
    case "NOT_YET_VALID":
      return o.includes("certificate has expired or is not yet valid");
    case "HOSTNAME_MISMATCH":
      return /x509: certificate is (valid for|not valid for any names)/.test(o);
    case "CN_ONLY_NO_SAN":
      return o.includes("legacy Common Name field");
    case "MISSING_INTERMEDIATE":
    case "UNKNOWN_AUTHORITY":
    case "CERTS_DIR_WITHOUT_PORT":
    case "CONFIG_PATH_NOT_SET":
    case "RUNTIME_RESTART_NEEDED":
    case "OS_STORE_NOT_REBUILT":
      return o.includes("x509: certificate signed by unknown authority");
    default:
      return false;
  }
}
