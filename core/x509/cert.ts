import { X509Certificate, KeyObject } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as x509 from "@peculiar/asn1-x509";
import * as asn1js from "asn1js";

/** OIDs of extensions Go's crypto/x509 parser understands; any other critical extension makes Go refuse the certificate. */
const GO_HANDLED_EXTENSIONS = new Set([
  "2.5.29.14", // subjectKeyIdentifier
  "2.5.29.15", // keyUsage
  "2.5.29.17", // subjectAltName (handled only when it yields a name Go parses)
  "2.5.29.19", // basicConstraints
  "2.5.29.30", // nameConstraints (handled only for DNS, IP, email, URI subtrees)
  "2.5.29.31", // cRLDistributionPoints
  "2.5.29.32", // certificatePolicies
  "2.5.29.33", // policyMappings
  "2.5.29.35", // authorityKeyIdentifier
  "2.5.29.36", // policyConstraints
  "2.5.29.37", // extKeyUsage
  "2.5.29.54", // inhibitAnyPolicy
  "1.3.6.1.5.5.7.1.1", // authorityInfoAccess
]);

export const EKU_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
export const EKU_ANY = "2.5.29.37.0";

/** Signature algorithms Go refuses outright (crypto/x509 InsecureAlgorithmError). */
const INSECURE_SIGNATURE_OIDS: Record<string, string> = {
  "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
  "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
  "1.2.840.10045.4.1": "ecdsa-with-SHA1",
  "1.2.840.10040.4.3": "dsa-with-SHA1",
  "1.2.840.113549.1.1.2": "md2WithRSAEncryption",
};

const SIGNATURE_NAMES: Record<string, string> = {
  ...INSECURE_SIGNATURE_OIDS,
  "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
  "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
  "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
  "1.2.840.113549.1.1.10": "rsassaPss",
  "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
  "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
  "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
  "1.3.101.112": "ed25519",
};

export interface NameConstraintSet {
  readonly dns: string[];
  /** Subnets as CIDR text, e.g. "10.0.0.0/8". */
  readonly ip: string[];
}

export interface PublicKeyInfo {
  readonly type: string; // "rsa" | "ec" | "ed25519" | "rsa-pss" | "dsa" | …
  readonly bits?: number;
  readonly curve?: string;
}

/** One parsed certificate: node:crypto for crypto operations, an ASN.1 decoder for the fields node does not expose. */
export interface CertInfo {
  readonly x509: X509Certificate;
  readonly der: Buffer;
  /** Where it came from, e.g. "bundle#2" or "chain#0", for messages. */
  readonly source: string;
  readonly subject: string;
  readonly issuer: string;
  /** DER of the subject and issuer Names: Go matches issuers to parents on these exact bytes. */
  readonly rawSubject: Buffer;
  readonly rawIssuer: Buffer;
  readonly version: number; // 1 or 3 (as in X.509: the DER value + 1)
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly fingerprint256: string;
  readonly basicConstraintsValid: boolean;
  readonly isCA: boolean;
  /** -1 when unlimited, as Go's MaxPathLen. */
  readonly maxPathLen: number;
  /** keyUsage bits (RFC 5280 order, bit 0 = digitalSignature), or undefined when the extension is absent. */
  readonly keyUsage?: { readonly keyCertSign: boolean; readonly names: string[] };
  readonly extKeyUsage: string[];
  readonly dnsNames: string[];
  /** IP SANs in canonical text form. */
  readonly ipAddresses: string[];
  readonly hasSanExtension: boolean;
  readonly commonName?: string;
  readonly permitted?: NameConstraintSet;
  readonly excluded?: NameConstraintSet;
  readonly subjectKeyId?: string;
  readonly authorityKeyId?: string;
  readonly caIssuersUrls: string[];
  readonly unhandledCritical: string[];
  readonly signatureOid: string;
  readonly signatureName: string;
  readonly insecureSignature: boolean;
  readonly publicKey: KeyObject;
  readonly key: PublicKeyInfo;
  readonly selfIssued: boolean;
}

function rawChildren(der: Buffer): { rawIssuer: Buffer; rawSubject: Buffer; version: number } {
  const parsed = asn1js.fromBER(new Uint8Array(der));
  if (parsed.offset === -1) throw new Error(parsed.result.error || "invalid DER");
  const tbs = (parsed.result as asn1js.Sequence).valueBlock.value[0] as asn1js.Sequence;
  const fields = tbs.valueBlock.value;
  // The explicit [0] version is optional; when absent the certificate is v1.
  const hasVersion = fields[0].idBlock.tagClass === 3 && fields[0].idBlock.tagNumber === 0;
  const at = hasVersion ? 1 : 0;
  const raw = (b: asn1js.AsnType) => Buffer.from(b.toBER(false));
  const versionValue = hasVersion
    ? ((fields[0] as asn1js.Constructed).valueBlock.value[0] as asn1js.Integer).valueBlock.valueDec
    : 0;
  return { rawIssuer: raw(fields[at + 2]), rawSubject: raw(fields[at + 4]), version: versionValue + 1 };
}

function constraintSet(subtrees: x509.GeneralSubtrees | undefined): { set?: NameConstraintSet; unsupported: boolean } {
  if (!subtrees) return { unsupported: false };
  const set: NameConstraintSet = { dns: [], ip: [] };
  let unsupported = false;
  for (const st of subtrees) {
    if (st.base.dNSName !== undefined) set.dns.push(st.base.dNSName);
    else if (st.base.iPAddress !== undefined) {
      // In a name constraint the octets are address || mask; the decoder renders them as CIDR text.
      set.ip.push(st.base.iPAddress);
    } else if (st.base.rfc822Name !== undefined || st.base.uniformResourceIdentifier !== undefined) {
      // Go enforces these kinds too, but they never constrain a registry's serving name; treated as satisfied.
    } else unsupported = true;
  }
  return { set, unsupported };
}

