import { KeyObject, X509Certificate, createHash, createPublicKey } from "node:crypto";
import { DerError, DerReader, Element, TAG, bitString, children, ctx, int64, integerSign, oidText, rightAlign, smallInteger } from "./der";
import { domainNameValid, ipText, isIA5, parseIp, parseMailbox } from "./names";

/*
 * Certificate parsing with the acceptance rules of Go's crypto/x509 parser (parser.go): what Go refuses to
 * parse it never uses (AppendCertsFromPEM skips it, a TLS client refuses the handshake), so we refuse it
 * too, with Go's reason. node:crypto does the cryptography and the fingerprint.
 */

export const EKU_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
export const EKU_ANY = "2.5.29.37.0";

/** Signature algorithms Go knows (x509.go signatureAlgorithmDetails); the hash drives verification. */
export interface SigAlg { readonly name: string; readonly family: "rsa" | "rsa-pss" | "ecdsa" | "ed25519" | "dsa"; readonly hash?: string; readonly insecure?: boolean }
const SIGNATURE_ALGORITHMS: Record<string, SigAlg> = {
  "1.2.840.113549.1.1.4": { name: "md5WithRSAEncryption", family: "rsa", hash: "md5", insecure: true },
  "1.2.840.113549.1.1.5": { name: "sha1WithRSAEncryption", family: "rsa", hash: "sha1", insecure: true },
  "1.3.14.3.2.29": { name: "sha1WithRSA (ISO)", family: "rsa", hash: "sha1", insecure: true },
  "1.2.840.113549.1.1.11": { name: "sha256WithRSAEncryption", family: "rsa", hash: "sha256" },
  "1.2.840.113549.1.1.12": { name: "sha384WithRSAEncryption", family: "rsa", hash: "sha384" },
  "1.2.840.113549.1.1.13": { name: "sha512WithRSAEncryption", family: "rsa", hash: "sha512" },
  "1.2.840.10040.4.3": { name: "dsa-with-SHA1", family: "dsa", hash: "sha1", insecure: true },
  "2.16.840.1.101.3.4.3.2": { name: "dsa-with-SHA256", family: "dsa", hash: "sha256" },
  "1.2.840.10045.4.1": { name: "ecdsa-with-SHA1", family: "ecdsa", hash: "sha1", insecure: true },
  "1.2.840.10045.4.3.2": { name: "ecdsa-with-SHA256", family: "ecdsa", hash: "sha256" },
  "1.2.840.10045.4.3.3": { name: "ecdsa-with-SHA384", family: "ecdsa", hash: "sha384" },
  "1.2.840.10045.4.3.4": { name: "ecdsa-with-SHA512", family: "ecdsa", hash: "sha512" },
  "1.3.101.112": { name: "ed25519", family: "ed25519" },
};
const OID_RSA_PSS = "1.2.840.113549.1.1.10";
const HASH_OIDS: Record<string, { name: string; size: number }> = {
  "2.16.840.1.101.3.4.2.1": { name: "sha256", size: 32 },
  "2.16.840.1.101.3.4.2.2": { name: "sha384", size: 48 },
  "2.16.840.1.101.3.4.2.3": { name: "sha512", size: 64 },
};

const CURVES: Record<string, string> = {
  "1.3.132.0.33": "secp224r1",
  "1.2.840.10045.3.1.7": "prime256v1",
  "1.3.132.0.34": "secp384r1",
  "1.3.132.0.35": "secp521r1",
};

export interface IpNet {
  readonly ip: Buffer;
  readonly mask: Buffer;
}

/** One side (permitted or excluded) of a nameConstraints extension, as Go keeps it. */
export interface NameConstraintSet {
  readonly dns: string[];
  readonly ip: IpNet[];
  readonly email: string[];
  readonly uri: string[];
}

export interface PublicKeyInfo {
  readonly type: string; // "rsa" | "ec" | "ed25519" | "x25519" | "dsa" | "unknown"
  readonly bits?: number;
  readonly curve?: string;
}

