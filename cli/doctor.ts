import { spawn } from "node:child_process";
import { statSync } from "node:fs";
import { DoctorReport, ServedChain, chainFromSClient, diagnose } from "../core/doctor/analyze";
import { DumpError, NodeDump, parseDump } from "../core/doctor/dump";
import { renderProbeScript } from "../core/doctor/probe-script";
import { DoctorTarget, SshNode, TargetError, nodeLabel, parseImage, parseNode, parseRegistry, sshDestination } from "../core/doctor/target";
import { parseCertificate } from "../core/x509/cert";
import { UsageError, one, parseArgs, required } from "./args";
import { Io } from "./io";
import { fetchServedChain } from "../core/served-chain";

export const DOCTOR_USAGE = "registry-trust doctor --node ssh://USER@HOST[:PORT] [--identity FILE] [--known-hosts FILE] --registry HOST[:PORT] [--image REF] [--json]";

/** A node that cannot be reached or did not answer with a dump: exit 2, like a usage error, without the usage. */
class ConnectionError extends Error {}

const SSH_TIMEOUT_MS = 300_000;

function targetFlag<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof TargetError) throw new UsageError(e.message);
    throw e;
  }
}

function fileFlag(flag: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`${flag} "${path}": ${code === "ENOENT" ? "no such file" : (e as Error).message}; give the path of an existing file`);
  }
  if (!isFile) throw new UsageError(`${flag} "${path}" is not a regular file; give the path of a file`);
  return path;
}

