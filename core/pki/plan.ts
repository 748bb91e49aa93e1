import { isIP } from "node:net";
import { KeyAlgorithm } from "../config/model";
import { Endpoint } from "../endpoint";
import { CertSummary, summarizeCert } from "../x509/cert";
import { parsePemCertificates } from "../x509/pem";

/** Generations whose CA is in the bundle, newest first: the current one and `retain` before it. */
export function bundleGenerations(generation: number, retain: number): number[] {
  const out: number[] = [];
  for (let g = generation; g >= Math.max(1, generation - retain); g--) out.push(g);
  return out;
}

/** @pulumi/tls PrivateKey arguments; the curve is always explicit because the provider's default is P-224. */
export function tlsKeyArgs(alg: KeyAlgorithm): { algorithm: "ECDSA" | "RSA"; ecdsaCurve?: string; rsaBits?: number } {
  switch (alg) {
    case "ECDSA-P256": return { algorithm: "ECDSA", ecdsaCurve: "P256" };
    case "ECDSA-P384": return { algorithm: "ECDSA", ecdsaCurve: "P384" };
    case "RSA-3072": return { algorithm: "RSA", rsaBits: 3072 };
    case "RSA-4096": return { algorithm: "RSA", rsaBits: 4096 };
  }
}

/** DNS and IP subjectAltNames covering every endpoint, deduplicated, in endpoint order. */
export function servingSans(endpoints: readonly Endpoint[]): { dnsNames: string[]; ipAddresses: string[] } {
  const dnsNames = [...new Set(endpoints.filter((e) => !isIP(e.host)).map((e) => e.host))];
  const ipAddresses = [...new Set(endpoints.filter((e) => isIP(e.host)).map((e) => e.host))];
  return { dnsNames, ipAddresses };
}


/** Subject, fingerprint and validity of every certificate in a PEM text, for stack outputs. */
export function summarize(pem: string): CertSummary[] {
  return parsePemCertificates(pem, "pem").certs.map(summarizeCert);
}

