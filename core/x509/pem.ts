import { CertInfo, parseCertificate } from "./cert";
import { Problem } from "./problems";

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

export interface ParsedPem {
  readonly certs: CertInfo[];
  readonly problems: Problem[];
}

/**
 * Reads every CERTIFICATE block of a PEM text. Go's AppendCertsFromPEM silently skips blocks it cannot
 * parse; we report them instead, because a CA the operator believes is in the bundle but is not is exactly
 * how nodes end up distrusting the registry.
 */
export function parsePemCertificates(text: string, source: string): ParsedPem {
  const certs: CertInfo[] = [];
  const problems: Problem[] = [];
  let index = 0;
  let sawBlock = false;
  for (const m of text.matchAll(BLOCK)) {
    sawBlock = true;
    const type = m[1];
    if (/PRIVATE KEY/.test(type)) {
      problems.push({
        code: "PRIVATE_KEY_IN_BUNDLE",
        severity: "error",
        runtimeRefuses: false,
        message: `${source} contains a "${type}" block: a trust bundle is copied to every node and must never carry a private key.`,
        fix: "Remove the private key block from the file and rotate that key: treat it as leaked.",
      });
      continue;
    }
    if (type !== "CERTIFICATE") continue;
    const where = `${source}#${index++}`;
    const body = m[2].replace(/\s+/g, "");
    const der = Buffer.from(body, "base64");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || der.length === 0) {
      problems.push(unparseable(where, "the block is not valid base64"));
      continue;
    }
    try {
      certs.push(parseCertificate(der, where));
    } catch (e) {
      problems.push(unparseable(where, (e as Error).message));
    }
  }
  if (!sawBlock) {
    const empty = text.trim().length === 0;
    problems.push({
      code: empty ? "EMPTY_INPUT" : "PEM_GARBAGE",
      severity: "error",
      runtimeRefuses: true,
      message: empty ? `${source} is empty.` : `${source} contains no PEM block (expected "-----BEGIN CERTIFICATE-----").`,
      fix: empty
        ? "Point to a PEM file with at least one certificate."
        : "Convert the file to PEM (e.g. `openssl x509 -inform DER -in FILE -out FILE.pem`) or fix the path.",
    });
  } else if (certs.length === 0 && !problems.some((p) => p.code === "CERT_UNPARSEABLE")) {
    problems.push({
      code: "EMPTY_INPUT",
      severity: "error",
      runtimeRefuses: true,
      message: `${source} has PEM blocks but no CERTIFICATE block.`,
      fix: "Provide the certificate(s) in PEM form, one -----BEGIN CERTIFICATE----- block each.",
    });
  }
  return { certs, problems };
}

function unparseable(where: string, why: string): Problem {
  return {
    code: "CERT_UNPARSEABLE",
    severity: "error",
    runtimeRefuses: true,
    message: `${where} is not a parseable X.509 certificate (${why}); Go's crypto/x509 skips it, so it trusts nothing.`,
    fix: "Re-export the certificate from its source; check for truncated or hand-edited base64.",
  };
}

/** Canonical PEM for one certificate (64-column base64, LF line ends). */
export function toPem(der: Buffer): string {
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}
