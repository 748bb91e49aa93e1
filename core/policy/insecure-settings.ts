import { isUnknown } from "./resources";

/*
 * Registry settings that turn TLS verification off or talk plain HTTP, in the forms the runtimes we
 * configure read them, plus the command-line equivalents a script might use. Node scripts carry file
 * contents base64-encoded (core/node/render.ts, cloud-init `encoding: b64`), so base64 payloads are
 * decoded and searched too.
 */
const RULES: readonly { readonly re: RegExp; readonly what: string }[] = [
  { re: /\bskip_verify\s*=\s*true\b/i, what: "skip_verify = true (containerd hosts.toml: the registry certificate is not verified)" },
  { re: /\binsecure_skip_verify\s*[:=]\s*["']?true\b/i, what: "insecure_skip_verify: true (k3s/RKE2 registries.yaml: the registry certificate is not verified)" },
  { re: /^\s*insecure\s*=\s*true\b/im, what: "insecure = true (CRI-O/Podman registries.conf: TLS verification off, plain HTTP allowed)" },
  { re: /"insecure-registries"\s*:\s*\[\s*"/i, what: "\"insecure-registries\" (Docker daemon.json: TLS verification off, plain HTTP allowed)" },
  { re: /--insecure-registry\b/i, what: "--insecure-registry (dockerd flag: TLS verification off)" },
  { re: /\bcurl\b[^\n]*\s(?:-k|--insecure)(?=\s|$)/m, what: "curl -k/--insecure (TLS verification off)" },
  { re: /--no-check-certificate\b/i, what: "--no-check-certificate (TLS verification off)" },
  { re: /\bhttp:\/\/[^\s"'<>\\]+/i, what: "a plain-HTTP (http://) endpoint" },
];

const BASE64_TOKEN = /[A-Za-z0-9+/]{24,}={0,2}/g;
const MAX_DEPTH = 3;

/** Properties that hold code rather than settings: a dynamic provider's serialized implementation. */
const CODE_PROPERTIES = new Set(["__provider"]);

function decodedText(token: string): string | undefined {
  if (token.length % 4 !== 0) return undefined;
  const text = Buffer.from(token, "base64").toString("utf8");
  // Only text counts: binary payloads (DER, keys, random) decode to control characters and U+FFFD.
  return text.length > 0 && !/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(text) ? text : undefined;
}

function scanText(text: string, where: string, depth: number, out: string[]): void {
  for (const rule of RULES) {
    const m = rule.re.exec(text);
    if (m) out.push(`${where}: ${rule.what}, found "${m[0].trim().slice(0, 80)}"`);
  }
  if (depth >= MAX_DEPTH) return;
  for (const m of text.matchAll(BASE64_TOKEN)) {
    const decoded = decodedText(m[0]);
    if (decoded !== undefined) scanText(decoded, `${where} (base64 payload at offset ${m.index})`, depth + 1, out);
  }
}

function walk(v: unknown, path: string, out: string[]): void {
  if (typeof v === "string") scanText(v, path, 0, out);
  else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`, out));
  else if (typeof v === "object" && v !== null && !isUnknown(v)) {
    for (const [k, x] of Object.entries(v)) if (!CODE_PROPERTIES.has(k)) walk(x, path ? `${path}.${k}` : k, out);
  }
}

/** Every insecure registry setting in a resource's inputs, as "property path: what, found …". */
export function insecureSettings(props: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = [];
  walk(props, "", out);
  return [...new Set(out)];
}
