import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/*
 * Real certificates for tests and for the benchmarks' mocks (lab/tls-mocks.ts), made with the openssl CLI
 * when asked for. It lives in lab/ so that bench/ need not import test/ (design.md §7). `openssl ca` is used
 * for every certificate (self-signed ones too) because it is the one openssl command that takes explicit
 * start/end dates, extension sets and digests together.
 */

export type KeyKind = "ec256" | "ec384" | "ec224" | "rsa1024" | "rsa2048" | "rsa3072" | "ed25519";

export interface CertSpec {
  readonly cn: string;
  /** Issuer; omitted = self-signed. */
  readonly issuer?: Issued;
  readonly key?: KeyKind;
  /** Reuse an existing key (e.g. to re-sign the same key under another issuer). */
  readonly keyPem?: string;
  /** basicConstraints: true → critical CA:TRUE, false → CA:FALSE, undefined → extension absent. */
  readonly ca?: boolean;
  readonly pathLen?: number;
  /** keyUsage value, e.g. "critical,keyCertSign,cRLSign"; undefined → a sensible default for CA/leaf; "" → absent. */
  readonly keyUsage?: string;
  /** extendedKeyUsage value, e.g. "serverAuth"; undefined → serverAuth for leaves, absent for CAs; "" → absent. */
  readonly eku?: string;
  /** subjectAltName entries, e.g. ["DNS:registry.test", "IP:127.0.0.1"]; [] → extension absent. */
  readonly san?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly md?: "sha256" | "sha384" | "sha1";
  /** Raw extension lines appended to the extension section. */
  readonly extra?: readonly string[];
  /** An X.509 v1 certificate (no extensions at all). */
  readonly v1?: boolean;
}

export interface Issued {
  readonly spec: CertSpec;
  readonly certPem: string;
  readonly keyPem: string;
  readonly certPath: string;
  readonly keyPath: string;
}

const HOUR = 3_600_000;

function opensslDate(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z$/, "Z").slice(2); // UTCTime YYMMDDHHMMSSZ
}

export function genKey(kind: KeyKind, path: string): void {
  const args: Record<KeyKind, string[]> = {
    ec256: ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ec384: ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    ec224: ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-224"],
    rsa1024: ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    rsa2048: ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    rsa3072: ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
    ed25519: ["-algorithm", "ED25519"],
  };
  execFileSync("openssl", ["genpkey", ...args[kind], "-out", path], { stdio: "pipe" });
}

export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), "rt-pki-"));
  private n = 0;

  issue(spec: CertSpec): Issued {
    const id = `c${this.n++}`;
    const p = (ext: string) => join(this.dir, `${id}.${ext}`);
    const keyPath = p("key");
    if (spec.keyPem) writeFileSync(keyPath, spec.keyPem);
    else genKey(spec.key ?? "ec256", keyPath);
    execFileSync("openssl", ["req", "-new", "-key", keyPath, "-subj", `/CN=${spec.cn}`, "-out", p("csr")], { stdio: "pipe" });

    const isCa = spec.ca === true;
    const ext: string[] = [];
    if (spec.ca !== undefined) ext.push(`basicConstraints=${isCa ? "critical,CA:TRUE" : "CA:FALSE"}${isCa && spec.pathLen !== undefined ? `,pathlen:${spec.pathLen}` : ""}`);
    const ku = spec.keyUsage ?? (isCa ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,keyEncipherment");
    if (ku) ext.push(`keyUsage=${ku}`);
    const eku = spec.eku ?? (isCa ? "" : "serverAuth");
    if (eku) ext.push(`extendedKeyUsage=${eku}`);
    const san = spec.san ?? (isCa ? [] : [`DNS:${spec.cn}`]);
    if (san.length) ext.push(`subjectAltName=${san.join(",")}`);
    ext.push("subjectKeyIdentifier=hash");
    if (spec.issuer && !spec.issuer.spec.v1) ext.push("authorityKeyIdentifier=keyid");
    ext.push(...(spec.extra ?? []));

    writeFileSync(p("index"), "");
    writeFileSync(p("serial"), `${(Date.now() * 1000 + this.n).toString(16).padStart(16, "0")}\n`);
    writeFileSync(p("cnf"), [
      "[ca]", "default_ca=d", "[d]", `database=${p("index")}`, `new_certs_dir=${this.dir}`, `serial=${p("serial")}`,
      "policy=pol", "unique_subject=no", "email_in_dn=no", "[pol]", "commonName=supplied",
      "[ext]", ...ext, "",
    ].join("\n"));

    const now = Date.now();
    const args = [
      "ca", "-batch", "-notext", "-config", p("cnf"), "-in", p("csr"), "-out", p("crt"),
      "-md", spec.md ?? "sha256",
      "-startdate", opensslDate(spec.notBefore ?? new Date(now - HOUR)),
      "-enddate", opensslDate(spec.notAfter ?? new Date(now + 90 * 24 * HOUR)),
      ...(spec.v1 ? [] : ["-extensions", "ext"]),
      ...(spec.issuer ? ["-cert", spec.issuer.certPath, "-keyfile", spec.issuer.keyPath] : ["-selfsign", "-keyfile", keyPath]),
    ];
    execFileSync("openssl", args, { stdio: "pipe" });
    const certPem = execFileSync("openssl", ["x509", "-in", p("crt")], { encoding: "utf8" });
    writeFileSync(p("crt"), certPem);
    return { spec, certPem, keyPem: readFileSync(keyPath, "utf8"), certPath: p("crt"), keyPath };
  }

  /** A root CA with sensible defaults. */
  root(cn = "Test Root CA", extra: Partial<CertSpec> = {}): Issued {
    return this.issue({ cn, ca: true, notAfter: new Date(Date.now() + 3650 * 24 * HOUR), ...extra });
  }

  /** A serving certificate for the registry names. */
  leaf(issuer: Issued, san: readonly string[] = ["DNS:registry.test", "IP:127.0.0.1"], extra: Partial<CertSpec> = {}): Issued {
    return this.issue({ cn: "registry.test", issuer, ca: false, san, ...extra });
  }

  file(name: string, content: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, content);
    return path;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
