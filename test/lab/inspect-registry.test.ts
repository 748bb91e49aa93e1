import { Lab, startLab } from "../../lab/lab";
import { cli } from "../support/cli";
import { TestPki } from "../../lab/openssl-pki";

// `inspect` and `check` against the lab's real registry (Debian docker-registry, distribution v2).
let lab: Lab;
const pki = new TestPki();
beforeAll(async () => {
  lab = await startLab({ nodes: 1 });
}, 60_000);
afterAll(async () => {
  await lab?.stop();
  pki.cleanup();
});

test("inspect shows the registry's chain, trusted with the lab CA, distrusted with another", async () => {
  const url = `https://127.0.0.1:${lab.registry.port}`;
  const ok = await cli(["inspect", url, "--ca-bundle", lab.registry.caPath, "--save-chain", `${pki.dir}/served.pem`]);
  expect(ok.code).toBe(0);
  expect(ok.stdout).toContain("OK: a runtime with this bundle trusts this registry.");
  const wrong = await cli(["inspect", url, "--ca-bundle", pki.file("other.pem", pki.root("Not The Lab CA").certPem)]);
  expect(wrong.code).toBe(1);
  expect(wrong.stdout).toContain("ERROR UNKNOWN_AUTHORITY");
  const check = await cli(["check", "--ca-bundle", lab.registry.caPath, "--cert", `${pki.dir}/served.pem`, "--host", `registry.test:${lab.registry.port}`]);
  expect(check.code).toBe(0);
});
