import { isIP } from "node:net";
import type { CertInfo, IpNet } from "./cert";

/*
 * Host name and name-constraint matching with the semantics of Go's crypto/x509 (verify.go, constraints.go),
 * which is what containerd, the kubelet and dockerd use. Node's X509Certificate.checkHost follows OpenSSL
 * instead (it falls back to the subject CN and has other wildcard rules), so it would accept certificates
 * Go refuses.
 */

function stripBrackets(host: string): string {
  return host.length >= 3 && host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** Go's net.ParseIP: 4 bytes for dotted IPv4, 16 for IPv6; undefined when the text is not an address. */
export function parseIp(text: string): Buffer | undefined {
  const kind = isIP(text);
  if (kind === 4) return Buffer.from(text.split(".").map(Number));
  if (kind !== 6 || text.includes("%")) return undefined;
  let s = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  let tail: number[] = [];
  if (v4) {
    tail = v4[1].split(".").map(Number);
    s = s.slice(0, -v4[1].length) + "0:0";
  }
  const [head, rest] = s.split("::");
  const groups = (x: string) => (x ? x.split(":").map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const r = rest === undefined ? [] : groups(rest);
  const all = rest === undefined ? h : [...h, ...new Array(8 - h.length - r.length).fill(0), ...r];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  if (v4) out.set(tail, 12);
  return out;
}

const V4_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** Go's IP.To4: the 4-byte form of an IPv4 or IPv4-mapped address. */
function to4(ip: Buffer): Buffer | undefined {
  if (ip.length === 4) return ip;
  if (ip.length === 16 && ip.subarray(0, 12).equals(V4_PREFIX)) return ip.subarray(12);
  return undefined;
}

/** Text of a 4- or 16-byte address, as Go's IP.String prints it. */
export function ipText(ip: Buffer): string | undefined {
  const v4 = to4(ip);
  if (v4) return [...v4].join(".");
  if (ip.length !== 16) return undefined;
  const g = Array.from({ length: 8 }, (_, i) => ip.readUInt16BE(i * 2));
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

function ipEqual(a: Buffer, b: Buffer): boolean {
  const a4 = to4(a);
  const b4 = to4(b);
  if (a4 || b4) return !!a4 && !!b4 && a4.equals(b4);
  return a.equals(b);
}

/** Go's isIA5String: every byte ASCII. */
export function isIA5(b: Buffer): boolean {
  return b.every((x) => x < 0x80);
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
  const ip = parseIp(stripBrackets(host));
  if (ip) return cert.ipBytes.some((c) => ipEqual(c, ip)) ? { ok: true } : { ok: false, cnOnly: false };
  const name = lower(host);
  const validName = validHostname(name, false);
  for (const pattern of cert.dnsNames) {
    const hit = validName && validHostname(pattern, true) ? matchHostnames(pattern, name) : matchExactly(pattern, name);
    if (hit) return { ok: true };
  }
  const cnOnly = !cert.hasSanExtension && cert.commonName !== undefined && validHostname(cert.commonName, false);
  return { ok: false, cnOnly };
}

/** Go's domainNameValid (parser.go): no trailing dot, no empty label, printable ASCII. */
export function domainNameValid(s: string, constraint: boolean): boolean {
  if (s.length === 0) return true;
  if (s.endsWith(".")) return false;
  if (constraint && s.startsWith(".")) s = s.slice(1);
  return s.split(".").every((label) => label.length > 0 && [...label].every((c) => c.charCodeAt(0) >= 33 && c.charCodeAt(0) <= 126));
}

export interface Mailbox { readonly local: string; readonly domain: string }

/** Go's parseRFC2821Mailbox: an rfc822Name as a "Mailbox" of RFC 2821. */
export function parseMailbox(s: string): Mailbox | undefined {
  if (s.length === 0) return undefined;
  let local = "";
  let i = 0;
  const code = (k: number) => s.charCodeAt(k);
  if (s[0] === '"') {
    i = 1;
    for (;;) {
      if (i >= s.length) return undefined;
      const c = code(i++);
      if (c === 34) break;
      if (c === 92) {
        if (i >= s.length) return undefined;
        const n = code(i);
        if (n === 11 || n === 12 || (n >= 1 && n <= 9) || (n >= 14 && n <= 127)) {
          local += s[i++];
          continue;
        }
        return undefined;
      }
      if (c === 11 || c === 12 || c === 32 || c === 33 || c === 127 || (c >= 1 && c <= 8) || (c >= 14 && c <= 31) || (c >= 35 && c <= 91) || (c >= 93 && c <= 126)) local += String.fromCharCode(c);
      else return undefined;
    }
  } else {
    while (i < s.length) {
      let c = s[i];
      if (c === "\\") {
        i++;
        if (i >= s.length) return undefined;
        c = s[i];
        local += c;
        i++;
        continue;
      }
      if (/[0-9A-Za-z!#$%&'*+\-/=?^_`{|}~.]/.test(c)) {
        local += c;
        i++;
      } else break;
    }
    if (local.length === 0 || local.startsWith(".") || local.endsWith(".") || local.includes("..")) return undefined;
  }
  if (s[i] !== "@") return undefined;
  const domain = s.slice(i + 1);
  if (!reverseLabelsOk(domain)) return undefined;
  return { local, domain };
}

/** Go's domainToReverseLabels succeeding. */
function reverseLabelsOk(domain: string): boolean {
  if (domain.length === 0) return true;
  return domain.split(".").every((l) => l.length > 0 && [...l].every((c) => c.charCodeAt(0) >= 33 && c.charCodeAt(0) <= 126));
}

/** Go's dnsHasSuffix(constraint, name): a label-wise, ASCII case-insensitive suffix; ".x" needs one more label. */
function dnsHasSuffix(a: string, b: string): boolean {
  const la = a.length, lb = b.length;
  if (la === 0 || la > lb) return false;
  const off = lb - la;
  for (let i = la - 1; i >= 0; i--) {
    let x = a.charCodeAt(i), y = b.charCodeAt(i + off);
    if (x === y) continue;
    if (y < x) [x, y] = [y, x];
    if (x >= 0x41 && x <= 0x5a && y === x + 32) continue;
    return false;
  }
  return !(a[0] !== "." && lb > la && b[off - 1] !== ".");
}

function trimFirstLabel(name: string): string {
  const i = name.indexOf(".");
  return i < 0 ? "" : name.slice(i);
}

/*
 * Go 1.26 checks name constraints with sorted, pruned sets and a binary search (constraints.go), which keeps
 * a CA with thousands of constraints and a leaf with thousands of names cheap (x509-limbo's nc-dos cases).
 * The same structure here, so that the answers — and the cost — follow Go's.
 */

/** Go's sortAndPrune: sort, then drop every constraint that a preceding one already covers. */
function sortAndPrune<T>(set: T[], cmp: (a: T, b: T) => number, subset: (a: T, b: T) => boolean): T[] {
  if (set.length < 2) return set;
  const sorted = [...set].sort(cmp);
  const out = [sorted[0]];
  for (let i = 1; i < sorted.length; i++) if (!subset(out[out.length - 1], sorted[i])) out.push(sorted[i]);
  return out;
}

/** Go's nameConstraintsSet.search: the lower bound, or the constraint just before it, if it matches. */
function search<T, V>(set: readonly T[], s: V, cmp: (c: T, v: V) => number, match: (c: T, v: V) => boolean): T | undefined {
  if (set.length === 0) return undefined;
  let lo = 0, hi = set.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cmp(set[mid], s) < 0) lo = mid + 1;
    else hi = mid;
  }
  if (lo < set.length && cmp(set[lo], s) === 0) return set[lo];
  const c = lo === 0 ? set[0] : set[lo - 1];
  return match(c, s) ? c : undefined;
}

/** Go's dnsCompare: case-insensitive, from the last character, with '.' sorting first. */
function dnsByte(c: number): number {
  if (c === 0x2e) return 0;
  return c >= 0x41 && c <= 0x5a ? c + 32 : c;
}
function dnsCompare(a: string, b: string): number {
  let i = a.length - 1, j = b.length - 1;
  while (i >= 0 && j >= 0) {
    const x = dnsByte(a.charCodeAt(i)), y = dnsByte(b.charCodeAt(j));
    if (x !== y) return x < y ? -1 : 1;
    i--;
    j--;
  }
  return i < j ? -1 : j < i ? 1 : 0;
}

interface DnsConstraints {
  query(name: string): string | undefined;
}

/** Go's newDNSConstraints (undefined for an empty list: no constraint of that kind). */
function dnsConstraints(list: readonly string[], permitted: boolean): DnsConstraints | undefined {
  if (list.length === 0) return undefined;
  if (list.some((c) => c.length === 0)) return { query: () => "" };
  const set = sortAndPrune([...list], dnsCompare, dnsHasSuffix);
  const parents = new Map<string, string>();
  if (!permitted) {
    for (const name of set) {
      const trimmed = trimFirstLabel(name.toLowerCase());
      if (trimmed !== "") parents.set(trimmed, name.toLowerCase());
    }
  }
  return {
    query(s: string) {
      const hit = search(set, s, dnsCompare, dnsHasSuffix);
      if (hit !== undefined) return hit;
      // A wildcard name is also excluded by an excluded name for one of the labels it covers (CVE-2025-61727).
      if (!permitted && s.startsWith("*")) return parents.get(trimFirstLabel(s.toLowerCase()));
      return undefined;
    },
  };
}

/** Go's net.IPNet.Contains (with networkNumberAndMask) for a constraint kept as raw address and mask bytes. */
function ipNetContains(n: IpNet, ip: Buffer): boolean {
  let nn = to4(n.ip);
  if (!nn) {
    nn = n.ip;
    if (nn.length !== 16) return false;
  }
  let m = n.mask;
  if (m.length === 4) {
    if (nn.length !== 4) return false;
  } else if (m.length === 16) {
    if (nn.length === 4) m = m.subarray(12);
  } else return false;
  const x = to4(ip) ?? ip;
  if (x.length !== nn.length) return false;
  for (let i = 0; i < x.length; i++) if ((nn[i] & m[i]) !== (x[i] & m[i])) return false;
  return true;
}

function ipNetSubset(a: IpNet, b: IpNet): boolean {
  if (!ipNetContains(a, b.ip)) return false;
  const broadcast = Buffer.from(b.ip.map((x, i) => x | (~(b.mask[i] ?? 0) & 0xff)));
  return ipNetContains(a, broadcast);
}

interface IpConstraints {
  query(ip: Buffer): IpNet | undefined;
}

/** Go's newIPNetConstraints: IPv4 and IPv6 ranges apart, each sorted and pruned. */
function ipConstraints(list: readonly IpNet[]): IpConstraints | undefined {
  if (list.length === 0) return undefined;
  const cmp = (a: IpNet, b: IpNet) => Buffer.compare(a.ip, b.ip) || Buffer.compare(a.mask, b.mask);
  const v4 = sortAndPrune(list.filter((n) => n.ip.length === 4), cmp, ipNetSubset);
  const v6 = sortAndPrune(list.filter((n) => n.ip.length !== 4), cmp, ipNetSubset);
  return { query: (ip) => search(ip.length === 4 ? v4 : v6, ip, (c, t) => Buffer.compare(c.ip, t), ipNetContains) };
}

interface EmailConstraints {
  query(m: Mailbox): string | undefined;
}

/** Go's newEmailConstraints: whole mailboxes match exactly (domain case-insensitive), bare domains as DNS. */
function emailConstraints(list: readonly string[], permitted: boolean): EmailConstraints | undefined {
  if (list.length === 0) return undefined;
  const exact = new Map<string, string>();
  const domains: string[] = [];
  for (const c of list) {
    if (!c.includes("@")) {
      domains.push(c);
      continue;
    }
    const m = parseMailbox(c);
    if (m) exact.set(`${m.local}@${m.domain.toLowerCase()}`, c);
  }
  const dns = domains.length ? dnsConstraints(domains, permitted) : undefined;
  return { query: (m) => exact.get(`${m.local}@${m.domain}`) ?? dns?.query(m.domain) };
}

interface Built {
  readonly ip: [IpConstraints | undefined, IpConstraints | undefined];
  readonly dns: [DnsConstraints | undefined, DnsConstraints | undefined];
  readonly uri: [DnsConstraints | undefined, DnsConstraints | undefined];
  readonly email: [EmailConstraints | undefined, EmailConstraints | undefined];
}

const built = new WeakMap<CertInfo, Built>();
function constraintsOf(ca: CertInfo): Built {
  let b = built.get(ca);
  if (!b) {
    const p = ca.permitted, e = ca.excluded;
    b = {
      ip: [ipConstraints(p?.ip ?? []), ipConstraints(e?.ip ?? [])],
      dns: [dnsConstraints(p?.dns ?? [], true), dnsConstraints(e?.dns ?? [], false)],
      uri: [dnsConstraints(p?.uri ?? [], true), dnsConstraints(e?.uri ?? [], false)],
      email: [emailConstraints(p?.email ?? [], true), emailConstraints(e?.email ?? [], false)],
    };
    built.set(ca, b);
  }
  return b;
}

function describeNet(n: IpNet): string {
  const ones = [...n.mask].reduce((s, b) => s + b.toString(2).replace(/0/g, "").length, 0);
  return `${ipText(n.ip) ?? n.ip.toString("hex")}/${ones}`;
}

/** Go's checkConstraints: not permitted by any, then excluded. */
function check<V, C>(kind: string, shown: string, value: V, pair: [{ query(v: V): C | undefined } | undefined, { query(v: V): C | undefined } | undefined], show: (c: C) => string): string | undefined {
  const [permitted, excluded] = pair;
  if (permitted && permitted.query(value) === undefined) return `${kind} "${shown}" is not permitted by any constraint`;
  const c = excluded?.query(value);
  if (c !== undefined) return `${kind} "${shown}" is excluded by constraint "${show(c)}"`;
  return undefined;
}

function uriDomain(uri: string): { domain?: string; error?: string } {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(uri);
  let host = lower((m?.[1] ?? "").replace(/^.*@/, ""));
  if (host.length === 0) return { error: `URI with empty host ("${uri}") cannot be matched against constraints` };
  if (host.includes(":") && !host.endsWith("]")) host = host.slice(0, host.lastIndexOf(":"));
  if (parseIp(host) !== undefined || (host.startsWith("[") && host.endsWith("]"))) return { error: `URI with IP ("${uri}") cannot be matched against constraints` };
  return { domain: host };
}

/** Go's chainConstraints.check of one certificate's names against one CA's constraints. */
function checkNames(c: CertInfo, uris: readonly { uri: string; domain: string }[], emails: readonly { addr: string; m: Mailbox }[], ca: CertInfo): string | undefined {
  const b = constraintsOf(ca);
  for (const ip of c.ipBytes) {
    const v = check("IP address", ipText(ip) ?? "", ip, b.ip, describeNet);
    if (v) return v;
  }
  for (const d of c.dnsNames) {
    if (!domainNameValid(d, false)) return `cannot parse dnsName "${d}"`;
    const v = check("DNS name", d, d, b.dns, (x) => x);
    if (v) return v;
  }
  for (const u of uris) {
    if (!domainNameValid(u.domain, false)) return `URI SAN "${u.uri}" failed to parse`;
    const v = check("URI", u.uri, u.domain, b.uri, (x) => x);
    if (v) return v;
  }
  for (const e of emails) {
    if (!domainNameValid(e.m.domain, false)) return `cannot parse rfc822Name "${e.addr}"`;
    const v = check("email address", e.addr, e.m, b.email, (x) => x);
    if (v) return v;
  }
  return undefined;
}

/**
 * Go's checkChainConstraints (Go 1.26): every certificate of the chain with a SAN extension must satisfy the
 * name constraints of every certificate above it. Returns Go's reason, or undefined when the chain passes.
 */
export function chainNameConstraintViolation(chain: readonly CertInfo[]): { ca: CertInfo; cert: CertInfo; reason: string } | undefined {
  const constrained = chain.map((c, i) => ({ c, i })).filter((x) => x.c.hasNameConstraints);
  if (constrained.length === 0) return undefined;
  for (let i = 0; i < chain.length; i++) {
    const c = chain[i];
    if (!c.hasSanExtension) continue;
    const above = constrained.filter((x) => x.i > i);
    if (above.length === 0) return undefined;
    const uris: { uri: string; domain: string }[] = [];
    for (const uri of c.uris) {
      const u = uriDomain(uri);
      if (u.error || u.domain === undefined) return { ca: above[0].c, cert: c, reason: u.error ?? uri };
      uris.push({ uri, domain: u.domain });
    }
    const emails: { addr: string; m: Mailbox }[] = [];
    for (const addr of c.emailAddresses) {
      const m = parseMailbox(addr);
      if (!m) return { ca: above[0].c, cert: c, reason: `cannot parse rfc822Name "${addr}"` };
      emails.push({ addr, m: { local: m.local, domain: m.domain.toLowerCase() } });
    }
    for (const { c: ca } of above) {
      const reason = checkNames(c, uris, emails, ca);
      if (reason) return { ca, cert: c, reason };
    }
  }
  return undefined;
}
