import { AddressInfo } from "node:net";
import { Server, createServer } from "node:tls";
import { cli } from "../support/cli";
import { goVerify } from "../support/goverify";
import { Issued, TestPki } from "../../lab/openssl-pki";

/*
 * A TLS server on 127.0.0.1 that serves a leaf followed by 100 intermediates sharing one subject, each
 * signed by the one before (x509-limbo's pathological-chain-same-subject, Go's TestPathologicalChains),
 * none under the bundled root. A path builder without a work budget explores this for minutes; Go gives up
 * after 100 candidate checks, and so must `inspect` — promptly, with a refusal that says so. The bound on
 * "promptly" is the test timeout.
 */

const pki = new TestPki();
let server: Server;
let port: number;
let served: Issued[];
let bundlePath: string;

beforeAll(async () => {
  const intermediates: Issued[] = [pki.issue({ cn: "Pathological CA", ca: true })];
  for (let i = 1; i < 100; i++) intermediates.push(pki.issue({ cn: "Pathological CA", issuer: intermediates[i - 1], ca: true }));
  const leaf = pki.leaf(intermediates[99]);
  served = [leaf, ...intermediates.reverse()];
  bundlePath = pki.file("bundle.pem", pki.root("Unrelated Root").certPem);
  server = createServer({ key: leaf.keyPem, cert: served.map((c) => c.certPem).join("") }, (s) => s.end());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
}, 180_000);

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  pki.cleanup();
});

test("inspect refuses a chain of 100 same-subject intermediates at the path-building budget, as Go does", async () => {
  const r = await cli(["inspect", `https://127.0.0.1:${port}`, "--ca-bundle", bundlePath, "--json"]);
  expect(r.code).toBe(1);
  const report = JSON.parse(r.stdout) as { trusted: boolean; chain: unknown[]; problems: { code: string; runtimeRefuses: boolean; fix: string }[] };
  expect(report.chain).toHaveLength(101);
  expect(report.trusted).toBe(false);
  const refusal = report.problems.find((p) => p.runtimeRefuses);
  expect(refusal?.code).toBe("CHAIN_BUILD_BUDGET_EXCEEDED");
  expect(refusal?.fix.length).toBeGreaterThan(10);

  // Go, given the same chain, stops for the same reason.
  const [go] = goVerify([{ name: "pathological", bundle: pki.root("Another Unrelated Root").certPem, chain: served.map((c) => c.certPem).join(""), host: "127.0.0.1" }]);
  expect({ trusted: go.trusted, reason: go.reason }).toEqual({ trusted: false, reason: "budget" });
}, 60_000);
