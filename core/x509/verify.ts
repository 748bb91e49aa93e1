import { KeyObject } from "node:crypto";
import { CertInfo, EKU_ANY, EKU_SERVER_AUTH, describePublicKey } from "./cert";
import { nameConstraintViolations, verifyHostname } from "./names";
import { Problem, ProblemCode } from "./problems";

/*
 * Chain verification that accepts exactly what Go's crypto/x509 Verify accepts for a TLS server
 * (KeyUsages = ServerAuth), because that is the verifier inside containerd, the kubelet and dockerd.
 * Unlike Go, which stops at the first failure, every problem is reported, with our own key-strength
 * policy on top. The differential test in test/unit/x509-go-oracle.test.ts compares verdicts with Go itself.
 */

export interface VerifyInput {
  /** Trust anchors: what a node would have in its bundle. */
  readonly bundle: readonly CertInfo[];
  /** What the registry serves: leaf first, then any intermediates (order beyond the leaf does not matter). */
  readonly chain: readonly CertInfo[];
  /** Host the runtime dials (name or IP, no port); omitted = no host name check. */
  readonly host?: string;
  /** Serving private key, checked to match the leaf. */
  readonly privateKey?: KeyObject;
  /** Evaluation time (Go's VerifyOptions.CurrentTime). @default now */
  readonly now?: Date;
  /** Warn when a certificate of the chosen chain expires within this many days. @default 30 */
  readonly expiryWarningDays?: number;
}

export interface Verdict {
  /** A container runtime with this bundle would complete the TLS handshake. */
  readonly trusted: boolean;
  /** trusted, and no policy error either. */
  readonly ok: boolean;
  /** The chain Go would build (leaf → root), when there is one. */
  readonly path?: readonly CertInfo[];
  readonly problems: readonly Problem[];
}

const MAX_DEPTH = 10;

function problem(code: ProblemCode, cert: CertInfo | undefined, message: string, fix: string, runtimeRefuses = true): Problem {
  return {
    code,
    severity: "error",
    runtimeRefuses,
    message,
    fix,
    cert: cert && { subject: cert.subject || "(empty subject)", fingerprint256: cert.fingerprint256, source: cert.source },
  };
}

function warning(code: ProblemCode, cert: CertInfo, message: string, fix: string): Problem {
  return { ...problem(code, cert, message, fix, false), severity: "warning" };
}

/** Time validity, as Go's isValid checks it for every certificate of the chain, the root included. */
export function validityProblems(c: CertInfo, now: Date): Problem[] {
  if (now < c.notBefore) {
    return [problem("NOT_YET_VALID", c, `not valid before ${c.notBefore.toISOString()} (now ${now.toISOString()}).`, "Check the node and issuer clocks, or wait; reissue with a start date in the past.")];
  }
  if (now > c.notAfter) {
    return [problem("EXPIRED", c, `expired at ${c.notAfter.toISOString()} (now ${now.toISOString()}).`, c.isCA ? "Rotate to a new CA generation (raise caGeneration) and reissue what it signed." : "Reissue the certificate and deploy it to the registry.")];
  }
  return [];
}

/** Our policy on key strength; RSA below 1024 bits is also refused by Go itself (since Go 1.24). */
export function weakKeyProblems(c: CertInfo): Problem[] {
  const k = c.key;
  const fix = "Reissue with ECDSA P-256/P-384 or RSA ≥ 3072 bits.";
  if ((k.type === "rsa" || k.type === "rsa-pss") && (k.bits ?? 0) < 2048) {
    return [problem("WEAK_KEY", c, `${describePublicKey(k)} key is too weak (policy: RSA ≥ 2048, 3072 for new keys).`, fix, (k.bits ?? 0) < 1024)];
  }
  if (k.type === "ec" && !["prime256v1", "secp384r1", "secp521r1"].includes(k.curve ?? "")) {
    return [problem("WEAK_KEY", c, `${describePublicKey(k)} is not an accepted curve (policy: P-256, P-384, P-521).`, fix, k.curve !== "secp224r1")];
  }
  if (k.type === "dsa") return [problem("WEAK_KEY", c, "DSA keys are not supported by Go's crypto/x509.", fix)];
  return [];
}

