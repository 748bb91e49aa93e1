/*
 * `tsx lab/cluster-summary.ts LABDIR OUTPUTS.json`: after `pulumi up --stack lab`, checks on the real
 * parts what the stack claims (OUTPUTS.json = `pulumi stack output --json`) and prints one line each:
 * per node a CRI pull of the lab image (the kubelet's path), the KubeadmControlPlane's CA file entry and
 * its rollout, the MachineDeployment's bootstrap template, and what the registry serves. Exit 1 when any
 * check fails. Used by scripts/demo.sh.
 */
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as tls from "node:tls";
import { rolloutState } from "../core/kcp/rollout";
import { bundleHash } from "../core/x509/bundle";
import { clusterObjects, readClusterDescription } from "./cluster";
import { attachLab } from "./lab";

interface Outputs {
  bundleHash: string;
  bundlePem: string;
  controlPlaneTrust: Array<{ generation: number }>;
}

const short = (h: string) => `sha256:${h.slice(0, 16)}…`;

function served(port: number, servername: string): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate());
      s.end();
    });
    s.once("error", reject);
  });
}

async function main(): Promise<void> {
  const [dir, outputsFile] = process.argv.slice(2);
  if (!dir || !outputsFile) throw new Error("usage: lab/cluster-summary.ts LABDIR OUTPUTS.json");
  const outputs = JSON.parse(fs.readFileSync(outputsFile, "utf8")) as Outputs;
  const lab = attachLab(dir);
  const cluster = readClusterDescription(path.join(dir, "cluster"));
  let failed = 0;
  const line = (ok: boolean, text: string) => {
    if (!ok) failed++;
    process.stdout.write(`${ok ? "ok  " : "FAIL"} ${text}\n`);
  };

  for (const node of lab.nodes) {
    const cri = node.cri();
    try {
      await cri.removeImage(lab.registry.image).catch(() => undefined);
      line(true, `${node.name}: pull through CRI ok (${lab.registry.image} → ${(await cri.pullImage(lab.registry.image)).slice(0, 19)}…)`);
    } catch (e) {
      line(false, `${node.name}: pull through CRI failed: ${(e as Error).message}`);
    } finally {
      cri.close();
    }
  }

  const endpoint = `${lab.registry.host}:${lab.registry.port}`;
  if (cluster) {
    const objs = clusterObjects(cluster);
    const kcp = await objs.controlPlane();
    const file = (kcp.spec.kubeadmConfigSpec.files as Array<{ path: string; content?: string }>).find((f) => f.path === `/etc/containerd/certs.d/${endpoint}/ca.crt`);
    const carried = file?.content ? bundleHash(file.content) : "none";
    line(carried === outputs.bundleHash, `KubeadmControlPlane ${cluster.namespace}/${cluster.controlPlane}: files entry ${file?.path ?? "(missing)"} carries bundle ${carried === "none" ? "none" : short(carried)} (stack: ${short(outputs.bundleHash)})`);
    const generation = outputs.controlPlaneTrust[0]?.generation ?? Number.MAX_SAFE_INTEGER;
    const rollout = rolloutState(kcp as never, cluster.apiVersion, generation);
    line(rollout.done, `KubeadmControlPlane rollout ${rollout.done ? "done" : "NOT done"}: ${rollout.summary}`);
    const md = await objs.machineDeployment();
    const name = md.spec.template.spec.bootstrap.configRef.name as string;
    const template = await objs.template(name);
    const entry = (template.spec.template.spec.files as Array<{ path: string; content?: string }>).find((f) => f.path === `/etc/containerd/certs.d/${endpoint}/ca.crt`);
    const templateHash = entry?.content ? bundleHash(entry.content) : "none";
    line(name !== cluster.bootstrapTemplate && templateHash === outputs.bundleHash,
      `MachineDeployment ${cluster.namespace}/${cluster.machineDeployment}: bootstrap template ${name} carries bundle ${templateHash === "none" ? "none" : short(templateHash)}`);
  }

  // What the endpoint serves, with no trust evaluated; then whether a CA of the stack's bundle signed it.
  const leaf = new X509Certificate((await served(lab.registry.port, lab.registry.host)).raw);
  const cas = (outputs.bundlePem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
  const signer = cas.find((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
  line(signer !== undefined, `registry ${endpoint} serves ${leaf.subject.replace(/\n/g, ", ")} issued by ${leaf.issuer.replace(/\n/g, ", ")}` +
    `${signer ? " (a CA of the stack's bundle)" : " — NOT signed by a CA of the stack's bundle"}, valid until ${leaf.validTo}`);
  if (failed > 0) throw new Error(`${failed} check(s) failed`);
}

main().catch((e: unknown) => {
  process.stderr.write(`summary: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
