/**
 * The serving switch's hostFiles target over real ssh against the lab's reloadable registry (the provider's
 * part is played by ssh: ServingCertificate's command line, plus the script on stdin), inside a whole
 * rotation in the protocol's order: preflight → bundle to the node → switch → retire one up later. Every
 * step is checked where users meet it: a CRI pull on the node and the certificate the registry serves.
 * Needs root and the lab's packages, like test/lab.
 */
import { fetchServedChain } from "../../core/served-chain";
import { nodeCommand } from "../../components/node-trust";
import { RegistryEndpoint } from "../../core/config/model";
import { parseNodeReport, renderNodeScriptPair } from "../../core/node/render";
import { hostFilesCommandLine, hostFilesScript } from "../../core/rotation/host-files";
import { LiveReaders, PreflightPlan, evaluatePreflight, preflightVerdict, readLiveState } from "../../core/rotation/preflight";
import { chainFromDer, waitUntilServed } from "../../core/rotation/served";
import { assembleBundle, bundleHash } from "../../core/x509/bundle";
import { parsePemCertificates } from "../../core/x509/pem";
import { startLab, REGISTRY_HOST, type Lab } from "../../lab/lab";
import { Issued, TestPki } from "../../lab/openssl-pki";

jest.setTimeout(120_000);

const pki = new TestPki();
const g1 = pki.root("Lab Rotation CA G1");
const g2 = pki.root("Lab Rotation CA G2");
const sans = ["DNS:registry.test", "DNS:localhost", "IP:127.0.0.1"];
const leaf1 = pki.leaf(g1, sans);
const leaf2 = pki.leaf(g2, sans);
const fingerprint = (c: Issued) => parsePemCertificates(c.certPem, "leaf").certs[0].fingerprint256;

let lab: Lab;
beforeAll(async () => {
  lab = await startLab({ nodes: 1 });
});
afterAll(async () => {
  await lab?.stop();
  pki.cleanup();
});

const spec = () => ({ certPath: lab.registry.certPath, keyPath: lab.registry.keyPath, reloadCommand: [lab.registry.reloadCommand] });
const endpoint = () => ({ host: lab.registry.address, port: lab.registry.port });
const servedLeaf = async () => chainFromDer(await fetchServedChain(endpoint(), 5000), "served")[0].fingerprint256;

/** ServingCertificate's hostFiles step as the provider runs it: its command line over ssh, the script on stdin. */
async function switchTo(cert: Issued, reload = spec().reloadCommand) {
  const s = { ...spec(), reloadCommand: reload };
  return lab.nodes[0].exec(hostFilesCommandLine("root", cert.certPem), { stdin: hostFilesScript(s, cert.certPem, cert.keyPem) });
}

/** NodeTrust's step on the node: install `cas` as the bundle and verify. */
async function distribute(...cas: Issued[]) {
  const registries: RegistryEndpoint[] = [{ host: REGISTRY_HOST, port: lab.registry.port, mirrorOf: [] }];
  const bundlePem = assembleBundle(cas.map((c) => c.certPem)).pem;
  const input = { os: "auto" as const, runtimes: ["containerd" as const], registries, bundlePem };
  const cmd = nodeCommand("root", bundleHash(bundlePem), renderNodeScriptPair(input));
  const r = await lab.nodes[0].exec(cmd.create, { stdin: cmd.stdin });
  expect(r.stderr).toBe("");
  expect(parseNodeReport(r.stdout).bundleSha256).toBe(bundleHash(bundlePem));
  return { pem: bundlePem, hash: bundleHash(bundlePem) };
}

async function pulls(): Promise<boolean> {
  const cri = lab.nodes[0].cri();
  try {
    await cri.pullImage(lab.registry.image);
    await cri.removeImage(lab.registry.image);
    return true;
  } catch {
    return false;
  } finally {
    cri.close();
  }
}

const plan = (generations: number[]): PreflightPlan =>
  ({ registries: [endpoint()], ca: { mode: "generate", commonName: "Lab Rotation CA", generations }, clusters: [] });
const readers: LiveReaders = { fetchChain: fetchServedChain, cluster: () => { throw new Error("no cluster in this test"); } };

test("a rotation G1 → G2 in protocol order: the node pulls at every step, the registry serves what was switched, G1 retires one run later", async () => {
  // Set-up, the state a finished generation 1 leaves: the registry serves G1's certificate (the lab starts it
  // on its own CA, which no bundle here holds; the node trusts nothing yet), the node holds {G1}.
  const first = await switchTo(leaf1);
  expect(first.code).toBe(0);
  expect(first.stdout).toContain(`serving certificate installed at ${lab.registry.certPath} and reloaded`);
  expect(await servedLeaf()).toBe(fingerprint(leaf1));
  expect(await pulls()).toBe(false);
  await distribute(g1);
  expect(await pulls()).toBe(true);

  // Rotation to G2 with caRetainGenerations 0 would drop the CA of what is served: refused before anything.
  const liveBefore = await readLiveState(plan([2]), readers);
  expect(preflightVerdict(evaluatePreflight(plan([2]), liveBefore), false).error).toContain("serves a certificate from CA generation 1, which would leave the bundle (generations 2)");

  // With G1 retained it goes ahead: distribute {G2, G1} (pass 2 checks the served chain against it) ...
  const b21 = assembleBundle([g2.certPem, g1.certPem]).pem;
  expect(evaluatePreflight(plan([2, 1]), await readLiveState(plan([2, 1]), readers), { pem: b21, hash: bundleHash(b21) })).toEqual([]);
  await distribute(g2, g1);
  expect(await pulls()).toBe(true);
  // ... then switch; ServingCertificate waits until the endpoint serves the new leaf.
  expect((await switchTo(leaf2)).code).toBe(0);
  await waitUntilServed([endpoint()], fingerprint(leaf2), 10_000, fetchServedChain);
  expect(await pulls()).toBe(true);

  // The next run retires G1: nothing served comes from it any more, so the narrowed bundle is allowed.
  const b2 = assembleBundle([g2.certPem]).pem;
  expect(evaluatePreflight(plan([2]), await readLiveState(plan([2]), readers), { pem: b2, hash: bundleHash(b2) })).toEqual([]);
  await distribute(g2);
  expect(await pulls()).toBe(true);
});

test("a failing reload fails the switch with its message; a rerun with a working reload converges", async () => {
  const before = await servedLeaf();
  const failed = await switchTo(leaf1, ["/bin/sh", "/nonexistent/reload-registry"]);
  expect(failed.code).not.toBe(0);
  expect(failed.stderr).toMatch(/\/nonexistent\/reload-registry/);
  // The files changed but the registry was not reloaded: it still serves what it served.
  expect(await servedLeaf()).toBe(before);
  const rerun = await switchTo(leaf1);
  expect(rerun.code).toBe(0);
  expect(await servedLeaf()).toBe(fingerprint(leaf1));
});

test("waiting for the switch names the endpoint still serving the old certificate", async () => {
  await expect(waitUntilServed([endpoint()], fingerprint(leaf2), 1500, fetchServedChain, 200))
    .rejects.toThrow(new RegExp(`the registry does not serve the new certificate .* after 2 s: ${lab.registry.address}:${lab.registry.port} serves "CN=[^"]*" issued by "CN=Lab Rotation CA G1"`));
});