/** Go's CheckSignatureFrom(parent) for child. */
function signatureProblems(child: CertInfo, parent: CertInfo): Problem[] {
  const out: Problem[] = [];
  if ((parent.version === 3 && !parent.basicConstraintsValid) || (parent.basicConstraintsValid && !parent.isCA)) {
    out.push(problem("ISSUER_NOT_CA", parent, `signed "${child.subject}" but is not a CA (basicConstraints ${parent.basicConstraintsValid ? "CA:FALSE" : "missing"}).`, "Reissue the issuer with basicConstraints critical, CA:TRUE."));
  }
  if (parent.keyUsage && !parent.keyUsage.keyCertSign) {
    out.push(problem("ISSUER_KEY_USAGE", parent, `signed "${child.subject}" but its keyUsage (${parent.keyUsage.names.join(", ") || "none"}) lacks keyCertSign.`, "Reissue the issuer with keyUsage keyCertSign (and cRLSign)."));
  }
  if (child.insecureSignature) {
    out.push(problem("INSECURE_SIGNATURE_ALGORITHM", child, `is signed with ${child.signatureName}, which Go refuses.`, "Reissue it with a SHA-256 (or stronger) signature."));
  } else if (parent.key.type === "dsa" || !child.x509.verify(parent.publicKey)) {
    out.push(problem("BAD_SIGNATURE", child, `its signature does not verify with the key of "${parent.subject}" (same name, different key: a different CA generation?).`, "Put the CA that actually signed this certificate in the bundle, or reissue it from the bundled CA."));
  }
  return out;
}

/** Go's isValid for an issuer placed above `below` (leaf first). */
function issuerProblems(ca: CertInfo, below: readonly CertInfo[], now: Date): Problem[] {
  const out = [...validityProblems(ca, now), ...criticalProblems(ca)];
  for (const c of below) {
    const v = nameConstraintViolations(ca, c);
    if (v.length) out.push(problem("NAME_CONSTRAINT_VIOLATION", ca, `its name constraints refuse "${c.subject}": ${v.join("; ")}.`, "Issue the serving certificate for names the CA is permitted to sign, or use a CA without those constraints."));
  }
  const intermediates = below.length - 1;
  if (ca.basicConstraintsValid && ca.maxPathLen >= 0 && intermediates > ca.maxPathLen) {
    out.push(problem("PATH_LEN_EXCEEDED", ca, `allows ${ca.maxPathLen} intermediate(s) below it (pathlen) but the chain has ${intermediates}.`, "Shorten the chain or reissue the CA with a larger pathlen."));
  }
  return out;
}

function criticalProblems(c: CertInfo): Problem[] {
  return c.unhandledCritical.length
    ? [problem("UNHANDLED_CRITICAL_EXTENSION", c, `carries critical extension(s) ${c.unhandledCritical.join(", ")} that Go does not understand, so Go refuses it.`, "Reissue without those extensions, or mark them non-critical.")]
    : [];
}

/** Go's checkChainForKeyUsage with ServerAuth: every certificate that lists EKUs must allow serverAuth. */
function ekuProblems(path: readonly CertInfo[]): Problem[] {
  const c = path.find((x) => x.extKeyUsage.length > 0 && !x.extKeyUsage.includes(EKU_ANY) && !x.extKeyUsage.includes(EKU_SERVER_AUTH));
  return c
    ? [problem("EKU_NOT_SERVER_AUTH", c, `its extendedKeyUsage (${c.extKeyUsage.join(", ")}) does not allow TLS server authentication.`, "Reissue with extendedKeyUsage serverAuth (or without the extension on CAs).")]
    : [];
}

interface Candidate {
  readonly path: CertInfo[];
  readonly problems: Problem[];
}

function sameCert(a: CertInfo, b: CertInfo): boolean {
  return a.der.equals(b.der);
}

/** Every name-matching path from the leaf to a bundle certificate, each with the problems Go would find on it. */
function buildChains(leaf: CertInfo, intermediates: readonly CertInfo[], bundle: readonly CertInfo[], now: Date) {
  const complete: Candidate[] = [];
  let deadEnd: CertInfo[] = [leaf];
  if (bundle.some((r) => sameCert(r, leaf))) complete.push({ path: [leaf], problems: [] });
  const walk = (path: CertInfo[], acc: Problem[]) => {
    const current = path[path.length - 1];
    if (path.length > deadEnd.length) deadEnd = path;
    if (path.length > MAX_DEPTH) return;
    const consider = (candidate: CertInfo, isRoot: boolean) => {
      if (path.some((c) => sameCert(c, candidate))) return;
      const edge = [...signatureProblems(current, candidate), ...issuerProblems(candidate, path, now)];
      const next = [...path, candidate];
      if (isRoot) complete.push({ path: next, problems: [...acc, ...edge] });
      else walk(next, [...acc, ...edge]);
    };
    for (const r of bundle) if (r.rawSubject.equals(current.rawIssuer)) consider(r, true);
    for (const i of intermediates) if (i.rawSubject.equals(current.rawIssuer)) consider(i, false);
  };
  walk([leaf], []);
  return { complete, deadEnd };
}

