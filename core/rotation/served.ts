import { Endpoint, endpointKey } from "../endpoint";
import { CertInfo } from "../x509/cert";
import { parsePemCertificates, toPem } from "../x509/pem";

/*
 * What the registry serves, and which of this stack's CA generations issued it. Generated CAs are named
 * "<caCommonName> G<n>" (RegistryPki), so a served leaf's issuer names its generation; a CA keeps the
 * name it was created with, so a later change of caCommonName leaves older generations unrecognised,
 * which the preflight reports rather than guesses.
 */

/** The CN attribute of an X.509 name as CertInfo renders it ("CN=…, O=…"). */
export function commonNameOf(name: string): string | undefined {
  return /(?:^|, )CN=([^,]*)/.exec(name)?.[1];
}

/** The generation of this stack's CA that issued `leaf`, or undefined when the issuer is not one of them. */
export function issuingGeneration(leaf: CertInfo, caCommonName: string): number | undefined {
  const m = /^(.*) G(\d+)$/.exec(commonNameOf(leaf.issuer) ?? "");
  return m && m[1] === caCommonName ? Number(m[2]) : undefined;
}

/** One short line naming a certificate: subject, issuer, fingerprint. */
export function describeCert(c: CertInfo): string {
  return `"${c.subject}" issued by "${c.issuer}" (SHA256 ${c.fingerprint256.slice(0, 23)}…)`;
}

/** DER certificates as CertInfo, leaf first. */
export function chainFromDer(der: readonly Buffer[], source: string): CertInfo[] {
  return parsePemCertificates(der.map(toPem).join(""), source).certs;
}

export type FetchChain = (endpoint: Endpoint, timeoutMs: number) => Promise<Buffer[]>;

/**
 * Polls every endpoint until each serves the leaf with `fingerprint256`, or throws naming the endpoints
 * that still serve something else. A registry reload can take a moment, an ingress controller longer.
 */
export async function waitUntilServed(endpoints: readonly Endpoint[], fingerprint256: string, timeoutMs: number, fetch: FetchChain, pollMs = 1000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const last = new Map<string, string>();
  for (;;) {
    for (const e of endpoints) {
      if (last.get(endpointKey(e)) === "ok") continue;
      try {
        const leaf = chainFromDer(await fetch(e, 5000), endpointKey(e))[0];
        last.set(endpointKey(e), leaf?.fingerprint256 === fingerprint256 ? "ok" : `serves ${leaf ? describeCert(leaf) : "no certificate"}`);
      } catch (err) {
        last.set(endpointKey(e), (err as Error).message);
      }
    }
    const pending = [...last].filter(([, v]) => v !== "ok");
    if (pending.length === 0) return;
    if (Date.now() >= deadline) {
      throw new Error(`the registry does not serve the new certificate (SHA256 ${fingerprint256.slice(0, 23)}…) after ${Math.round(timeoutMs / 1000)} s: ` +
        `${pending.map(([k, v]) => `${k} ${v}`).join("; ")}. Check that the reload took effect; the bundle keeps the old CA, so nodes still trust what is served.`);
    }
    await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(0, deadline - Date.now()))));
  }
}
