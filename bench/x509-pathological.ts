// How long verifyServing takes on x509-limbo's pathological cases (chains of 100 look-alike intermediates,
// cycles, thousands of name constraints), against a baseline measured in the same run: a real 3-certificate
// chain (x509-limbo's online::google.com: leaf, intermediate, root).
// The inputs are parsed once; first_ms is the first verification (it also sorts the name constraints, which
// are then reused), median_ms and max_ms are over --runs more.
//
// Usage: npm run bench:x509 [-- --runs N]
// One line per case: x509-pathological case=ID certs=N first_ms=N median_ms=N max_ms=N trusted=BOOL refusal=CODE
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parsePemCertificates } from "../core/x509/pem";
import { verifyServing } from "../core/x509/verify";

interface LimboCase {
  readonly id: string;
  readonly trusted: string[];
  readonly intermediates: string[];
  readonly peer: string;
  readonly time?: string;
  readonly host?: { readonly value: string };
}

const BASELINE = "online::google.com";

function runsArg(): number {
  const i = process.argv.indexOf("--runs");
  const n = i >= 0 ? Number(process.argv[i + 1]) : 20;
  if (!Number.isInteger(n) || n < 1) throw new Error(`--runs must be a positive integer, got ${process.argv[i + 1]}`);
  return n;
}

function main(): void {
  const runs = runsArg();
  // The committed x509-limbo fixture is read as data (see test/fixtures/x509-limbo/README.md).
  const fixture = JSON.parse(readFileSync(join(__dirname, "..", "test", "fixtures", "x509-limbo", "cases.json"), "utf8")) as { generated: string; cases: LimboCase[] };
  const chosen = fixture.cases.filter((c) => c.id === BASELINE || c.id.startsWith("pathological::"));
  for (const c of chosen) {
    const bundle = parsePemCertificates(c.trusted.join(""), "bundle").certs;
    const chain = [...parsePemCertificates(c.peer, "peer").certs, ...parsePemCertificates(c.intermediates.join(""), "intermediates").certs];
    const input = { bundle, chain, host: c.host?.value, now: new Date(c.time ?? fixture.generated) };
    let t0 = process.hrtime.bigint();
    const verdict = verifyServing(input);
    const firstMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      t0 = process.hrtime.bigint();
      verifyServing(input);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    const refusal = verdict.problems.find((p) => p.runtimeRefuses)?.code ?? "-";
    const label = c.id === BASELINE ? `${c.id}(baseline)` : c.id;
    console.log(`x509-pathological case=${label} certs=${chain.length + bundle.length} first_ms=${firstMs.toFixed(2)} median_ms=${times[Math.floor(times.length / 2)].toFixed(2)} max_ms=${times[times.length - 1].toFixed(2)} trusted=${verdict.trusted} refusal=${refusal}`);
  }
}

main();
