import { BlockList, isIP } from "node:net";
import { CertInfo, NameConstraintSet } from "./cert";

/*
 * Host name and name-constraint matching with the semantics of Go's crypto/x509 (verify.go), which is what
 * containerd, the kubelet and dockerd use. Node's X509Certificate.checkHost follows OpenSSL instead (it
 * falls back to the subject CN and has other wildcard rules), so it would accept certificates Go refuses.
 */

function stripBrackets(host: string): string {
  return host.length >= 3 && host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

function family(ip: string): "ipv4" | "ipv6" {
  return isIP(ip) === 6 ? "ipv6" : "ipv4";
}

export function isIpLiteral(host: string): boolean {
  return isIP(stripBrackets(host)) !== 0;
}

function ipEquals(a: string, b: string): boolean {
  if (isIP(a) !== isIP(b)) return false;
  const list = new BlockList();
  list.addAddress(a, family(a));
  return list.check(b, family(b));
}

function validHostname(host: string, isPattern: boolean): boolean {
  if (!isPattern) host = host.replace(/\.$/, "");
  if (host.length === 0 || host === "*") return false;
  return host.split(".").every((part, i) => {
    if (part === "") return false;
    if (isPattern && i === 0 && part === "*") return true;
    return [...part].every((c, j) => /[a-zA-Z0-9_]/.test(c) || (c === "-" && j !== 0));
  });
}

const lower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

function matchExactly(a: string, b: string): boolean {
  if (a === "" || a === "." || b === "" || b === ".") return false;
  return lower(a) === lower(b);
}

function matchHostnames(pattern: string, host: string): boolean {
  pattern = lower(pattern);
  host = lower(host.replace(/\.$/, ""));
  if (!pattern || !host) return false;
  const p = pattern.split(".");
  const h = host.split(".");
  if (p.length !== h.length) return false;
  return p.every((part, i) => (i === 0 && part === "*") || part === h[i]);
}

export type HostnameResult = { ok: true } | { ok: false; cnOnly: boolean };

/** Go's Certificate.VerifyHostname: IPs match IP SANs only; names match DNS SANs only; no CN fallback. */
export function verifyHostname(cert: CertInfo, host: string): HostnameResult {
  const candidateIp = stripBrackets(host);
  if (isIP(candidateIp)) {
    return cert.ipAddresses.some((ip) => ipEquals(ip, candidateIp)) ? { ok: true } : { ok: false, cnOnly: false };
  }
  const name = lower(host);
  const validName = validHostname(name, false);
  for (const pattern of cert.dnsNames) {
    const hit = validName && validHostname(pattern, true) ? matchHostnames(pattern, name) : matchExactly(pattern, name);
    if (hit) return { ok: true };
  }
  const cnOnly = !cert.hasSanExtension && cert.commonName !== undefined && validHostname(cert.commonName, false);
  return { ok: false, cnOnly };
}

function reverseLabels(domain: string): string[] | undefined {
  if (domain === "") return [];
  const labels = domain.split(".").reverse();
  if (labels.some((l) => l === "" || /[^\x00-\x7f]/.test(l))) return undefined;
  return labels;
}

/** Go's matchDomainConstraint (a leading dot demands at least one more label). */
function matchDomainConstraint(domain: string, constraint: string): boolean {
  if (constraint.length === 0) return true;
  const d = reverseLabels(domain);
  let mustHaveSubdomains = false;
  if (constraint.startsWith(".")) {
    mustHaveSubdomains = true;
    constraint = constraint.slice(1);
  }
  const c = reverseLabels(constraint);
  if (!d || !c) return false;
  if (d.length < c.length || (mustHaveSubdomains && d.length === c.length)) return false;
  return c.every((label, i) => lower(label) === lower(d[i]));
}

function ipInSubnet(ip: string, cidr: string): boolean {
  const [net, prefix] = cidr.split("/");
  if (isIP(ip) !== isIP(net)) return false;
  const list = new BlockList();
  list.addSubnet(net, Number(prefix), family(net));
  return list.check(ip, family(ip));
}

/** The names of `leaf` that the CA's name constraints refuse, as Go's checkNameConstraints would. */
export function nameConstraintViolations(ca: CertInfo, leaf: CertInfo): string[] {
  const violations: string[] = [];
  const check = (
    names: string[],
    permitted: string[] | undefined,
    excluded: string[] | undefined,
    match: (name: string, constraint: string) => boolean,
  ) => {
    for (const name of names) {
      if (excluded?.some((c) => match(name, c))) violations.push(`${name} is excluded`);
      else if (permitted && permitted.length > 0 && !permitted.some((c) => match(name, c))) violations.push(`${name} is not permitted`);
    }
  };
  const p: NameConstraintSet | undefined = ca.permitted;
  const e: NameConstraintSet | undefined = ca.excluded;
  check(leaf.dnsNames, p?.dns, e?.dns, matchDomainConstraint);
  check(leaf.ipAddresses, p?.ip, e?.ip, ipInSubnet);
  return violations;
}
