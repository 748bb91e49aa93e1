import { KeyObject, constants, verify as cryptoVerify } from "node:crypto";
import { CertInfo, EKU_ANY, EKU_SERVER_AUTH, describePublicKey } from "./cert";
import { chainNameConstraintViolation, verifyHostname } from "./names";
import { policiesValid } from "./policies";
import { Problem, ProblemCode } from "./problems";

/*
 * Chain verification that accepts exactly what Go's crypto/x509 Verify accepts for a TLS server
 * (KeyUsages = ServerAuth), because that is the verifier inside containerd, the kubelet and dockerd.
 * The path builder follows Go's buildChains step by step — candidate order, the checks on each candidate,
 * and its work budget (maxChainSignatureChecks) — so that it answers as Go does, for the same reason, and
 * cannot be made to spin on a served chain of a hundred look-alike intermediates.
 * Go stops at its first failure; we report that one first and then what else we found, with our own
 * key-strength and expiry policy on top (policy never changes `trusted`).
 * test/unit/x509-verify.test.ts and test/unit/x509-limbo.test.ts compare verdicts and reasons with Go itself;
 * docs/verifier.md lists where we deliberately differ.
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
  /** The first problem a runtime refuses on is the one Go reports; the rest explain more. */
  readonly problems: readonly Problem[];
}

/** Go's maxChainSignatureChecks: candidate issuers considered (signature checks attempted) per verification. */
export const MAX_CHAIN_SIGNATURE_CHECKS = 100;

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

/**
 * Our policy on key strength. Policy only: it never makes a chain untrusted. What Go itself refuses (an
 * issuer's RSA key below 1024 bits, a DSA issuer, curves it cannot parse) shows up in verification instead.
 */
export function weakKeyProblems(c: CertInfo): Problem[] {
  const k = c.key;
  const fix = "Reissue with ECDSA P-256/P-384 or RSA ≥ 3072 bits.";
  if ((k.type === "rsa" || k.type === "rsa-pss") && (k.bits ?? 0) < 2048) {
    return [problem("WEAK_KEY", c, `${describePublicKey(k)} key is too weak (policy: RSA ≥ 2048, 3072 for new keys).`, fix, false)];
  }
  if (k.type === "ec" && !["prime256v1", "secp384r1", "secp521r1"].includes(k.curve ?? "")) {
    return [problem("WEAK_KEY", c, `${describePublicKey(k)} is not an accepted curve (policy: P-256, P-384, P-521).`, fix, false)];
  }
  if (k.type === "dsa") return [problem("WEAK_KEY", c, "DSA key: Go's crypto/tls cannot use it for a handshake and Go verifies no DSA signature.", fix, false)];
  return [];
}

const HINT_FIX_ISSUER = "Reissue the issuer with basicConstraints critical, CA:TRUE (and keyUsage keyCertSign).";

/** Go's CheckSignatureFrom(parent) for child; a failure makes Go pass over that candidate issuer. */
function signatureProblem(child: CertInfo, parent: CertInfo): Problem | undefined {
  if ((parent.version === 3 && !parent.basicConstraintsValid) || (parent.basicConstraintsValid && !parent.isCA)) {
    return problem("ISSUER_NOT_CA", parent, `would be the issuer of "${child.subject}" but is not a CA (basicConstraints ${parent.basicConstraintsValid ? "CA:FALSE" : "missing"}).`, HINT_FIX_ISSUER);
  }
  if (parent.keyUsageBits !== 0 && !(parent.keyUsageBits & 32)) {
    return problem("ISSUER_KEY_USAGE", parent, `would be the issuer of "${child.subject}" but its keyUsage (${parent.keyUsage?.names.join(", ") || "none"}) lacks keyCertSign.`, "Reissue the issuer with keyUsage keyCertSign (and cRLSign).");
  }
  const alg = child.signatureAlgorithm;
  if (alg?.insecure) {
    return problem("INSECURE_SIGNATURE_ALGORITHM", child, `is signed with ${child.signatureName}, which Go refuses.`, "Reissue it with a SHA-256 (or stronger) signature.");
  }
  const fix = "Put the CA that actually signed this certificate in the bundle, or reissue it from the bundled CA.";
  const why = signatureFailure(child, parent);
  return why ? problem("BAD_SIGNATURE", child, `its signature does not verify with the key of "${parent.subject}": ${why}.`, fix) : undefined;
}