/** One parsed certificate: node:crypto for crypto operations, our DER reader for the fields Go looks at. */
export interface CertInfo {
  /** node's view; undefined for the rare certificate Go parses but OpenSSL does not. */
  readonly x509?: X509Certificate;
  readonly der: Buffer;
  /** Where it came from, e.g. "bundle#2" or "chain#0", for messages. */
  readonly source: string;
  readonly subject: string;
  readonly issuer: string;
  /** DER of the subject and issuer Names: Go matches issuers to parents on these exact bytes. */
  readonly rawSubject: Buffer;
  readonly rawIssuer: Buffer;
  readonly rawSubjectPublicKeyInfo: Buffer;
  readonly rawTbs: Buffer;
  readonly signature: Buffer;
  readonly version: number; // 1, 2 or 3 (as in X.509: the DER value + 1)
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly fingerprint256: string;
  readonly basicConstraintsValid: boolean;
  readonly isCA: boolean;
  /** -1 when unlimited, as Go's MaxPathLen. */
  readonly maxPathLen: number;
  /** Go's KeyUsage bits (bit 0 = digitalSignature … bit 5 = keyCertSign); 0 when absent or empty, as in Go. */
  readonly keyUsageBits: number;
  /** keyUsage names, when the extension is present. */
  readonly keyUsage?: { readonly keyCertSign: boolean; readonly names: string[] };
  /** EKU OIDs, known or not. */
  readonly extKeyUsage: string[];
  readonly dnsNames: string[];
  /** IP SANs in text form. */
  readonly ipAddresses: string[];
  /** IP SANs as 4 or 16 bytes. */
  readonly ipBytes: Buffer[];
  readonly emailAddresses: string[];
  readonly uris: string[];
  readonly hasSanExtension: boolean;
  /** DER value of the SAN extension (Go compares it to detect a certificate already in a chain). */
  readonly sanValue?: Buffer;
  readonly commonName?: string;
  readonly hasNameConstraints: boolean;
  readonly permitted?: NameConstraintSet;
  readonly excluded?: NameConstraintSet;
  /** Hex; "" when absent (Go's nil). */
  readonly subjectKeyId: string;
  readonly authorityKeyId: string;
  readonly caIssuersUrls: string[];
  /** certificatePolicies, policyMappings and policyConstraints/inhibitAnyPolicy values (OIDs as hex of their DER content); undefined = absent. */
  readonly policies: string[];
  readonly policyMappings: { readonly issuer: string; readonly subject: string }[];
  readonly requireExplicitPolicy?: number;
  readonly inhibitPolicyMapping?: number;
  readonly inhibitAnyPolicy?: number;
  readonly unhandledCritical: string[];
  readonly signatureOid: string;
  readonly signatureName: string;
  /** undefined when Go does not know the algorithm (or its parameters): such a signature never verifies. */
  readonly signatureAlgorithm?: SigAlg & { readonly saltLength?: number };
  readonly insecureSignature: boolean;
  /** undefined when Go does not know the key's algorithm: Go then never uses the certificate as an issuer. */
  readonly publicKey?: KeyObject;
  readonly key: PublicKeyInfo;
  readonly selfIssued: boolean;
}

const KEY_USAGE_NAMES = ["digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"];

function fail(message: string): never {
  throw new DerError(`x509: ${message}`);
}

const NULL_DER = Buffer.from([0x05, 0x00]);

function algorithmIdentifier(value: Buffer): { oid: string; params?: Buffer } {
  const r = new DerReader(value, "algorithm identifier");
  const oid = oidText(r.read(TAG.OID).value);
  if (r.empty()) return { oid };
  return { oid, params: r.readAny().full };
}

/** Go's getSignatureAlgorithmFromAI: RSA-PSS only with MGF1 of the same hash, salt = hash length, trailer 1. */
function signatureAlgorithm(value: Buffer): { oid: string; alg?: SigAlg & { saltLength?: number } } {
  const ai = algorithmIdentifier(value);
  if (ai.oid === "1.3.101.112" && ai.params) return { oid: ai.oid };
  if (ai.oid !== OID_RSA_PSS) return { oid: ai.oid, alg: SIGNATURE_ALGORITHMS[ai.oid] };
  return { oid: ai.oid, alg: pssAlgorithm(ai.params) };
}

