import { createHash } from "node:crypto";
import { RegistryEndpoint } from "../config/model";
import { DoctorReport } from "../doctor/analyze";
import { NodeDump } from "../doctor/dump";
import { CertInfo } from "../x509/cert";
import { parsePemCertificates } from "../x509/pem";
import { containerdCaPath, containerdHostsFiles, CONTAINERD_CERTS_DIR } from "../node/containerd-hosts";

/*
 * Drift on a node: its trust files are no longer what the stack installed. Two sources, both from doctor's
 * read-only probe (nothing is written on the node):
 *  - the files NodeTrust writes for containerd, compared with what the stack renders from its config and
 *    bundle: a file removed, or its content changed (with the lines added and removed);
 *  - doctor's own judgement of the whole node (error and risk findings): verification turned off anywhere
 *    (skip_verify, insecure registries), a runtime not reading certs.d, the served chain not trusted.
 * Other runtimes' files are judged through doctor's findings only.
 */

export interface DriftChange {
  readonly node: string;
  /** A file on the node, or a doctor finding's scope. */
  readonly what: string;
  /** "removed", "changed", or the doctor code. */
  readonly kind: string;
  readonly detail: string;
  readonly fix: string;
}

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex").slice(0, 16);

/** How the CAs in a ca.crt differ from the bundle's; undefined when they are the same certificates. */
function caDrift(bundlePem: string, actual: string): string | undefined {
  const want = parsePemCertificates(bundlePem, "bundle").certs;
  const have = parsePemCertificates(actual, "node").certs;
  const fps = (cs: readonly CertInfo[]) => new Set(cs.map((c) => c.fingerprint256));
  const missing = want.filter((c) => !fps(have).has(c.fingerprint256)).map((c) => `"${c.subject}"`);
  const extra = have.filter((c) => !fps(want).has(c.fingerprint256)).map((c) => `"${c.subject}"`);
  if (!missing.length && !extra.length) return undefined;
  const what = [missing.length ? `missing ${missing.join(", ")}` : "", extra.length ? `added ${extra.join(", ")}` : ""].filter(Boolean).join("; ");
  return `differs from the stack's bundle: ${what} (sha256 ${sha(actual)}…)`;
}

function lineDiff(expected: string, actual: string): string {
  const e = expected.split("\n").map((l) => l.trim());
  const a = actual.split("\n").map((l) => l.trim());
  const added = a.filter((l) => l && !e.includes(l)).map((l) => `+ ${l}`);
  const removed = e.filter((l) => l && !a.includes(l)).map((l) => `- ${l}`);
  return [...removed, ...added].join("; ");
}

export interface ExpectedFiles {
  readonly node: string;
  readonly runtimes: readonly string[];
  readonly registries: readonly RegistryEndpoint[];
  readonly bundlePem: string;
}

/** The files NodeTrust wrote for containerd that are missing or changed on the node. */
export function fileDrift(expected: ExpectedFiles, dump: NodeDump): DriftChange[] {
  if (!expected.runtimes.includes("containerd")) return [];
  const fix = "run `pulumi up` for the stack (NodeTrust rewrites the files), and find out who edited them";
  const want = new Map<string, string>();
  for (const h of containerdHostsFiles(expected.registries)) want.set(`${CONTAINERD_CERTS_DIR}/${h.dir}/hosts.toml`, h.content);
  for (const r of expected.registries) want.set(containerdCaPath(r), expected.bundlePem);
  const out: DriftChange[] = [];
  for (const [path, content] of want) {
    const f = dump.files.get(path);
    if (!f) {
      out.push({ node: expected.node, what: path, kind: "removed", detail: `${path} is gone (the stack installed it)`, fix });
      continue;
    }
    const actual = f.content?.toString("utf8");
    if (actual === undefined || actual === content) continue;
    if (path.endsWith("/ca.crt")) {
      // NodeTrust writes the bundle re-encoded under a marker line: compared by certificate, not by byte.
      const change = caDrift(content, actual);
      if (change) out.push({ node: expected.node, what: path, kind: "changed", detail: `${path} ${change}`, fix });
      continue;
    }
    out.push({ node: expected.node, what: path, kind: "changed", detail: `${path} was edited: ${lineDiff(content, actual) || "whitespace only"}`, fix });
  }
  return out;
}

/** doctor's error and risk findings as drift: the node does not (safely) trust the registry any more. */
export function findingDrift(node: string, report: DoctorReport): DriftChange[] {
  return report.findings
    .filter((f) => f.severity === "error" || f.severity === "risk")
    .map((f) => ({ node, what: f.evidence[0] ?? f.scope, kind: f.code, detail: f.message, fix: f.fix }));
}