/** Why Go's checkSignature would fail, or undefined when the signature verifies. */
function signatureFailure(child: CertInfo, parent: CertInfo): string | undefined {
  const alg = child.signatureAlgorithm;
  const key = parent.publicKey;
  if (!alg || !key) return `Go does not support the signature algorithm ${child.signatureName}`;
  const type = parent.key.type;
  const matches = alg.family === "rsa" || alg.family === "rsa-pss" ? type === "rsa" : alg.family === "ecdsa" ? type === "ec" : alg.family === "ed25519" && type === "ed25519";
  if (!matches) return `a ${child.signatureName} signature cannot come from a ${describePublicKey(parent.key)} key`;
  if (type === "rsa" && (parent.key.bits ?? 0) < 1024) return `${describePublicKey(parent.key)} is below the 1024 bits Go requires`;
  try {
    const ok = alg.family === "ed25519"
      ? cryptoVerify(null, child.rawTbs, key, child.signature)
      : alg.family === "rsa-pss"
        ? cryptoVerify(alg.hash!, child.rawTbs, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.saltLength }, child.signature)
        : cryptoVerify(alg.hash!, child.rawTbs, alg.family === "rsa" ? { key, padding: constants.RSA_PKCS1_PADDING } : key, child.signature);
    return ok ? undefined : "same name, different key (a different CA generation?)";
  } catch (e) {
    return `the signature is malformed (${(e as Error).message})`;
  }
}

type CertKind = "leaf" | "intermediate" | "root";

/** Go's isValid for `c` placed above `below` (leaf first). */
function validityOnChain(c: CertInfo, kind: CertKind, below: readonly CertInfo[], now: Date): Problem | undefined {
  if (c.unhandledCritical.length) {
    return problem("UNHANDLED_CRITICAL_EXTENSION", c, `carries critical extension(s) ${c.unhandledCritical.join(", ")} that Go does not understand, so Go refuses it.`, "Reissue without those extensions, or mark them non-critical.");
  }
  const v = validityProblems(c, now)[0];
  if (v) return v;
  if (kind === "intermediate" && (!c.basicConstraintsValid || !c.isCA)) {
    return problem("ISSUER_NOT_CA", c, `is used as an intermediate but is not a CA (${c.basicConstraintsValid ? "basicConstraints CA:FALSE" : `no basicConstraints: a v${c.version} certificate`}).`, HINT_FIX_ISSUER);
  }
  const intermediates = below.length - 1;
  if (c.basicConstraintsValid && c.maxPathLen >= 0 && intermediates > c.maxPathLen) {
    return problem("PATH_LEN_EXCEEDED", c, `allows ${c.maxPathLen} intermediate(s) below it (pathlen) but the chain has ${intermediates}.`, "Shorten the chain or reissue the CA with a larger pathlen.");
  }
  return undefined;
}