function pssAlgorithm(params: Buffer | undefined): (SigAlg & { saltLength: number }) | undefined {
  if (!params) return undefined;
  try {
    const seq = new DerReader(params).read(TAG.SEQUENCE);
    const r = new DerReader(seq.value, "PSS parameters");
    // RSASSA-PSS-params: hashAlgorithm [0], maskGenAlgorithm [1], saltLength [2], trailerField [3].
    const hash = r.readOptional(ctx(0, true));
    const mgf = r.readOptional(ctx(1, true));
    const salt = r.readOptional(ctx(2, true));
    const trailer = r.readOptional(ctx(3, true));
    r.end();
    if (!hash || !mgf || !salt) return undefined;
    const h = algorithmIdentifier(new DerReader(hash.value).read(TAG.SEQUENCE).value);
    const m = algorithmIdentifier(new DerReader(mgf.value).read(TAG.SEQUENCE).value);
    if (h.params && !h.params.equals(NULL_DER)) return undefined;
    if (m.oid !== "1.2.840.113549.1.1.8" || !m.params) return undefined;
    const mh = algorithmIdentifier(new DerReader(m.params).read(TAG.SEQUENCE).value);
    if (mh.oid !== h.oid || (mh.params && !mh.params.equals(NULL_DER))) return undefined;
    const saltLength = smallInteger(new DerReader(salt.value).read(TAG.INTEGER).value);
    if (trailer && smallInteger(new DerReader(trailer.value).read(TAG.INTEGER).value) !== 1) return undefined;
    const hashInfo = HASH_OIDS[h.oid];
    if (!hashInfo || hashInfo.size !== saltLength) return undefined;
    return { name: `rsassaPss-${hashInfo.name}`, family: "rsa-pss", hash: hashInfo.name, saltLength };
  } catch {
    return undefined;
  }
}

/** Go's parseASN1String: the string types a Name may hold, each checked for its alphabet. */
function asn1String(tag: number, v: Buffer): string {
  switch (tag) {
    case 0x14: // T61String, read as Latin-1
      return v.toString("latin1");
    case 0x13: // PrintableString (Go also allows '*' and '&')
      if (!/^[A-Za-z0-9 '()+,\-./:=?*&]*$/.test(v.toString("latin1"))) fail("invalid RDNSequence: invalid attribute value: invalid PrintableString");
      return v.toString("latin1");
    case 0x0c: { // UTF8String
      const s = v.toString("utf8");
      if (!Buffer.from(s, "utf8").equals(v)) fail("invalid RDNSequence: invalid attribute value: invalid UTF-8 string");
      return s;
    }
    case 0x1e: { // BMPString
      if (v.length % 2) fail("invalid RDNSequence: invalid attribute value: invalid BMPString");
      let units = v;
      if (units.length >= 2 && units[units.length - 1] === 0 && units[units.length - 2] === 0) units = units.subarray(0, -2);
      const codes: number[] = [];
      for (let i = 0; i < units.length; i += 2) {
        const p = units.readUInt16BE(i);
        if (p === 0xfffe || p === 0xffff || (p >= 0xfdd0 && p <= 0xfdef) || (p >= 0xd800 && p <= 0xdfff)) fail("invalid RDNSequence: invalid attribute value: invalid BMPString");
        codes.push(p);
      }
      return String.fromCharCode(...codes);
    }
    case 0x16: // IA5String
      if (!isIA5(v)) fail("invalid RDNSequence: invalid attribute value: invalid IA5String");
      return v.toString("latin1");
    case 0x12: // NumericString
      if (!/^[0-9 ]*$/.test(v.toString("latin1"))) fail("invalid RDNSequence: invalid attribute value: invalid NumericString");
      return v.toString("latin1");
  }
  return fail(`invalid RDNSequence: invalid attribute value: unsupported string type: ${tag}`);
}

const NAME_ATTRIBUTES: Record<string, string> = { "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.5": "serialNumber" };

/** Go's parseName; returns the last CN (Go's Subject.CommonName) and a display form. */
function parseName(full: Buffer): { commonName?: string; text: string } {
  let commonName: string | undefined;
  const parts: string[] = [];
  const seq = new DerReader(full, "Name").read(TAG.SEQUENCE);
  for (const rdn of children(seq.value, "RDNSequence")) {
    if (rdn.tag !== TAG.SET) fail("invalid RDNSequence");
    for (const atv of children(rdn.value, "RDN")) {
      if (atv.tag !== TAG.SEQUENCE) fail("invalid RDNSequence: invalid attribute");
      const r = new DerReader(atv.value, "attribute");
      const type = oidText(r.read(TAG.OID).value);
      const value = r.readAny();
      const text = asn1String(value.tag, value.value);
      if (type === "2.5.4.3") commonName = text;
      parts.push(`${NAME_ATTRIBUTES[type] ?? type}=${text}`);
    }
  }
  return { commonName, text: parts.join(", ") };
}

/** UTCTime / GeneralizedTime as Go's cryptobyte reads them (canonical forms only). */
function parseTime(e: Element): Date {
  const s = e.value.toString("latin1");
  const zone = (z: string) => (z === "Z" ? 0 : (z[0] === "-" ? -1 : 1) * (Number(z.slice(1, 3)) * 60 + Number(z.slice(3, 5))));
  let m: RegExpExecArray | null;
  let y: number, rest: string[], frac = "", z: string;
  if (e.tag === 0x17) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(Z|[+-]\d{4})$/.exec(s);
    if (!m) fail("malformed UTCTime");
    y = Number(m[1]);
    y += y < 50 ? 2000 : 1900;
    rest = [m[2], m[3], m[4], m[5], m[6] ?? "00"];
    z = m[7];
  } else if (e.tag === 0x18) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\.\d*[1-9])?(Z|[+-]\d{4})$/.exec(s);
    if (!m) fail("malformed GeneralizedTime");
    y = Number(m[1]);
    rest = [m[2], m[3], m[4], m[5], m[6]];
    frac = m[7] ?? "";
    z = m[8];
  } else return fail("unsupported time format");
  const [mo, d, h, mi, se] = rest.map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59) fail("malformed time");
  const t = new Date(0);
  t.setUTCFullYear(y, mo - 1, d);
  t.setUTCHours(h, mi, se, frac ? Math.floor(Number(`0${frac}`) * 1000) : 0);
  if (t.getUTCDate() !== d) fail("malformed time");
  return new Date(t.getTime() - zone(z) * 60_000);
}

