import { createHash } from "node:crypto";
import { CertInfo } from "./cert";
import { parsePemCertificates, toPem } from "./pem";
import { Problem } from "./problems";
import { validityProblems, weakKeyProblems } from "./verify";

export interface BundleReport {
  readonly certs: CertInfo[];
  readonly problems: Problem[];
}

/**
 * Parses and vets a CA bundle: unparseable input is an error; duplicates, entries that are not CAs and
 * expired CAs are warnings (Go tolerates them, but each one is a mistake waiting to bite).
 */
export function inspectBundle(pem: string, source: string, now = new Date()): BundleReport {
  const { certs, problems } = parsePemCertificates(pem, source);
  const seen = new Map<string, CertInfo>();
  for (const c of certs) {
    const first = seen.get(c.fingerprint256);
    if (first) {
      problems.push({
        code: "DUPLICATE_CERT", severity: "warning", runtimeRefuses: false,
        message: `is the same certificate as ${first.source}.`, fix: "Remove the duplicate; the bundle we generate is deduplicated.",
        cert: { subject: c.subject, fingerprint256: c.fingerprint256, source: c.source },
      });
      continue;
    }
    seen.set(c.fingerprint256, c);
    if (!c.isCA) {
      problems.push({
        code: "BUNDLE_ENTRY_NOT_CA", severity: "warning", runtimeRefuses: false,
        message: "is not a CA certificate: Go trusts it only as that exact server certificate, so it stops working at its next renewal.",
        fix: "Put the issuing CA in the bundle instead of the server certificate.",
        cert: { subject: c.subject, fingerprint256: c.fingerprint256, source: c.source },
      });
    }
    for (const p of [...validityProblems(c, now), ...weakKeyProblems(c)]) {
      problems.push(p.code === "EXPIRED" ? { ...p, code: "BUNDLE_CA_EXPIRED", severity: "warning", runtimeRefuses: false } : p);
    }
  }
  return { certs: [...seen.values()], problems };
}

/**
 * The trust bundle: certificates deduplicated by fingerprint, in the order given (callers pass newest
 * generation first), as canonical PEM, so the same set always yields the same text and hash.
 */
export function assembleBundle(pems: readonly string[]): { pem: string; fingerprints: string[] } {
  const seen = new Set<string>();
  const parts: string[] = [];
  for (const pem of pems) {
    for (const c of parsePemCertificates(pem, "bundle").certs) {
      if (seen.has(c.fingerprint256)) continue;
      seen.add(c.fingerprint256);
      parts.push(toPem(c.der));
    }
  }
  return { pem: parts.join(""), fingerprints: [...seen] };
}

/** Hash that names a bundle in triggers, template names and status: sha256 of the canonical PEM. */
export function bundleHash(pem: string): string {
  return createHash("sha256").update(pem).digest("hex");
}