/** Go's CertPool as far as path building needs it: deduplicated, issuers found by exact subject bytes. */
class Pool {
  private readonly byName = new Map<string, CertInfo[]>();
  private readonly seen = new Set<string>();
  constructor(certs: readonly CertInfo[]) {
    for (const c of certs) {
      const sum = c.der.toString("base64");
      if (this.seen.has(sum)) continue;
      this.seen.add(sum);
      const k = c.rawSubject.toString("hex");
      this.byName.set(k, [...(this.byName.get(k) ?? []), c]);
    }
  }
  contains(c: CertInfo): boolean {
    return this.seen.has(c.der.toString("base64"));
  }
  /** Go's findPotentialParents: key-identifier matches first, then one side missing, then mismatches. */
  potentialParents(c: CertInfo): CertInfo[] {
    const match: CertInfo[] = [], one: CertInfo[] = [], mismatch: CertInfo[] = [];
    for (const p of this.byName.get(c.rawIssuer.toString("hex")) ?? []) {
      if (p.subjectKeyId === c.authorityKeyId) match.push(p);
      else if ((p.subjectKeyId === "") !== (c.authorityKeyId === "")) one.push(p);
      else mismatch.push(p);
    }
    return [...match, ...one, ...mismatch];
  }
}

/** Go's alreadyInChain: same subject, same key and same SANs count as the same CA (stops cross-sign loops). */
function alreadyInChain(candidate: CertInfo, chain: readonly CertInfo[]): boolean {
  return chain.some((c) => c.rawSubject.equals(candidate.rawSubject) && c.rawSubjectPublicKeyInfo.equals(candidate.rawSubjectPublicKeyInfo)
    && (c.sanValue === undefined ? candidate.sanValue === undefined : candidate.sanValue !== undefined && c.sanValue.equals(candidate.sanValue)));
}

/** A refusal as Go returns it (the first problem) with what explains it (the rest). */
type Refusal = Problem[];

interface Builder {
  readonly roots: Pool;
  readonly intermediates: Pool;
  readonly bundle: readonly CertInfo[];
  readonly now: Date;
  checks: number;
  budgetExhausted: boolean;
}

function budgetRefusal(leaf: CertInfo): Refusal {
  return [problem("CHAIN_BUILD_BUDGET_EXCEEDED", leaf, `no chain was found within ${MAX_CHAIN_SIGNATURE_CHECKS} candidate issuer checks; Go gives up at the same point ("x509: signature check attempts limit reached while verifying certificate chain").`,
    "Serve only the leaf and the intermediates of its own chain (not every CA certificate with the same name), and bundle the root that issued them.")];
}

function unknownAuthority(c: CertInfo, b: Builder, hint: Problem | undefined): Refusal {
  const names = b.bundle.map((x) => `"${x.subject}"`).join(", ") || "(empty bundle)";
  const because = hint ? ` The candidate issuer "${hint.cert?.subject ?? c.issuer}" was passed over: ${hint.code}.` : "";
  return [problem("UNKNOWN_AUTHORITY", c, `issuer "${c.issuer}" is not in the bundle (${names}): x509: certificate signed by unknown authority.${because}`,
    c.isCA ? "Add the root CA that issued this intermediate to the bundle." : "Add the issuing CA to the bundle; if that issuer is an intermediate, the registry must also serve it (missing intermediate)."),
  ...(hint ? [hint] : [])];
}

/** Go's buildChains: every chain from `chain`'s top to a root, or Go's error when there is none. */
function buildChains(chain: readonly CertInfo[], b: Builder): { chains: CertInfo[][]; err?: Refusal } {
  const c = chain[chain.length - 1];
  const chains: CertInfo[][] = [];
  let err: Refusal | undefined;
  let hint: Problem | undefined;
  const consider = (kind: CertKind, candidate: CertInfo) => {
    b.checks++;
    if (b.checks > MAX_CHAIN_SIGNATURE_CHECKS) {
      b.budgetExhausted = true;
      err = budgetRefusal(chain[0]);
      return;
    }
    if (!candidate.publicKey || alreadyInChain(candidate, chain)) return;
    const sig = signatureProblem(c, candidate);
    if (sig) {
      hint ??= sig;
      return;
    }
    const invalid = validityOnChain(candidate, kind, chain, b.now);
    err = invalid && [invalid];
    if (invalid) {
      hint ??= invalid;
      return;
    }
    if (kind === "root") chains.push([...chain, candidate]);
    else {
      const sub = buildChains([...chain, candidate], b);
      err = sub.err;
      chains.push(...sub.chains);
    }
  };
  outer: for (const [kind, pool] of [["root", b.roots], ["intermediate", b.intermediates]] as const) {
    for (const candidate of pool.potentialParents(c)) {
      consider(kind, candidate);
      if (b.budgetExhausted) break outer;
    }
  }
  if (chains.length > 0) return { chains };
  return { chains, err: err ?? unknownAuthority(c, b, hint) };
}

