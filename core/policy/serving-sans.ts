import { isIP } from "node:net";
import { PROJECT } from "../config/schema";
import { endpointKey } from "../endpoint";
import { StackFacts } from "./stack-facts";
import { REGISTRY_PKI, TLS_CERT_REQUEST, TLS_SELF_SIGNED_CERT, isUnknown, parentType } from "./resources";

/*
 * The serving certificate RegistryPki issues must name every registry endpoint of the stack
 * (`registry-trust:registries`), or pulls through an uncovered one fail with an x509 hostname mismatch.
 * Checked on what the certificate is made from, before it exists: the CertRequest RegistryPki has signed
 * (its only one), or a non-CA SelfSignedCert under RegistryPki.
 */

export interface Sans {
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
}

const normIp = (ip: string) => (isIP(ip) === 6 ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip);
const normDns = (name: string) => name.toLowerCase().replace(/\.$/, "");

/** Whether the SANs cover a host: an IP SAN for an IP, else an exact or single-label wildcard DNS SAN. */
export function covers(sans: Sans, host: string): boolean {
  if (isIP(host)) return sans.ipAddresses.some((ip) => isIP(ip) > 0 && normIp(ip) === normIp(host));
  const h = normDns(host);
  return sans.dnsNames.some((raw) => {
    const n = normDns(raw);
    if (!n.startsWith("*.")) return n === h;
    const dot = h.indexOf(".");
    return dot > 0 && h.slice(dot + 1) === n.slice(2);
  });
}

/** True for the resources this rule applies to: RegistryPki's serving certificate request or certificate. */
export function isServingCertificateSource(type: string, urn: string, props: Readonly<Record<string, unknown>>): boolean {
  if (parentType(urn) !== REGISTRY_PKI) return false;
  return type === TLS_CERT_REQUEST || (type === TLS_SELF_SIGNED_CERT && props.isCaCertificate === false);
}

function stringList(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) && v.every((x) => typeof x === "string") ? v : undefined;
}

/** The problem with a serving certificate's requested SANs given the stack's endpoints, or undefined. */
export function servingSanProblem(facts: StackFacts, props: Readonly<Record<string, unknown>>): string | undefined {
  if (isUnknown(props.dnsNames) || isUnknown(props.ipAddresses)) return undefined;
  if (!facts.registries) return `cannot check the SANs against the registry endpoints: ${facts.registriesProblem}`;
  const dnsNames = stringList(props.dnsNames);
  const ipAddresses = stringList(props.ipAddresses);
  if (!dnsNames || !ipAddresses) return "dnsNames/ipAddresses are not lists of strings";
  const missing = facts.registries.filter((e) => !covers({ dnsNames, ipAddresses }, e.host));
  if (missing.length === 0) return undefined;
  const has = [...dnsNames.map((d) => `DNS:${d}`), ...ipAddresses.map((i) => `IP:${i}`)].join(", ") || "none";
  return `the serving certificate does not cover ${missing.map(endpointKey).join(", ")} from ${PROJECT}:registries (its SANs: ${has}): pulls from ${missing.length === 1 ? "that endpoint" : "those endpoints"} fail with an x509 hostname mismatch. Fix: give RegistryPki every endpoint in ${PROJECT}:registries`;
}
