import * as fs from "node:fs";
import * as path from "node:path";
import { runOk } from "./proc";

export interface CertificateAuthority {
  certPath: string;
  keyPath: string;
  pem: string;
}

export interface ServerCertificate {
  certPath: string;
  keyPath: string;
  pem: string;
}

// P-256 keeps generation in the tens of milliseconds and is what the project itself issues.
const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** A self-signed CA valid for two days: long enough for any lab, short enough to be harmless. */
export async function createCa(dir: string, commonName: string): Promise<CertificateAuthority> {
  fs.mkdirSync(dir, { recursive: true });
  const certPath = path.join(dir, "ca.crt");
  const keyPath = path.join(dir, "ca.key");
  await runOk("openssl", [
    "req", "-x509", ...EC_KEY, "-days", "2", "-subj", `/CN=${commonName}`,
    "-keyout", keyPath, "-out", certPath,
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-addext", "subjectKeyIdentifier=hash",
  ]);
  return { certPath, keyPath, pem: fs.readFileSync(certPath, "utf8") };
}

/** A TLS server certificate for `dnsNames` and `ips`, signed by `ca`. */
export async function issueServerCert(
  ca: CertificateAuthority,
  dir: string,
  dnsNames: readonly string[],
  ips: readonly string[],
): Promise<ServerCertificate> {
  fs.mkdirSync(dir, { recursive: true });
  const certPath = path.join(dir, "server.crt");
  const keyPath = path.join(dir, "server.key");
  const csrPath = path.join(dir, "server.csr");
  const extPath = path.join(dir, "server.ext");
  const san = [...dnsNames.map((d) => `DNS:${d}`), ...ips.map((i) => `IP:${i}`)].join(",");
  fs.writeFileSync(
    extPath,
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth",
      "authorityKeyIdentifier=keyid",
      `subjectAltName=${san}`,
      "",
    ].join("\n"),
  );
  await runOk("openssl", ["req", "-new", ...EC_KEY, "-subj", `/CN=${dnsNames[0]}`, "-keyout", keyPath, "-out", csrPath]);
  await runOk("openssl", [
    "x509", "-req", "-in", csrPath, "-CA", ca.certPath, "-CAkey", ca.keyPath, "-CAcreateserial",
    "-days", "1", "-extfile", extPath, "-out", certPath,
  ]);
  return { certPath, keyPath, pem: fs.readFileSync(certPath, "utf8") };
}