/** ssh options: no prompts ever; with --known-hosts, only that file vouches for the host key. */
export function sshArgs(node: SshNode, identity?: string, knownHosts?: string): string[] {
  return [
    "-p", String(node.port),
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=10",
    "-o", "LogLevel=ERROR",
    ...(identity ? ["-i", identity, "-o", "IdentitiesOnly=yes"] : []),
    ...(knownHosts ? ["-o", `UserKnownHostsFile=${knownHosts}`, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"] : []),
    "--", sshDestination(node), "sh -s",
  ];
}

function runProbe(target: DoctorTarget, identity?: string, knownHosts?: string): Promise<NodeDump> {
  return new Promise((resolve, reject) => {
    const child = spawn("ssh", sshArgs(target.node, identity, knownHosts), { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGTERM"), SSH_TIMEOUT_MS);
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new ConnectionError(`cannot run ssh: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const where = nodeLabel(target.node);
      if (signal) return reject(new ConnectionError(`ssh to ${where} did not finish within ${SSH_TIMEOUT_MS / 1000} s`));
      if (code === 255) {
        return reject(new ConnectionError(`cannot connect to ${where} with ssh: ${stderr.trim() || "exit 255"} (check the address, --identity, and that --known-hosts has the node's host key)`));
      }
      try {
        resolve(parseDump(stdout));
      } catch (e) {
        if (!(e instanceof DumpError)) return reject(e);
        reject(new ConnectionError(`${where}: ${e.message}${stderr.trim() ? `; stderr: ${stderr.trim().slice(0, 500)}` : ""}`));
      }
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(renderProbeScript(target));
  });
}

/** The chain as the node sees it; from here only when the node has no openssl. */
async function servedChain(target: DoctorTarget, dump: NodeDump): Promise<{ served?: ServedChain; error?: string }> {
  if (dump.chain) {
    const certs = chainFromSClient(dump.chain.output);
    if (certs.length) return { served: { certs, from: "node" } };
    const why = dump.chain.output.split("\n").map((l) => l.trim()).filter((l) => l && !/^(CONNECTED|---|no peer certificate)/.test(l));
    return { error: `openssl s_client on the node: ${why.slice(-2).join(" / ") || `exit ${dump.chain.rc}`}` };
  }
  try {
    const ders = await fetchServedChain(target.registry, 10_000);
    return { served: { certs: ders.map((d, i) => parseCertificate(d, `served#${i}`)), from: "doctor-host" } };
  } catch (e) {
    return { error: `the node has no openssl, and from this machine: ${(e as Error).message}` };
  }
}

/**
 * Read-only diagnosis of one node that fails to pull from a registry with x509 errors: which trust the
 * node and each runtime have, whether it verifies the chain the registry serves, and the cause with its
 * fix. Exit 0 healthy, 1 problems found, 2 usage or connection error.
 */
export async function doctor(argv: readonly string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { values: ["--node", "--identity", "--known-hosts", "--registry", "--image"], booleans: ["--json"] });
  if (p.positional.length > 0) throw new UsageError(`unexpected argument "${p.positional[0]}"`);
  const node = targetFlag(() => parseNode(required(p, "--node")));
  const registry = targetFlag(() => parseRegistry(required(p, "--registry")));
  const imageFlag = one(p, "--image");
  const image = imageFlag === undefined ? undefined : targetFlag(() => parseImage(imageFlag, registry));
  const identity = fileFlag("--identity", one(p, "--identity"));
  const knownHosts = fileFlag("--known-hosts", one(p, "--known-hosts"));
  const target: DoctorTarget = { node, registry, image };

  let dump: NodeDump;
  try {
    dump = await runProbe(target, identity, knownHosts);
  } catch (e) {
    if (!(e instanceof ConnectionError)) throw e;
    io.err(`registry-trust doctor: ${e.message}\n`);
    return 2;
  }
  const localNow = new Date();
  const { served, error } = await servedChain(target, dump);
  const report = diagnose({ target, dump, served, servedError: error, localNow });
  io.out(p.booleans.has("--json") ? `${JSON.stringify(report, null, 2)}\n` : humanReport(report));
  return report.healthy ? 0 : 1;
}

function humanReport(r: DoctorReport): string {
  const out: string[] = [`registry-trust doctor: ${r.node} → ${r.registry}${r.image ? ` (pull ${r.image})` : ""}`];
  const serious = r.findings.filter((f) => f.severity === "error" || f.severity === "risk");
  out.push(r.healthy ? `HEALTHY: the node trusts the registry.${r.findings.length ? " Notes:" : ""}` : `PROBLEMS: ${serious.length} finding(s) that break or endanger pulls, most likely cause first:`);
  r.findings.forEach((f, i) => {
    out.push(`  ${i + 1}. ${f.severity.toUpperCase()} ${f.code} [${f.scope}]${f.confirmedByPull ? " (the CRI pull failed with this error)" : ""}: ${f.message}`);
    out.push(`     Fix: ${f.fix}`);
    if (f.evidence.length) out.push(`     Evidence: ${f.evidence.join("; ")}`);
  });
  out.push("", `Node: ${r.os.name ?? r.os.id ?? "unknown OS"}; clock ${r.nodeTime}`);
  out.push(r.runtimes.length ? "Runtimes:" : "Runtimes: none found");
  for (const rt of r.runtimes) {
    const running = rt.pids.length ? `PID ${rt.pids.join(", ")} since ${rt.startedAt}` : "not running";
    out.push(`  ${rt.name}: ${rt.binary ?? "(no binary on PATH)"}${rt.version ? ` (${rt.version})` : ""}, ${running}${rt.configPath !== undefined ? `, config_path ${rt.configPath ? `"${rt.configPath}"` : "not set"}` : ""}`);
    out.push(`    looks at: ${rt.looksAt.join(", ") || "-"}`);
    for (const n of rt.notes) out.push(`    note: ${n}`);
  }
  out.push(r.chain.certificates.length ? `Served chain (fetched ${r.chain.from === "node" ? "on the node" : "from this machine"}):` : `Served chain: none (${r.chain.error ?? "unknown error"})`);
  r.chain.certificates.forEach((c, i) => out.push(`  [${i}] ${c.subject}  issuer: ${c.issuer}  valid ${c.notBefore} .. ${c.notAfter}`));
  if (r.stores.length) out.push("Trust stores verifying it:");
  for (const s of r.stores) out.push(`  ${s.store.padEnd(11)} ${s.trusted ? "trusted" : "NOT trusted"}${s.problems.length ? ` (${s.problems.join(", ")})` : ""}`);
  out.push("Trust locations:");
  for (const l of r.trustLocations) {
    const what = l.privateKey ? "a private key, not read" : l.certificates && l.count >= 1 && l.count <= 3 ? l.certificates.map((c) => c.subject).join("; ") : `${l.count} certificate(s)`;
    out.push(`  ${l.kind}${l.runtime ? `/${l.runtime}` : ""}  ${l.path}  (${what}; modified ${l.modified})`);
  }
  if (r.pull) out.push(`CRI pull of ${r.pull.image}: ${r.pull.ok ? "ok" : `FAILED: ${r.pull.output.split("\n").pop()}`}`);
  return `${out.join("\n")}\n`;
}