/** Go's checkChainForKeyUsage with ServerAuth: the first certificate (from the root down) that forbids it. */
function ekuProblem(path: readonly CertInfo[]): Problem | undefined {
  const c = [...path].reverse().find((x) => x.extKeyUsage.length > 0 && !x.extKeyUsage.includes(EKU_ANY) && !x.extKeyUsage.includes(EKU_SERVER_AUTH));
  return c && problem("EKU_NOT_SERVER_AUTH", c, `its extendedKeyUsage (${c.extKeyUsage.join(", ")}) does not allow TLS server authentication.`, "Reissue with extendedKeyUsage serverAuth (or without the extension on CAs).");
}

function constraintProblem(path: readonly CertInfo[]): Problem | undefined {
  const v = chainNameConstraintViolation(path);
  return v && problem("NAME_CONSTRAINT_VIOLATION", v.ca, `its name constraints refuse "${v.cert.subject || v.cert.source}": ${v.reason}.`, "Issue the serving certificate for names the CA is permitted to sign, or use a CA without those constraints.");
}

function hostnameProblem(leaf: CertInfo, host: string): Problem | undefined {
  const h = verifyHostname(leaf, host);
  if (h.ok) return undefined;
  const sans = [...leaf.dnsNames, ...leaf.ipAddresses].join(", ") || "none";
  return h.cnOnly
    ? problem("CN_ONLY_NO_SAN", leaf, `names "${host}" only in its Common Name; Go ignores the CN ("certificate relies on legacy Common Name field").`, `Reissue with subjectAltName DNS:${host} (or IP: for an address).`)
    : problem("HOSTNAME_MISMATCH", leaf, `is not valid for "${host}" (SANs: ${sans}).`, `Reissue with a SAN for "${host}", or make nodes use a name the certificate covers.`);
}

/** Verifies a served chain against a bundle as a container runtime would, listing every problem. Never throws. */
export function verifyServing(input: VerifyInput): Verdict {
  try {
    return verify(input);
  } catch (e) {
    // Every input we know of is handled above; this keeps a caller (doctor, preflight) answering even so.
    const p = problem("VERIFY_FAILED", input.chain[0], `verification stopped on an unexpected input: ${(e as Error).message}`,
      "Treat the chain as untrusted; save it (registry-trust inspect --save-chain) and report it as a registry-trust bug.");
    return { trusted: false, ok: false, problems: [p] };
  }
}

