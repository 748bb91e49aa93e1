/*
 * `tsx lab/cluster-summary.ts LABDIR OUTPUTS.json`: after `pulumi up --stack lab`, checks on the real
 * parts what the stack claims (OUTPUTS.json = `pulumi stack output --json`) and prints one line each:
 * per node a CRI pull of the lab image (the kubelet's path), the KubeadmControlPlane's CA file entry and
 * its rollout, the Machines the real Cluster API controllers rolled (their bootstrap data carries the
 * bundle), the MachineDeployment's bootstrap template, and what the registry serves. Exit 1 when any
 * check fails. Used by scripts/demo.sh.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fetchServedChain } from "../core/served-chain";
import { rolloutState } from "../core/kcp/rollout";
import { chainFromDer } from "../core/rotation/served";
import { bundleHash } from "../core/x509/bundle";
import { parsePemCertificates } from "../core/x509/pem";
import { verifyServing } from "../core/x509/verify";
import { clusterObjects, readClusterDescription } from "./cluster";
import { attachLab } from "./lab";

interface Outputs {
  bundleHash: string;
  bundlePem: string;
  controlPlaneTrust: Array<{ generation: number }>;
}

const short = (h: string) => `sha256:${h.slice(0, 16)}…`;

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
    // The Machines the real controllers rolled: each should have been made after our write, i.e. boot
    // from bootstrap data that writes our CA file with the stack's bundle.
    const caPath = `/etc/containerd/certs.d/${endpoint}/ca.crt`;
    const firstLine = outputs.bundlePem.split("\n")[1] ?? "";
    const machines = (await objs.machines()).filter((m) => !m.metadata.deletionTimestamp);
    const carrying = await Promise.all(machines.map(async (m) => {
      const data = await objs.bootstrapData(m.spec.bootstrap.dataSecretName).catch(() => undefined);
      return Boolean(data?.includes(`path: ${caPath}`) && data.includes(firstLine));
    }));
    const cp = machines.filter((m) => m.metadata.labels?.["cluster.x-k8s.io/control-plane"] !== undefined);
    line(machines.length > 0 && carrying.every(Boolean),
      `Machines rolled by ${cluster.controllers}: ${cp.length} control plane, ${machines.length - cp.length} workers; ` +
      `${carrying.filter(Boolean).length}/${machines.length} boot from bootstrap data writing ${caPath} with the stack's bundle ` +
      `(${machines.map((m) => m.metadata.name).join(", ")})`);
    const md = await objs.machineDeployment();
    const name = md.spec.template.spec.bootstrap.configRef.name as string;
    const template = await objs.template(name);
    const entry = (template.spec.template.spec.files as Array<{ path: string; content?: string }>).find((f) => f.path === `/etc/containerd/certs.d/${endpoint}/ca.crt`);
    const templateHash = entry?.content ? bundleHash(entry.content) : "none";
    line(name !== cluster.bootstrapTemplate && templateHash === outputs.bundleHash,
      `MachineDeployment ${cluster.namespace}/${cluster.machineDeployment}: bootstrap template ${name} carries bundle ${templateHash === "none" ? "none" : short(templateHash)}`);
  }

  // What the endpoint serves (no trust evaluated while fetching), judged by Go's rules against the stack's
  // bundle for the name the nodes dial. registry.test resolves only inside the lab, so dial its loopback.
  const chain = chainFromDer(await fetchServedChain({ host: "127.0.0.1", port: lab.registry.port }, 10_000), endpoint);
  const verdict = verifyServing({ bundle: parsePemCertificates(outputs.bundlePem, "bundlePem").certs, chain, host: lab.registry.host });
  const leaf = chain[0];
  line(verdict.trusted, `registry ${endpoint} serves ${leaf.subject} issued by ${leaf.issuer}` +
    `${verdict.trusted ? " (verifies against the stack's bundle)" : ` — does NOT verify against the stack's bundle: ${verdict.problems.map((p) => p.code).join(", ")}`}` +
    `, valid until ${leaf.notAfter.toISOString()}`);
  if (failed > 0) throw new Error(`${failed} check(s) failed`);
}

main().catch((e: unknown) => {
  process.stderr.write(`summary: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