function describeKey(key: KeyObject): PublicKeyInfo {
  const type = key.asymmetricKeyType ?? "unknown";
  const d = key.asymmetricKeyDetails ?? {};
  return { type, bits: d.modulusLength, curve: d.namedCurve };
}

/** Parses one DER certificate. Throws with a readable message when the DER is not a certificate. */
export function parseCertificate(der: Buffer, source: string): CertInfo {
  const cert = new X509Certificate(der);
  const asn = AsnConvert.parse(der, x509.Certificate);
  const tbs = asn.tbsCertificate;
  const { rawIssuer, rawSubject, version } = rawChildren(der);

  let basicConstraintsValid = false;
  let isCA = false;
  let maxPathLen = -1;
  let keyUsage: CertInfo["keyUsage"];
  let extKeyUsage: string[] = [];
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  let hasSanExtension = false;
  let permitted: NameConstraintSet | undefined;
  let excluded: NameConstraintSet | undefined;
  let subjectKeyId: string | undefined;
  let authorityKeyId: string | undefined;
  const caIssuersUrls: string[] = [];
  const unhandledCritical: string[] = [];

  for (const ext of tbs.extensions ?? []) {
    const value = ext.extnValue.buffer;
    let handled = GO_HANDLED_EXTENSIONS.has(ext.extnID);
    switch (ext.extnID) {
      case x509.id_ce_basicConstraints: {
        const bc = AsnConvert.parse(value, x509.BasicConstraints);
        basicConstraintsValid = true;
        isCA = bc.cA;
        if (bc.pathLenConstraint !== undefined) maxPathLen = bc.pathLenConstraint;
        break;
      }
      case x509.id_ce_keyUsage: {
        const ku = AsnConvert.parse(value, x509.KeyUsage);
        const names = ku.toJSON();
        keyUsage = { keyCertSign: names.includes("keyCertSign"), names };
        break;
      }
      case x509.id_ce_extKeyUsage:
        extKeyUsage = [...AsnConvert.parse(value, x509.ExtendedKeyUsage)];
        break;
      case x509.id_ce_subjectAltName: {
        hasSanExtension = true;
        const san = AsnConvert.parse(value, x509.SubjectAlternativeName);
        let parsedAny = false;
        for (const gn of san) {
          if (gn.dNSName !== undefined) dnsNames.push(gn.dNSName);
          else if (gn.iPAddress !== undefined) ipAddresses.push(gn.iPAddress);
          if (gn.dNSName !== undefined || gn.iPAddress !== undefined || gn.rfc822Name !== undefined || gn.uniformResourceIdentifier !== undefined) parsedAny = true;
        }
        handled = parsedAny;
        break;
      }
      case x509.id_ce_nameConstraints: {
        const nc = AsnConvert.parse(value, x509.NameConstraints);
        const p = constraintSet(nc.permittedSubtrees);
        const e = constraintSet(nc.excludedSubtrees);
        permitted = p.set;
        excluded = e.set;
        handled = !(p.unsupported || e.unsupported);
        break;
      }
      case x509.id_ce_subjectKeyIdentifier:
        subjectKeyId = Buffer.from(AsnConvert.parse(value, x509.SubjectKeyIdentifier).buffer).toString("hex");
        break;
      case x509.id_ce_authorityKeyIdentifier: {
        const aki = AsnConvert.parse(value, x509.AuthorityKeyIdentifier);
        if (aki.keyIdentifier) authorityKeyId = Buffer.from(aki.keyIdentifier.buffer).toString("hex");
        break;
      }
      case x509.id_pe_authorityInfoAccess:
        for (const ad of AsnConvert.parse(value, x509.AuthorityInfoAccessSyntax)) {
          if (ad.accessMethod === x509.id_ad_caIssuers && ad.accessLocation.uniformResourceIdentifier) {
            caIssuersUrls.push(ad.accessLocation.uniformResourceIdentifier);
          }
        }
        break;
    }
    if (ext.critical && !handled) unhandledCritical.push(ext.extnID);
  }

  const signatureOid = asn.signatureAlgorithm.algorithm;
  const cnMatch = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
  return {
    x509: cert,
    der,
    source,
    subject: cert.subject.replace(/\n/g, ", "),
    issuer: cert.issuer.replace(/\n/g, ", "),
    rawSubject,
    rawIssuer,
    version,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    fingerprint256: cert.fingerprint256,
    basicConstraintsValid,
    isCA,
    maxPathLen,
    keyUsage,
    extKeyUsage,
    dnsNames,
    ipAddresses,
    hasSanExtension,
    commonName: cnMatch?.[1],
    permitted,
    excluded,
    subjectKeyId,
    authorityKeyId,
    caIssuersUrls,
    unhandledCritical,
    signatureOid,
    signatureName: SIGNATURE_NAMES[signatureOid] ?? signatureOid,
    insecureSignature: signatureOid in INSECURE_SIGNATURE_OIDS,
    publicKey: cert.publicKey,
    key: describeKey(cert.publicKey),
    selfIssued: rawIssuer.equals(rawSubject),
  };
}

/** A short, human description of a key, e.g. "EC P-256" or "RSA 2048". */
export function describePublicKey(k: PublicKeyInfo): string {
  if (k.type === "ec") return `EC ${k.curve === "prime256v1" ? "P-256" : k.curve === "secp384r1" ? "P-384" : k.curve === "secp521r1" ? "P-521" : k.curve}`;
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
