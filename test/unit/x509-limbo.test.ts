import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parsePemCertificates, toPem } from "../../core/x509/pem";
import { verifyServing } from "../../core/x509/verify";
import { ReasonClass, goVerify, reasonOf } from "../support/goverify";

/*
 * x509-limbo (C2SP/x509-limbo, the suite pyca/cryptography, rustls and others test against): every SERVER
 * case Go's crypto/x509 Verify can express goes through Go itself and through verifyServing; verdict and
 * reason class must agree. test/fixtures/x509-limbo/README.md says where the fixture comes from.
 */

interface LimboCase {
  readonly id: string;
  readonly trusted: string[];
  readonly intermediates: string[];
  readonly peer: string;
  readonly time?: string;
  readonly host?: { readonly kind: "DNS" | "IP"; readonly value: string };
}
const fixture: { generated: string; cases: LimboCase[] } = JSON.parse(readFileSync(join(__dirname, "..", "fixtures", "x509-limbo", "cases.json"), "utf8"));

/**
 * Where we deliberately answer differently from Go, and why. The test fails when a listed case agrees
 * (so the list stays honest) as well as when an unlisted case disagrees.
 */
const DELIBERATE: Record<string, string> = {};

interface Outcome { readonly trusted: boolean; readonly reason?: ReasonClass }

/** Ours for a case; never throws (an exception fails the test as a disagreement would). */
function ours(c: LimboCase): Outcome {
  const time = new Date(c.time ?? fixture.generated);
  const peer = parsePemCertificates(c.peer, "peer");
  if (peer.certs.length === 0) return { trusted: false, reason: reasonOf(peer.problems) };
  // Like Go's AppendCertsFromPEM, certificates that do not parse are left out of the pools.
  const bundle = parsePemCertificates(c.trusted.join(""), "bundle").certs;
  const intermediates = parsePemCertificates(c.intermediates.join(""), "intermediates").certs;
  const v = verifyServing({ bundle, chain: [...peer.certs, ...intermediates], host: c.host?.value, now: time });
  return { trusted: v.trusted, reason: reasonOf(v.problems) };
}

const answers = new Map(goVerify(fixture.cases.map((c) => ({
  name: c.id,
  bundle: c.trusted.join(""),
  chain: c.peer,
  intermediates: c.intermediates.join(""),
  host: c.host?.value ?? "",
  time: c.time ?? fixture.generated,
}))).map((a) => [a.name, a]));

describe("x509-limbo: verifyServing agrees with Go's crypto/x509", () => {
  test("the fixture holds the expressible SERVER cases", () => {
    expect(fixture.cases.length).toBeGreaterThan(150);
    expect(answers.size).toBe(fixture.cases.length);
  });

  test.each(fixture.cases.map((c) => [c.id, c] as const))("%s", (id, c) => {
    const a = answers.get(id)!;
    const go: Outcome = a.trusted ? { trusted: true } : { trusted: false, reason: a.reason };
    const us = ours(c);
    const agree = us.trusted === go.trusted && us.reason === go.reason;
    if (id in DELIBERATE) {
      expect({ agree, why: DELIBERATE[id] }).toEqual({ agree: false, why: DELIBERATE[id] });
    } else {
      expect({ id, ...us }).toEqual({ id, ...go });
    }
  });
});

/*
 * The same comparison on broken inputs: one byte of one certificate (leaf, intermediate or root) of a
 * case replaced, bit-flipped, deleted or inserted, 1200 times with a fixed seed. This reaches parser paths the suite does not (truncated
 * lengths, bad points, broken extensions) and checks that nothing throws.
 */
describe("x509-limbo with one byte changed: still Go's verdict and reason", () => {
  test("1200 seeded single-byte mutations", () => {
    let seed = 20261201;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const der = (pem: string) => Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
    const base = fixture.cases.filter((c) => !c.id.startsWith("pathological::"));
    const mutated: LimboCase[] = [];
    for (let i = 0; i < 1200; i++) {
      const c = base[rnd(base.length)];
      const certs = [c.peer, ...c.intermediates, ...c.trusted];
      const which = rnd(certs.length);
      let bytes = der(certs[which]);
      const at = rnd(bytes.length);
      const op = rnd(4);
      if (op === 0) bytes[at] = rnd(256);
      else if (op === 1) bytes[at] ^= 1 << rnd(8);
      else if (op === 2) bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
      else bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([rnd(256)]), bytes.subarray(at)]);
      certs[which] = toPem(bytes);
      const n = c.intermediates.length;
      mutated.push({ ...c, id: `${c.id}#${i}`, peer: certs[0], intermediates: certs.slice(1, 1 + n), trusted: certs.slice(1 + n) });
    }
    const go = goVerify(mutated.map((c) => ({
      name: c.id, bundle: c.trusted.join(""), chain: c.peer, intermediates: c.intermediates.join(""), host: c.host?.value ?? "", time: c.time ?? fixture.generated,
    })));
    const differ = mutated
      .map((c, i) => ({ id: c.id, us: ours(c), go: go[i].trusted ? { trusted: true } : { trusted: false, reason: go[i].reason } }))
      .filter((x) => x.us.trusted !== x.go.trusted || x.us.reason !== x.go.reason);
    expect(differ).toEqual([]);
  }, 120_000);
});