function verify(input: VerifyInput): Verdict {
  const now = input.now ?? new Date();
  const [leaf] = input.chain;
  if (!leaf) {
    const p = problem("EMPTY_INPUT", undefined, "no certificate to verify: the served chain is empty.", "Make the registry serve its certificate (leaf first, then intermediates).");
    return { trusted: false, ok: false, problems: [p] };
  }

  // Go's order: the leaf itself, then the host name, then path building, then key usage and name
  // constraints on the candidate chains. Go stops at the first failure; we go on to explain more.
  const problems: Problem[] = [];
  const leafInvalid = validityOnChain(leaf, "leaf", [], now);
  if (leafInvalid) problems.push(leafInvalid);
  if (input.host !== undefined && input.host !== "") {
    const h = hostnameProblem(leaf, input.host);
    if (h) problems.push(h);
  }

  const b: Builder = { roots: new Pool(input.bundle), intermediates: new Pool(input.chain.slice(1)), bundle: input.bundle, now, checks: 0, budgetExhausted: false };
  let candidates: CertInfo[][];
  if (b.roots.contains(leaf)) candidates = [[leaf]];
  else {
    const built = buildChains([leaf], b);
    candidates = built.chains;
    if (built.err) problems.push(...missingIntermediate(built.err, leaf));
  }

  let path: CertInfo[] | undefined;
  if (candidates.length > 0) {
    let constraintHint: Problem | undefined;
    let ekuHint: Problem | undefined;
    let policyHint: Problem | undefined;
    for (const chain of candidates) {
      if (!policiesValid(chain)) {
        policyHint ??= problem("POLICY_INVALID", leaf, "the certificate policies of the chain do not satisfy its policy constraints (requireExplicitPolicy, inhibitPolicyMapping or inhibitAnyPolicy): x509: no valid chains built.",
          "Issue the certificates with the policies the CA requires, or reissue the CA without policyConstraints.");
        continue;
      }
      const eku = ekuProblem(chain);
      if (eku) {
        ekuHint ??= eku;
        continue;
      }
      const nc = constraintProblem(chain);
      if (nc) {
        constraintHint ??= nc;
        continue;
      }
      path ??= chain;
    }
    if (!path) {
      // Go's preference: a name-constraint reason; else key usage, unless policies also failed somewhere.
      problems.push(constraintHint ?? (ekuHint && !policyHint ? ekuHint : policyHint)!);
      if (!constraintHint && ekuHint && policyHint) problems.push(ekuHint);
    }
  }

  if (input.privateKey && !leaf.x509?.checkPrivateKey(input.privateKey)) {
    problems.push(problem("KEY_MISMATCH", leaf, "does not match the private key given: the registry would fail its TLS handshake.", "Deploy the key that was used for this certificate's CSR, or reissue the certificate for this key."));
  }

  const shown = path ?? candidates[0] ?? [leaf];
  const warnDays = input.expiryWarningDays ?? 30;
  for (const c of shown) {
    problems.push(...weakKeyProblems(c));
    const daysLeft = (c.notAfter.getTime() - now.getTime()) / 86_400_000;
    if (daysLeft >= 0 && daysLeft < warnDays) {
      problems.push(warning("EXPIRES_SOON", c, `expires in ${Math.floor(daysLeft)} day(s), at ${c.notAfter.toISOString()}.`, c.isCA ? "Plan the CA rotation now (raise caGeneration)." : "Renew the serving certificate."));
    }
  }
  const root = path?.[path.length - 1];
  if (root && root !== leaf && root.selfIssued && root.insecureSignature) {
    problems.push(warning("WEAK_SELF_SIGNATURE", root, `self-signature uses ${root.signatureName}; Go does not check a root's self-signature, but other clients may refuse it.`, "Reissue the root with SHA-256."));
  }

  const unique = dedupe(problems);
  const trusted = !unique.some((p) => p.runtimeRefuses);
  return { trusted, ok: trusted && !unique.some((p) => p.severity === "error"), path: trusted ? path : undefined, problems: unique };
}

/** A leaf whose issuer is nowhere but which names it in its AIA: the registry does not serve its intermediate. */
function missingIntermediate(err: Refusal, leaf: CertInfo): Refusal {
  const [first, ...rest] = err;
  if (first.code !== "UNKNOWN_AUTHORITY" || first.cert?.fingerprint256 !== leaf.fingerprint256 || rest.length > 0 || leaf.caIssuersUrls.length === 0) return err;
  return [problem("MISSING_INTERMEDIATE", leaf, `its issuer "${leaf.issuer}" was not sent by the server and is not in the bundle; the certificate points to it at ${leaf.caIssuersUrls.join(", ")}, so it is an intermediate the registry must serve (Go never fetches it).`,
    "Configure the registry to serve the full chain (leaf + intermediates), or add the intermediate to the bundle.")];
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
