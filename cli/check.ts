import { KeyObject, createPrivateKey } from "node:crypto";
import { Endpoint, endpointKey, parseEndpoint } from "../core/endpoint";
import { inspectBundle } from "../core/x509/bundle";
import { parsePemCertificates } from "../core/x509/pem";
import { Problem, hasErrors } from "../core/x509/problems";
import { verifyServing } from "../core/x509/verify";
import { UsageError, one, parseArgs, required } from "./args";
import { readInput } from "./files";
import { problemLines } from "./report";
import { Io } from "./io";

export const CHECK_USAGE = "registry-trust check --ca-bundle FILE --cert FILE [--key FILE] --host HOST[:PORT] [--at TIME] [--json]";

export function hostFlag(flag: string, value: string): Endpoint {
  try {
    return parseEndpoint(value);
  } catch (e) {
    throw new UsageError(`${flag} ${(e as Error).message}`);
  }
}

function timeFlag(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const t = new Date(value);
  if (Number.isNaN(t.getTime())) throw new UsageError(`--at "${value}" is not a time (use ISO 8601, e.g. 2027-01-31T00:00:00Z)`);
  return t;
}

/**
 * Offline verdict: would a container runtime on a node with this bundle trust this serving certificate
 * for this host? Exit 0 yes, 1 no (every problem listed), 2 usage error.
 */
export async function check(argv: readonly string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { values: ["--ca-bundle", "--cert", "--key", "--host", "--at"], booleans: ["--json"] });
  if (p.positional.length > 0) throw new UsageError(`unexpected argument "${p.positional[0]}"`);
  const bundleFile = required(p, "--ca-bundle");
  const certFile = required(p, "--cert");
  const endpoint = hostFlag("--host", required(p, "--host"));
  const now = timeFlag(one(p, "--at")) ?? new Date();
  const keyFile = one(p, "--key");
  const bundleText = readInput("--ca-bundle", bundleFile);
  const certText = readInput("--cert", certFile);
  const keyText = keyFile === undefined ? undefined : readInput("--key", keyFile);

  const bundle = inspectBundle(bundleText, bundleFile, now);
  const chain = parsePemCertificates(certText, certFile);
  const problems: Problem[] = [...bundle.problems, ...chain.problems];
  let privateKey: KeyObject | undefined;
  if (keyText !== undefined) {
    try {
      privateKey = createPrivateKey(keyText);
    } catch (e) {
      problems.push({ code: "KEY_UNPARSEABLE", severity: "error", runtimeRefuses: true, message: `${keyFile} is not a readable unencrypted private key (${(e as Error).message}).`, fix: "Give the PEM private key of the serving certificate (decrypt it first if it is encrypted)." });
    }
  }
  let path: string[] = [];
  let trusted = false;
  if (chain.certs.length > 0) {
    const v = verifyServing({ bundle: bundle.certs, chain: chain.certs, host: endpoint.host, privateKey, now });
    problems.push(...v.problems);
    path = (v.path ?? []).map((c) => c.subject);
    trusted = v.trusted && !chain.problems.length;
  }
  const ok = !hasErrors(problems);
  const target = endpointKey(endpoint);

  if (p.booleans.has("--json")) {
    io.out(`${JSON.stringify({ ok, trusted, host: endpoint.host, port: endpoint.port, path, problems }, null, 2)}\n`);
  } else if (ok) {
    io.out([`OK: a runtime with ${bundleFile} trusts ${certFile} for ${target}`, `  chain: ${path.join(" <- ")}`, ...problemLines(problems)].join("\n") + "\n");
  } else {
    const n = problems.filter((x) => x.severity === "error").length;
    io.out([`NOT OK: ${n} problem(s) for ${target}${trusted ? " (runtimes would connect, but our policy refuses)" : ""}`, ...problemLines(problems)].join("\n") + "\n");
  }
  return ok ? 0 : 1;
}
