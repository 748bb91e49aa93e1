/**
 * NodeTrust's exact command lines over real ssh on a lab node (the provider's part is played by ssh: the
 * command line, plus stdin). Needs root and the lab's packages, like test/lab.
 */
import { nodeCommand } from "../../components/node-trust";
import { RegistryEndpoint } from "../../core/config/model";
import { parseNodeReport, renderNodeScriptPair } from "../../core/node/render";
import { NodeScriptInput } from "../../core/node/types";
import { assembleBundle, bundleHash } from "../../core/x509/bundle";
import { startLab, REGISTRY_HOST, type Lab } from "../../lab/lab";

const X509_UNKNOWN_AUTHORITY = "x509: certificate signed by unknown authority";

let lab: Lab;
beforeAll(async () => {
  lab = await startLab({ nodes: 1 });
});
afterAll(async () => {
  await lab?.stop();
});

test("create (script on stdin) installs and verifies; delete, with the install script still on stdin, removes", async () => {
  const [node] = lab.nodes;
  const registries: RegistryEndpoint[] = [{ host: REGISTRY_HOST, port: lab.registry.port, mirrorOf: [] }];
  const bundlePem = assembleBundle([lab.registry.caPem]).pem;
  const input: Omit<NodeScriptInput, "action"> = { os: "auto", runtimes: ["containerd"], registries, bundlePem };
  const lines = nodeCommand("root", bundleHash(bundlePem), renderNodeScriptPair(input));
  const cri = node.cri();
  try {
    await expect(cri.pullImage(lab.registry.image)).rejects.toThrow(X509_UNKNOWN_AUTHORITY);
    const pid = node.containerdPid();

    const created = await node.exec(lines.create, { stdin: lines.stdin });
    expect(created.code).toBe(0);
    const report = parseNodeReport(created.stdout);
    expect(report).toMatchObject({ action: "install", restarted: [], bundleSha256: bundleHash(bundlePem) });
    expect(report.changed.length).toBeGreaterThan(0);
    await expect(cri.pullImage(lab.registry.image)).resolves.toMatch(/^sha256:/);
    expect(node.containerdPid()).toBe(pid);
    await cri.removeImage(lab.registry.image);

    // The provider runs delete with the stored inputs: stdin is the install script again.
    const deleted = await node.exec(lines.delete, { stdin: lines.stdin });
    expect(deleted.code).toBe(0);
    expect(parseNodeReport(deleted.stdout)).toMatchObject({ action: "remove", restarted: [] });
    await expect(cri.pullImage(lab.registry.image)).rejects.toThrow(X509_UNKNOWN_AUTHORITY);
  } finally {
    cri.close();
  }
});
