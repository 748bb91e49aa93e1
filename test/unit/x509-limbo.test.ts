import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parsePemCertificates } from "../../core/x509/pem";
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
