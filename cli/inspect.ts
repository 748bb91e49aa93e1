import { writeFileSync } from "node:fs";
import { endpointKey } from "../core/endpoint";
import { CertInfo, parseCertificate } from "../core/x509/cert";
import { inspectBundle } from "../core/x509/bundle";
import { toPem } from "../core/x509/pem";
import { Problem, hasErrors } from "../core/x509/problems";
import { verifyServing } from "../core/x509/verify";
import { UsageError, one, parseArgs } from "./args";
import { hostFlag } from "./check";
import { readInput } from "./files";
import { Io } from "./io";
import { certLines, problemLines } from "./report";
import { fetchServedChain } from "../core/served-chain";

export const INSPECT_USAGE = "registry-trust inspect https://HOST[:PORT] [--ca-bundle FILE] [--save-chain FILE] [--timeout MS] [--json]";

function describe(c: CertInfo) {
  return {
    subject: c.subject,
    issuer: c.issuer,
    sans: [...c.dnsNames.map((d) => `DNS:${d}`), ...c.ipAddresses.map((i) => `IP:${i}`)],
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    sha256: c.fingerprint256,
    isCA: c.isCA,
  };
}

function target(url: string) {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`"${url}" is not a URL; use https://HOST[:PORT]`);
  }
  if (u.protocol !== "https:") throw new UsageError(`"${url}": only https:// registries can be inspected`);
  if ((u.pathname !== "/" && u.pathname !== "") || u.search || u.username) throw new UsageError(`"${url}": give only https://HOST[:PORT], without path, query or user`);
  return hostFlag("URL", u.port ? `${u.hostname}:${u.port}` : u.hostname);
}

/**
 * Connects to a registry and explains its certificate chain the way an operator would with openssl
 * s_client: what is served, and why a node with the given bundle would or would not trust it.
 */
export async function inspect(argv: readonly string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { values: ["--ca-bundle", "--save-chain", "--timeout"], booleans: ["--json"] });
  if (p.positional.length !== 1) throw new UsageError(p.positional.length === 0 ? "the registry URL is required" : `unexpected argument "${p.positional[1]}"`);
  const endpoint = target(p.positional[0]);
  const timeout = Number(one(p, "--timeout") ?? 10_000);
  if (!Number.isInteger(timeout) || timeout <= 0) throw new UsageError("--timeout must be a positive number of milliseconds");
  const bundleFile = one(p, "--ca-bundle");
  const bundleText = bundleFile === undefined ? undefined : readInput("--ca-bundle", bundleFile);
  const saveTo = one(p, "--save-chain");

  let served: CertInfo[];
  try {
    served = (await fetchServedChain(endpoint, timeout)).map((der, i) => parseCertificate(der, `served#${i}`));
  } catch (e) {
    io.err(`registry-trust: ${(e as Error).message}\n`);
    return 1;
  }
  const problems: Problem[] = [];
  let trusted: boolean | undefined;
  if (bundleText !== undefined) {
    const bundle = inspectBundle(bundleText, bundleFile!);
    problems.push(...bundle.problems);
    const v = verifyServing({ bundle: bundle.certs, chain: served, host: endpoint.host });
    problems.push(...v.problems);
    trusted = v.trusted;
  } else {
    // Without a bundle, trust cannot be judged; everything else about the served chain still can.
    problems.push(...verifyServing({ bundle: [], chain: served, host: endpoint.host }).problems.filter((x) => x.code !== "UNKNOWN_AUTHORITY"));
  }
  const top = served[served.length - 1];
  const notes: string[] = [];
  if (!top.selfIssued) notes.push(`the served chain ends at "${top.subject}", issued by "${top.issuer}": nodes need that issuer (or "${top.subject}") in their bundle.`);
  if (bundleText === undefined) notes.push("no --ca-bundle given: trust was not evaluated.");
  if (saveTo !== undefined) {
    writeFileSync(saveTo, served.map((c) => toPem(c.der)).join(""));
    notes.push(`saved ${served.length} certificate(s) to ${saveTo}; before importing, confirm out of band the fingerprint of the topmost one: ${top.fingerprint256}`);
  }
  const ok = !hasErrors(problems);

  if (p.booleans.has("--json")) {
    io.out(`${JSON.stringify({ target: endpointKey(endpoint), ok, trusted, chain: served.map(describe), problems, notes }, null, 2)}\n`);
  } else {
    const lines = [`${endpointKey(endpoint)} serves ${served.length} certificate(s):`];
    served.forEach((c, i) => lines.push(...certLines(`  [${i}]`, describe(c))));
    lines.push(ok ? (trusted ? "OK: a runtime with this bundle trusts this registry." : "OK: no problem found in the served chain.") : "PROBLEMS:");
    lines.push(...problemLines(problems), ...notes.map((n) => `note: ${n}`));
    io.out(`${lines.join("\n")}\n`);
  }
  return ok ? 0 : 1;
}
