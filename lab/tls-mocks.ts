import * as pulumi from "@pulumi/pulumi";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { join } from "node:path";
import { OS_STORES } from "../core/node/os-stores";
import { NODE_REPORT_PREFIX, NodeReport } from "../core/node/types";
import { Issued, KeyKind, TestPki, genKey } from "./openssl-pki";

type MockArgs = pulumi.runtime.MockResourceArgs;

/**
 * Pulumi mocks whose @pulumi/tls resources return real keys and certificates (made with openssl), so the
 * component's bundle assembly and verification run on genuine X.509 data while the engine is mocked. A
 * `remote.Command` answers as a node whose install succeeded but that could run none of its checks: its
 * report names the bundle it was sent (an echo, so it proves nothing) and lists every check the script
 * declares as unverified, never as verified. Programs run with these mocks therefore need
 * allowUnverifiedNodes; what a node really verifies is tested on lab nodes.
 */
export class TlsMocks implements pulumi.runtime.Mocks {
  readonly pki = new TestPki();
  readonly resources: MockArgs[] = [];
  private readonly cas = new Map<string, Issued>();
  private n = 0;

  newResource(args: MockArgs): { id: string; state: Record<string, unknown> } {
    this.resources.push(args);
    const id = `${args.name}-id`;
    const i = unwrapSecrets(args.inputs);
    switch (args.type) {
      case "tls:index/privateKey:PrivateKey": {
        const kind: KeyKind = i.algorithm === "RSA" ? (i.rsaBits >= 3072 ? "rsa3072" : "rsa2048") : i.ecdsaCurve === "P384" ? "ec384" : i.ecdsaCurve === "P256" ? "ec256" : "ec224";
        const path = join(this.pki.dir, `mock-key-${this.n++}.pem`);
        genKey(kind, path);
        return { id, state: { ...i, privateKeyPem: readFileSync(path, "utf8") } };
      }
      case "tls:index/selfSignedCert:SelfSignedCert": {
        const ca = this.pki.issue({ cn: i.subject.commonName, keyPem: i.privateKeyPem, ca: true, notAfter: new Date(Date.now() + i.validityPeriodHours * 3_600_000) });
        this.cas.set(ca.certPem, ca);
        return { id, state: { ...i, certPem: ca.certPem } };
      }
      case "tls:index/certRequest:CertRequest":
        return { id, state: { ...i, certRequestPem: `MOCK-CSR ${Buffer.from(JSON.stringify(i)).toString("base64")}` } };
      case "tls:index/locallySignedCert:LocallySignedCert": {
        const csr = JSON.parse(Buffer.from(String(i.certRequestPem).split(" ")[1], "base64").toString());
        const issuer = this.cas.get(i.caCertPem);
        if (!issuer) throw new Error("mock: LocallySignedCert issuer is not a mocked CA");
        const san = [...(csr.dnsNames ?? []).map((d: string) => `DNS:${d}`), ...(csr.ipAddresses ?? []).map((a: string) => `IP:${a}`)];
        const leaf = this.pki.issue({ cn: csr.subject.commonName, issuer, keyPem: csr.privateKeyPem, ca: false, san, notAfter: new Date(Date.now() + i.validityPeriodHours * 3_600_000) });
        return { id, state: { ...i, certPem: leaf.certPem } };
      }
      case "command:remote:Command": {
        const sent = /sha256:([0-9a-f]{64})/.exec(String(i.create))?.[1] ?? "";
        const report: NodeReport = { action: "install", os: "debian", changed: [], restarted: [], verified: [], unverified: declaredChecks(unpacked(String(i.create), String(i.stdin ?? ""))), bundleSha256: sent };
        return { id, state: { ...i, stdout: `${NODE_REPORT_PREFIX}${JSON.stringify(report)}\n`, stderr: "" } };
      }
      default:
        return { id, state: i };
    }
  }

  call(): Record<string, unknown> {
    return {};
  }

  ofType(type: string): MockArgs[] {
    return this.resources.filter((r) => r.type === type);
  }
}

const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/**
 * The check names an install script's probe lines stand for, read off the script (core/node/render.ts
 * writes one line per check). A probe of "$RT_STORE_BUNDLE" is named after the OS store's bundle, which the
 * node picks at run time, so every family's is listed: extra unverified names are harmless.
 */
/**
 * The script as the node's create line unpacks it from stdin (base64, then gzip). Other Commands (the
 * serving switch's host files) take their stdin as it is.
 */
function unpacked(create: string, stdin: string): string {
  return create.includes("base64 -d | gzip -dc") ? gunzipSync(Buffer.from(stdin, "base64")).toString("utf8") : stdin;
}

function declaredChecks(script: string): string[] {
  const word = String.raw`'([^']*)'`;
  const store = String.raw`"\$RT_STORE_BUNDLE"`;
  const bundles = [...new Set(Object.values(OS_STORES).map((s) => s.bundle))];
  const out: string[] = [];
  for (const line of script.split("\n").map((l) => l.trim())) {
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^rt_verify_offline ${word} `).exec(line))) out.push(`openssl-verify:${m[1]}`);
    else if (new RegExp(`^rt_verify_offline ${store} `).test(line)) out.push(...bundles.map((b) => `openssl-verify:${b}`));
    else if ((m = new RegExp(`^rt_probe_tls ${word} ${word}$`).exec(line))) out.push(`tls:${m[1]}@${m[2]}`);
    else if ((m = new RegExp(`^rt_probe_tls ${word} ${store}$`).exec(line))) out.push(...bundles.map((b) => `tls:${m![1]}@${b}`));
    else if ((m = new RegExp(`^rt_probe_pull ${word}$`).exec(line))) out.push(`cri-pull:${m[1]}`);
  }
  return [...new Set(out)];
}

/** Mock inputs carry secrets in their wire form ({sig, value}); the mocked providers need the plain value. */
export function unwrapSecrets(v: any): any {
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (v && typeof v === "object") {
    if (v[SECRET_SIG] !== undefined && "value" in v) return unwrapSecrets(v.value);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  }
  return v;
}

/** The value of an Output, rejecting when the Output failed (e.g. a ResourceError thrown in an apply). */
export function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return (o as unknown as { promise(): Promise<T> }).promise();
}
