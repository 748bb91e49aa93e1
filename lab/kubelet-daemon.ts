/*
 * `tsx lab/kubelet-daemon.ts LABDIR`: gives a running lab (lab.json in LABDIR) a real Kubernetes control
 * plane — kube-apiserver + etcd, kube-controller-manager, kube-scheduler — and a kubelet on every node, and
 * keeps them running until SIGTERM (then stops the kubelets and their pods, then the control plane).
 * lab/cli.ts starts it detached for `lab:start --kubelet`; DIR/kube/kube.json describes what runs.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { startKubeControlPlane } from "./control-plane";
import { startKubelet, type LabKubelet } from "./kubelet";
import { KUBE_JSON, type KubeDescription } from "./kubelet-launch";
import { attachLab } from "./lab";

async function main(): Promise<void> {
  const labDir = process.argv[2];
  if (!labDir) throw new Error("usage: lab/kubelet-daemon.ts LABDIR");
  const lab = attachLab(labDir);
  const dir = path.join(labDir, "kube");
  fs.mkdirSync(dir, { recursive: true });
  const kube = await startKubeControlPlane(dir);
  const kubelets: LabKubelet[] = [];
  const stop = async () => {
    for (const k of kubelets) await k.stop().catch((e: unknown) => process.stderr.write(`kubelet stop: ${String(e)}\n`));
    await kube.stop();
  };
  try {
    // One after the other: each start compiles pause.c and imports images; in parallel they only contend.
    for (const node of lab.nodes) kubelets.push(await startKubelet({ api: kube.api, node }));
  } catch (e) {
    await stop();
    throw e;
  }
  const kubeconfig = path.join(dir, "kubeconfig");
  fs.copyFileSync(kube.api.kubeconfigPath, kubeconfig);
  fs.chmodSync(kubeconfig, 0o600);
  const description: KubeDescription = {
    version: 1, server: kube.api.server, kubeconfig, pid: process.pid,
    nodes: kubelets.map((k) => ({ name: k.nodeName, kubeletPid: k.pid, log: k.log, cgroupRoot: k.cgroupRoot })),
  };
  fs.writeFileSync(path.join(dir, KUBE_JSON), JSON.stringify(description, null, 2) + "\n");
  process.stdout.write(`kubelets ready: ${kube.api.server}\n`);
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    stop().then(() => process.exit(0), (e: unknown) => {
      process.stderr.write(`kube stop failed: ${String(e)}\n`);
      process.exit(1);
    });
  };
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(sig, onSignal);
  setInterval(() => undefined, 1 << 30);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