function describeKey(spki: Buffer): { info: PublicKeyInfo; goKnows: boolean; shifted: Buffer | undefined } {
  const r = new DerReader(new DerReader(spki).read(TAG.SEQUENCE).value, "spki");
  const ai = algorithmIdentifier(r.read(TAG.SEQUENCE).value);
  // Go reads the key from the right-aligned bits: a non-zero unused-bits count shifts it.
  const bits = bitString(r.read(TAG.BIT_STRING).value);
  const key = rightAlign(bits);
  switch (ai.oid) {
    case "1.2.840.113549.1.1.1": {
      if (!ai.params?.equals(NULL_DER)) fail("RSA key missing NULL parameters");
      const seq = new DerReader(new DerReader(key, "RSA key").read(TAG.SEQUENCE).value, "RSA key");
      const n = seq.read(TAG.INTEGER).value;
      const e = seq.read(TAG.INTEGER).value;
      if (integerSign(n) <= 0) fail("RSA modulus is not a positive number");
      if (integerSign(e) <= 0) fail("RSA public exponent is not a positive number");
      const bytes = n[0] === 0 ? n.subarray(1) : n;
      return { info: { type: "rsa", bits: bytes.length ? (bytes.length - 1) * 8 + bytes[0].toString(2).length : 0 }, goKnows: true, shifted: undefined };
    }
    case "1.2.840.10045.2.1": {
      let curveOid: string | undefined;
      try {
        curveOid = ai.params && oidText(new DerReader(ai.params).read(TAG.OID).value);
      } catch {
        curveOid = undefined;
      }
      if (!curveOid) fail("invalid ECDSA parameters");
      const curve = CURVES[curveOid];
      if (!curve) fail("unsupported elliptic curve");
      if (key[0] !== 0x04) fail("invalid elliptic curve public key");
      return { info: { type: "ec", curve }, goKnows: true, shifted: undefined };
    }
    case "1.3.101.112":
      if (ai.params) fail("Ed25519 key encoded with illegal parameters");
      if (key.length !== 32) fail("wrong Ed25519 public key size");
      return { info: { type: "ed25519" }, goKnows: true, shifted: key.equals(bits.bytes) ? undefined : key };
    case "1.3.101.110":
      if (ai.params) fail("X25519 key encoded with illegal parameters");
      return { info: { type: "x25519" }, goKnows: true, shifted: undefined };
    case "1.2.840.10040.4.1": {
      if (integerSign(new DerReader(key).read(TAG.INTEGER).value) <= 0) fail("zero or negative DSA parameter");
      const p = new DerReader(new DerReader(ai.params ?? Buffer.alloc(0), "DSA parameters").read(TAG.SEQUENCE).value, "DSA parameters");
      const pqg = [p.read(TAG.INTEGER), p.read(TAG.INTEGER), p.read(TAG.INTEGER)];
      if (pqg.some((x) => integerSign(x.value) <= 0)) fail("zero or negative DSA parameter");
      const pBytes = pqg[0].value[0] === 0 ? pqg[0].value.subarray(1) : pqg[0].value;
      return { info: { type: "dsa", bits: pBytes.length * 8 }, goKnows: true, shifted: undefined };
    }
  }
  return { info: { type: "unknown" }, goKnows: false, shifted: undefined };
}