function unknownAuthority(deadEnd: readonly CertInfo[], bundle: readonly CertInfo[]): Problem {
  const top = deadEnd[deadEnd.length - 1];
  const leafOnly = deadEnd.length === 1;
  const aia = top.caIssuersUrls.length > 0;
  if (leafOnly && aia) {
    return problem("MISSING_INTERMEDIATE", top, `its issuer "${top.issuer}" was not sent by the server and is not in the bundle; the certificate points to it at ${top.caIssuersUrls.join(", ")}, so it is an intermediate the registry must serve (Go never fetches it).`, "Configure the registry to serve the full chain (leaf + intermediates), or add the intermediate to the bundle.");
  }
  const names = bundle.map((b) => `"${b.subject}"`).join(", ") || "(empty bundle)";
  return problem("UNKNOWN_AUTHORITY", top, `issuer "${top.issuer}" is not in the bundle (${names}): x509: certificate signed by unknown authority.`, leafOnly
    ? "Add the issuing CA to the bundle; if that issuer is an intermediate, the registry must also serve it (missing intermediate)."
    : "Add the root CA that issued this intermediate to the bundle.");
}

/** Verifies a served chain against a bundle as a container runtime would, listing every problem. */
export function verifyServing(input: VerifyInput): Verdict {
  const now = input.now ?? new Date();
  const [leaf, ...intermediates] = input.chain;
  if (!leaf) throw new Error("verifyServing: the chain is empty");

  const leafProblems: Problem[] = [...validityProblems(leaf, now), ...criticalProblems(leaf)];
  if (input.host !== undefined) {
    const h = verifyHostname(leaf, input.host);
    if (!h.ok) {
      const sans = [...leaf.dnsNames, ...leaf.ipAddresses].join(", ") || "none";
      leafProblems.push(h.cnOnly
        ? problem("CN_ONLY_NO_SAN", leaf, `names "${input.host}" only in its Common Name; Go ignores the CN ("certificate relies on legacy Common Name field").`, `Reissue with subjectAltName DNS:${input.host} (or IP: for an address).`)
        : problem("HOSTNAME_MISMATCH", leaf, `is not valid for "${input.host}" (SANs: ${sans}).`, `Reissue with a SAN for "${input.host}", or make nodes use a name the certificate covers.`));
    }
  }
  if (input.privateKey && !leaf.x509.checkPrivateKey(input.privateKey)) {
    leafProblems.push(problem("KEY_MISMATCH", leaf, "does not match the private key given: the registry would fail its TLS handshake.", "Deploy the key that was used for this certificate's CSR, or reissue the certificate for this key.", true));
  }

  const { complete, deadEnd } = buildChains(leaf, intermediates, input.bundle, now);
  const scored = complete
    .map((c) => ({ ...c, problems: [...c.problems, ...ekuProblems(c.path)] }))
    .sort((a, b) => a.problems.length - b.problems.length || a.path.length - b.path.length);
  const best = scored[0];
  const chainProblems = best ? best.problems : [unknownAuthority(deadEnd, input.bundle)];

  const policy: Problem[] = [];
  const warnDays = input.expiryWarningDays ?? 30;
  for (const c of best?.path ?? deadEnd) {
    policy.push(...weakKeyProblems(c));
    const daysLeft = (c.notAfter.getTime() - now.getTime()) / 86_400_000;
    if (daysLeft >= 0 && daysLeft < warnDays) {
      policy.push(warning("EXPIRES_SOON", c, `expires in ${Math.floor(daysLeft)} day(s), at ${c.notAfter.toISOString()}.`, c.isCA ? "Plan the CA rotation now (raise caGeneration)." : "Renew the serving certificate."));
    }
  }
  const root = best?.path[best.path.length - 1];
  if (root && root !== leaf && root.selfIssued && root.insecureSignature) {
    policy.push(warning("WEAK_SELF_SIGNATURE", root, `self-signature uses ${root.signatureName}; Go does not check a root's self-signature, but other clients may refuse it.`, "Reissue the root with SHA-256."));
  }

  const problems = dedupe([...leafProblems, ...chainProblems, ...policy]);
  const trusted = !problems.some((p) => p.runtimeRefuses && p.severity === "error");
  return {
    trusted,
    ok: trusted && !problems.some((p) => p.severity === "error"),
    path: best && best.problems.length === 0 ? best.path : undefined,
    problems,
  };
}

function dedupe(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.code}|${p.cert?.fingerprint256}|${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
