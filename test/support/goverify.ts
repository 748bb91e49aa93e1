import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Problem, ProblemCode } from "../../core/x509/problems";

export interface OracleCase {
  readonly name: string;
  readonly bundle: string;
  /** Leaf first, then intermediates, as a server sends them. */
  readonly chain: string;
  /** More untrusted intermediates (x509-limbo's untrusted_intermediates). */
  readonly intermediates?: string;
  /** Name or IP; "" = no host name check. */
  readonly host: string;
  /** RFC 3339; omitted = now. */
  readonly time?: string;
}

/**
 * Why a verifier refused, in classes both Go's errors and our problem codes map onto (the Go side of the
 * mapping is reasonClass in test/oracle/goverify/main.go). Go reports the first failure only, so our
 * class is that of the first problem that makes the runtime refuse.
 */
export type ReasonClass =
  | "malformed" | "unknown-authority" | "hostname" | "critical-extension" | "not-ca" | "validity"
  | "name-constraints" | "path-len" | "eku" | "policy" | "budget" | "other";

export interface OracleAnswer {
  readonly name: string;
  readonly trusted: boolean;
  readonly reason?: ReasonClass;
  readonly error?: string;
}

/**
 * Our refusal codes → Go's classes. Go reports a refused candidate issuer (bad signature, not a CA, no
 * keyCertSign, insecure algorithm) inside UnknownAuthorityError, and so do we: those codes only follow an
 * UNKNOWN_AUTHORITY as its explanation, so they never come first.
 */
const CLASS_OF: Partial<Record<ProblemCode, ReasonClass>> = {
  EMPTY_INPUT: "malformed", PEM_GARBAGE: "malformed", CERT_UNPARSEABLE: "malformed",
  UNKNOWN_AUTHORITY: "unknown-authority", MISSING_INTERMEDIATE: "unknown-authority",
  BAD_SIGNATURE: "unknown-authority", INSECURE_SIGNATURE_ALGORITHM: "unknown-authority", ISSUER_KEY_USAGE: "unknown-authority",
  ISSUER_NOT_CA: "not-ca", PATH_LEN_EXCEEDED: "path-len", NAME_CONSTRAINT_VIOLATION: "name-constraints",
  EKU_NOT_SERVER_AUTH: "eku", UNHANDLED_CRITICAL_EXTENSION: "critical-extension", EXPIRED: "validity", NOT_YET_VALID: "validity",
  HOSTNAME_MISMATCH: "hostname", CN_ONLY_NO_SAN: "hostname", POLICY_INVALID: "policy", CHAIN_BUILD_BUDGET_EXCEEDED: "budget",
};

/** The class of the first problem a runtime refuses on; undefined when there is none (trusted). */
export function reasonOf(problems: readonly Problem[]): ReasonClass | undefined {
  const first = problems.find((p) => p.runtimeRefuses);
  return first && (CLASS_OF[first.code] ?? "other");
}

/** Builds test/oracle/goverify (Go's own crypto/x509) once per process and asks it about many cases at once. */
let binary: string | undefined;
export function goVerify(cases: readonly OracleCase[]): OracleAnswer[] {
  if (!binary) {
    binary = join(mkdtempSync(join(tmpdir(), "rt-goverify-")), "goverify");
    execFileSync("go", ["build", "-o", binary, join(__dirname, "..", "oracle", "goverify", "main.go")], { stdio: "pipe", env: { ...process.env, GOFLAGS: "-mod=mod", GO111MODULE: "on" } });
  }
  return JSON.parse(execFileSync(binary, { input: JSON.stringify(cases), encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }));
}