/** Go's isValidIPMask: ones, then zeros. */
function validMask(mask: Buffer): boolean {
  let seenZero = false;
  for (const b of mask) {
    if (seenZero) {
      if (b !== 0) return false;
      continue;
    }
    if ([0x00, 0x80, 0xc0, 0xe0, 0xf0, 0xf8, 0xfc, 0xfe].includes(b)) seenZero = true;
    else if (b !== 0xff) return false;
  }
  return true;
}

/** Go's parseNameConstraintsExtension: returns the two sets and whether a subtree kind went unhandled. */
function parseNameConstraints(value: Buffer): { permitted: NameConstraintSet; excluded: NameConstraintSet; unhandled: boolean } {
  const outer = new DerReader(value, "NameConstraints");
  const top = new DerReader(outer.read(TAG.SEQUENCE).value, "NameConstraints");
  outer.end();
  const p = top.readOptional(ctx(0, true));
  const e = top.readOptional(ctx(1, true));
  top.end();
  if ((!p && !e) || ((p?.value.length ?? 0) === 0 && (e?.value.length ?? 0) === 0)) fail("empty name constraints extension");
  let unhandled = false;
  const values = (subtrees: Buffer): NameConstraintSet => {
    const set: NameConstraintSet = { dns: [], ip: [], email: [], uri: [] };
    for (const st of children(subtrees, "GeneralSubtrees")) {
      if (st.tag !== TAG.SEQUENCE) fail("invalid NameConstraints extension");
      const base = new DerReader(st.value, "GeneralSubtree").readAny();
      const v = base.value;
      switch (base.tag) {
        case 0x82: {
          const d = v.toString("latin1");
          if (!isIA5(v)) fail("invalid constraint value: invalid IA5String");
          if (!domainNameValid(d, true)) fail(`failed to parse dnsName constraint "${d}"`);
          set.dns.push(d);
          break;
        }
        case 0x87: {
          if (v.length !== 8 && v.length !== 32) fail(`IP constraint contained value of length ${v.length}`);
          const half = v.length / 2;
          const mask = v.subarray(half);
          if (!validMask(mask)) fail(`IP constraint contained invalid mask ${mask.toString("hex")}`);
          set.ip.push({ ip: Buffer.from(v.subarray(0, half)), mask: Buffer.from(mask) });
          break;
        }
        case 0x81: {
          const c = v.toString("latin1");
          if (!isIA5(v)) fail("invalid constraint value: invalid IA5String");
          if (c.includes("@") ? !parseMailbox(c) : !domainNameValid(c, true)) fail(`failed to parse rfc822Name constraint "${c}"`);
          set.email.push(c);
          break;
        }
        case 0x86: {
          const d = v.toString("latin1");
          if (!isIA5(v)) fail("invalid constraint value: invalid IA5String");
          if (parseIp(d) !== undefined) fail(`failed to parse URI constraint "${d}": cannot be IP address`);
          if (!domainNameValid(d, true)) fail(`failed to parse URI constraint "${d}"`);
          set.uri.push(d);
          break;
        }
        default:
          unhandled = true;
      }
    }
    return set;
  };
  return { permitted: values(p?.value ?? Buffer.alloc(0)), excluded: values(e?.value ?? Buffer.alloc(0)), unhandled };
}

/** Host of a URI as Go's url.Parse would give it (authority minus user info), or "" when there is none. */
function uriHost(uri: string): string {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(uri);
  if (!m) return "";
  return m[1].replace(/^.*@/, "");
}

function readBoolean(e: Element): boolean {
  if (e.value.length !== 1 || (e.value[0] !== 0 && e.value[0] !== 0xff)) fail("malformed boolean");
  return e.value[0] === 0xff;
}

/** Parses one DER certificate as Go's x509.ParseCertificate would; throws with Go's reason when Go would refuse it. */
export function parseCertificate(der: Buffer, source: string): CertInfo {
  try {
    return parse(der, source);
  } catch (e) {
    if (e instanceof DerError) throw e;
    throw new DerError(`x509: ${(e as Error).message}`);
  }
}

function parse(der: Buffer, source: string): CertInfo {
  const top = new DerReader(der, "certificate");
  const certEl = top.read(TAG.SEQUENCE);
  if (!top.empty()) fail("trailing data");
  const cert = new DerReader(certEl.value, "certificate");
  const tbsEl = cert.read(TAG.SEQUENCE);
  const tbs = new DerReader(tbsEl.value, "tbsCertificate");

  let version = 0;
  const v = tbs.readOptional(ctx(0, true));
  if (v) {
    const r = new DerReader(v.value, "version");
    const int = r.read(TAG.INTEGER).value;
    if (integerSign(int) < 0) fail("malformed version");
    version = int.length > 1 ? 99 : int[0];
  }
  version += 1;
  if (version > 3) fail("invalid version");

  if (integerSign(tbs.read(TAG.INTEGER).value) < 0) fail("negative serial number");
  const innerSig = tbs.read(TAG.SEQUENCE);
  const outerSig = cert.read(TAG.SEQUENCE);
  if (!innerSig.value.equals(outerSig.value)) fail("inner and outer signature algorithm identifiers don't match");
  const sig = signatureAlgorithm(innerSig.value);

  const issuerEl = tbs.read(TAG.SEQUENCE);
  const issuerName = parseName(issuerEl.full);
  const validity = new DerReader(tbs.read(TAG.SEQUENCE).value, "validity");
  const notBefore = parseTime(validity.readAny());
  const notAfter = parseTime(validity.readAny());
  const subjectEl = tbs.read(TAG.SEQUENCE);
  const subjectName = parseName(subjectEl.full);
  const commonName = subjectName.commonName;
  const spkiEl = tbs.read(TAG.SEQUENCE);
  const { info: key, goKnows, shifted } = describeKey(spkiEl.full);

  let basicConstraintsValid = false;
  let isCA = false;
  let maxPathLen = -1;
  let keyUsageBits = 0;
  let keyUsage: CertInfo["keyUsage"];
  const extKeyUsage: string[] = [];
  const dnsNames: string[] = [];
  const ipBytes: Buffer[] = [];
  const emailAddresses: string[] = [];
  const uris: string[] = [];
  let sanValue: Buffer | undefined;
  let hasNameConstraints = false;
  let permitted: NameConstraintSet | undefined;
  let excluded: NameConstraintSet | undefined;
  let subjectKeyId = "";
  let authorityKeyId = "";
  const caIssuersUrls: string[] = [];
  const policies: string[] = [];
  const policyMappings: { issuer: string; subject: string }[] = [];
  let requireExplicitPolicy: number | undefined;
  let inhibitPolicyMapping: number | undefined;
  let inhibitAnyPolicy: number | undefined;
  const unhandledCritical: string[] = [];

  if (version > 1) {
    tbs.readOptional(ctx(1));
    tbs.readOptional(ctx(2));
    const extsEl = version === 3 ? tbs.readOptional(ctx(3, true)) : undefined;
    if (extsEl) {
      const exts = new DerReader(new DerReader(extsEl.value, "extensions").read(TAG.SEQUENCE).value, "extensions");
      const seen = new Set<string>();
      while (!exts.empty()) {
        const r = new DerReader(exts.read(TAG.SEQUENCE).value, "extension");
        const oid = oidText(r.read(TAG.OID).value);
        const critEl = r.readOptional(TAG.BOOLEAN);
        const critical = critEl ? readBoolean(critEl) : false;
        const value = r.read(TAG.OCTET_STRING).value;
        if (seen.has(oid)) fail(`certificate contains duplicate extension with OID "${oid}"`);
        seen.add(oid);
        let unhandled = false;
        switch (oid) {
          case "2.5.29.15": {
            const bits = bitString(new DerReader(value, "keyUsage").read(TAG.BIT_STRING).value);
            const names: string[] = [];
            for (let i = 0; i < 9; i++) {
              if (i < bits.bitLength && bits.bytes[i >> 3] & (0x80 >> (i & 7))) {
                keyUsageBits |= 1 << i;
                names.push(KEY_USAGE_NAMES[i]);
              }
            }
            keyUsage = { keyCertSign: (keyUsageBits & 32) !== 0, names };
            break;
          }
          case "2.5.29.19": {
            const bc = new DerReader(new DerReader(value, "basicConstraints").read(TAG.SEQUENCE).value, "basicConstraints");
            const ca = bc.readOptional(TAG.BOOLEAN);
            isCA = ca ? readBoolean(ca) : false;
            const pl = bc.readOptional(TAG.INTEGER);
            maxPathLen = pl ? int64(pl.value) : -1;
            if (pl && maxPathLen < 0) fail("invalid basic constraints");
            basicConstraintsValid = true;
            break;
          }
          case "2.5.29.17": {
            sanValue = value;
            for (const gn of children(new DerReader(value, "subjectAltName").read(TAG.SEQUENCE).value, "subjectAltName")) {
              const text = gn.value.toString("latin1");
              switch (gn.tag) {
                case 0x81:
                  if (!isIA5(gn.value)) fail("SAN rfc822Name is malformed");
                  emailAddresses.push(text);
                  break;
                case 0x82:
                  if (!isIA5(gn.value)) fail("SAN dNSName is malformed");
                  dnsNames.push(text);
                  break;
                case 0x86: {
                  if (!isIA5(gn.value)) fail("SAN uniformResourceIdentifier is malformed");
                  const host = uriHost(text);
                  if (host.length > 0 && !domainNameValid(host, false)) fail(`cannot parse URI "${text}": invalid domain`);
                  uris.push(text);
                  break;
                }
                case 0x87:
                  if (gn.value.length !== 4 && gn.value.length !== 16) fail(`cannot parse IP address of length ${gn.value.length}`);
                  ipBytes.push(Buffer.from(gn.value));
                  break;
              }
            }
            unhandled = dnsNames.length + emailAddresses.length + ipBytes.length + uris.length === 0;
            break;
          }
          case "2.5.29.30": {
            hasNameConstraints = true;
            const nc = parseNameConstraints(value);
            permitted = nc.permitted;
            excluded = nc.excluded;
            unhandled = nc.unhandled;
            break;
          }
          case "2.5.29.35": {
            if (critical) fail("authority key identifier incorrectly marked critical");
            const aki = new DerReader(new DerReader(value, "authorityKeyIdentifier").read(TAG.SEQUENCE).value, "authorityKeyIdentifier");
            const id = aki.readOptional(ctx(0));
            if (id) authorityKeyId = id.value.toString("hex");
            break;
          }
          case "2.5.29.14":
            if (critical) fail("subject key identifier incorrectly marked critical");
            subjectKeyId = new DerReader(value, "subjectKeyIdentifier").read(TAG.OCTET_STRING).value.toString("hex");
            break;
          case "2.5.29.37":
            for (const e of children(new DerReader(value, "extKeyUsage").read(TAG.SEQUENCE).value, "extKeyUsage")) {
              if (e.tag !== TAG.OID) fail("invalid extended key usages");
              extKeyUsage.push(oidText(e.value));
            }
            break;
          case "2.5.29.32": {
            const seenPolicies = new Set<string>();
            for (const pi of children(new DerReader(value, "certificatePolicies").read(TAG.SEQUENCE).value, "certificatePolicies")) {
              if (pi.tag !== TAG.SEQUENCE) fail("invalid certificate policies");
              const oid = new DerReader(pi.value, "policy").read(TAG.OID).value;
              oidText(oid);
              const id = oid.toString("hex");
              if (seenPolicies.has(id)) fail("invalid certificate policies");
              seenPolicies.add(id);
              policies.push(id);
            }
            break;
          }
          // cRLDistributionPoints: only Go's structural checks (a malformed one makes the certificate
          // unparseable); revocation is not part of what Verify decides.
          case "2.5.29.31":
            for (const dp of children(new DerReader(value, "cRLDistributionPoints").read(TAG.SEQUENCE).value, "cRLDistributionPoints")) {
              if (dp.tag !== TAG.SEQUENCE) fail("invalid CRL distribution point");
              const name = new DerReader(dp.value, "distributionPoint").readOptional(ctx(0, true));
              if (!name) continue;
              const full = new DerReader(name.value, "distributionPoint").read(ctx(0, true));
              const uris = new DerReader(full.value, "fullName");
              while (uris.peekTag() === ctx(6)) uris.readAny();
            }
            break;
          case "2.5.29.36": {
            const pc = new DerReader(new DerReader(value, "policyConstraints").read(TAG.SEQUENCE).value, "policyConstraints");
            const req = pc.readOptional(ctx(0));
            if (req) requireExplicitPolicy = int64(req.value);
            const inh = pc.readOptional(ctx(1));
            if (inh) inhibitPolicyMapping = int64(inh.value);
            break;
          }
          case "2.5.29.33":
            for (const m of children(new DerReader(value, "policyMappings").read(TAG.SEQUENCE).value, "policyMappings")) {
              if (m.tag !== TAG.SEQUENCE) fail("invalid policy mappings extension");
              const r2 = new DerReader(m.value, "policyMapping");
              policyMappings.push({ issuer: r2.read(TAG.OID).value.toString("hex"), subject: r2.read(TAG.OID).value.toString("hex") });
            }
            break;
          case "2.5.29.54":
            inhibitAnyPolicy = int64(new DerReader(value, "inhibitAnyPolicy").read(TAG.INTEGER).value);
            break;
          case "1.3.6.1.5.5.7.1.1":
            if (critical) fail("authority info access incorrectly marked critical");
            for (const ad of children(new DerReader(value, "authorityInfoAccess").read(TAG.SEQUENCE).value, "authorityInfoAccess")) {
              if (ad.tag !== TAG.SEQUENCE) fail("invalid authority info access");
              const r2 = new DerReader(ad.value, "access description");
              const method = oidText(r2.read(TAG.OID).value);
              const loc = r2.readOptional(ctx(6));
              if (loc && method === "1.3.6.1.5.5.7.48.2") caIssuersUrls.push(loc.value.toString("latin1"));
            }
            break;
          default:
            unhandled = true;
        }
        if (critical && unhandled) unhandledCritical.push(oid);
      }
    }
  }
  const signature = rightAlign(bitString(cert.read(TAG.BIT_STRING).value));

  // node:crypto (OpenSSL) for the key object, the fingerprint and the display names. A key Go can parse
  // but OpenSSL cannot (an EC point off its curve) Go refuses too; a certificate OpenSSL refuses but Go
  // parses (OpenSSL is stricter on some encodings) keeps our own display names.
  let publicKey: KeyObject | undefined;
  if (goKnows) {
    try {
      publicKey = shifted
        ? createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: shifted.toString("base64url") }, format: "jwk" })
        : createPublicKey({ key: spkiEl.full, format: "der", type: "spki" });
    } catch (e) {
      if (key.type !== "dsa" && key.type !== "x25519") fail(`invalid ${describePublicKey(key)} public key (${(e as Error).message})`);
    }
  }
  let x509: X509Certificate | undefined;
  try {
    x509 = new X509Certificate(der);
  } catch {
    x509 = undefined;
  }
  return {
    x509,
    der,
    source,
    subject: x509 ? (x509.subject ?? "").replace(/\n/g, ", ") : subjectName.text,
    issuer: x509 ? (x509.issuer ?? "").replace(/\n/g, ", ") : issuerName.text,
    rawSubject: Buffer.from(subjectEl.full),
    rawIssuer: Buffer.from(issuerEl.full),
    rawSubjectPublicKeyInfo: Buffer.from(spkiEl.full),
    rawTbs: Buffer.from(tbsEl.full),
    signature: Buffer.from(signature),
    version,
    notBefore,
    notAfter,
    fingerprint256: createHash("sha256").update(der).digest("hex").toUpperCase().replace(/(..)(?!$)/g, "$1:"),
    basicConstraintsValid,
    isCA,
    maxPathLen,
    keyUsageBits,
    keyUsage,
    extKeyUsage,
    dnsNames,
    ipAddresses: ipBytes.map((b) => ipText(b) ?? b.toString("hex")),
    ipBytes,
    emailAddresses,
    uris,
    hasSanExtension: sanValue !== undefined,
    sanValue,
    commonName,
    hasNameConstraints,
    permitted,
    excluded,
    subjectKeyId,
    authorityKeyId,
    caIssuersUrls,
    policies,
    policyMappings,
    requireExplicitPolicy,
    inhibitPolicyMapping,
    inhibitAnyPolicy,
    unhandledCritical,
    signatureOid: sig.oid,
    signatureName: sig.alg?.name ?? sig.oid,
    signatureAlgorithm: sig.alg,
    insecureSignature: sig.alg?.insecure === true,
    publicKey,
    key,
    selfIssued: issuerEl.full.equals(subjectEl.full),
  };
}

/** A short, human description of a key, e.g. "EC P-256" or "RSA 2048". */
export function describePublicKey(k: PublicKeyInfo): string {
  if (k.type === "ec") return `EC ${k.curve === "prime256v1" ? "P-256" : k.curve === "secp384r1" ? "P-384" : k.curve === "secp521r1" ? "P-521" : k.curve === "secp224r1" ? "P-224" : k.curve}`;
  if (k.type === "rsa" || k.type === "rsa-pss") return `RSA ${k.bits}`;
  return k.type.toUpperCase();
}

/** What stack outputs and reports show of a certificate. */
export interface CertSummary {
  readonly subject: string;
  readonly issuer: string;
  readonly sha256: string;
  readonly notBefore: string;
  readonly notAfter: string;
}

export function summarizeCert(c: CertInfo): CertSummary {
  return { subject: c.subject, issuer: c.issuer, sha256: c.fingerprint256, notBefore: c.notBefore.toISOString(), notAfter: c.notAfter.toISOString() };
}
