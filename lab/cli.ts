/**
 * `tsx lab/cli.ts start [--nodes N] [--containerd 1.6|2|LIST] [--dir DIR] [--cluster] [--stack NAME]` starts a
 * lab, writes DIR/lab.json and returns; `tsx lab/cli.ts stop [--dir DIR]` tears it down. DIR defaults to
 * $TMPDIR/registry-trust-lab.
 * --containerd picks the nodes' containerd (lab/runtime.ts): "2" for all, or a comma list, one per node
 * ("1.6,2"). Default 1.6.
 * --cluster also starts the Cluster API management cluster (lab/cluster.ts: kube-apiserver and the real
 * Cluster API v1.14 managers, a Cluster with a KubeadmControlPlane of 3 and a MachineDeployment of 2
 * in-memory machines), kept running by a detached process until `stop`; DIR/cluster/cluster.json describes it.
 * --stack NAME creates that Pulumi stack (in the backend of the environment, e.g. after
 * `. scripts/pulumi-env.sh`), writes DIR/Pulumi.NAME.yaml (stacks/Pulumi.NAME.yaml with this lab's run-time
 * values filled in) and DIR/bin/pulumi, which runs pulumi with that copy in the committed file's place and
 * the lab registry's name resolvable (lab/cluster-stack.ts).
 * --kubelet also starts a real Kubernetes control plane (apiserver, controller-manager, scheduler) and a
 * real kubelet on every node (lab/kubelet-daemon.ts, docs/kubelet.md); DIR/kube/kube.json describes it.
 */
import * as os from "node:os";
import * as path from "node:path";
import { launchCluster, stopCluster, type ClusterDescription } from "./cluster";
import { adoptionConfig, writeLabStackConfig } from "./cluster-stack";
import { attachLab, startLab } from "./lab";
import { launchKubelets, stopKubelets } from "./kubelet-launch";
import type { ContainerdFlavor } from "./runtime";

const USAGE = "usage: lab/cli.ts start [--nodes N] [--containerd 1.6|2|LIST] [--dir DIR] [--cluster] [--kubelet] [--stack NAME] | stop [--dir DIR]";

interface Parsed {
  command: string;
  nodes: number;
  dir: string;
  cluster: boolean;
  kubelet: boolean;
  stack?: string;
  containerd?: ContainerdFlavor | ContainerdFlavor[];
}

function parse(argv: string[]): Parsed {
  const [command, ...rest] = argv;
  let nodes = 1;
  let dir = path.join(os.tmpdir(), "registry-trust-lab");
  let cluster = false;
  let kubelet = false;
  let stack: string | undefined;
  let containerd: Parsed["containerd"];
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === "--cluster" && command === "start") {
      cluster = true;
      continue;
    }
    if (rest[i] === "--kubelet" && command === "start") {
      kubelet = true;
      continue;
    }
    const [flag, inline] = rest[i].split(/=(.*)/s, 2);
    const value = inline ?? rest[++i];
    if (value === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
    if (flag === "--nodes" && command === "start") nodes = Number(value);
    else if (flag === "--dir") dir = path.resolve(value);
    else if (flag === "--stack" && command === "start") stack = value;
    // Checked by startLab, which names the valid values.
    else if (flag === "--containerd" && command === "start") containerd = value.includes(",") ? (value.split(",") as ContainerdFlavor[]) : (value as ContainerdFlavor);
    else throw new Error(`unknown option ${flag}\n${USAGE}`);
  }
  return { command, nodes, dir, cluster, kubelet, stack, containerd };
}

async function main(): Promise<void> {
  const { command, nodes, dir, cluster, kubelet, stack, containerd } = parse(process.argv.slice(2));
  const started = performance.now();
  if (command === "start") {
    const lab = await startLab({ nodes, dir, containerd });
    let description: ClusterDescription | undefined;
    try {
      if (cluster) description = await launchCluster(path.join(lab.dir, "cluster"));
      const kube = kubelet ? await launchKubelets(lab.dir) : undefined;
      const labStack = stack ? await writeLabStackConfig({ lab: lab.describe(), cluster: description, stack }) : undefined;
      const ms = Math.round(performance.now() - started);
      process.stdout.write(`lab started in ${ms} ms: ${path.join(lab.dir, "lab.json")}\n`);
      process.stdout.write(`registry ${lab.registry.image}\n`);
      for (const n of lab.nodes) process.stdout.write(`${n.name} (containerd ${n.containerd}) ssh -i ${n.privateKeyPath} -p ${n.port} root@${n.host}\n`);
      if (description) {
        process.stdout.write(`cluster ${description.server} KUBECONFIG=${description.kubeconfig} ` +
          `KubeadmControlPlane ${description.namespace}/${description.controlPlane}, MachineDeployment ${description.namespace}/${description.machineDeployment} (${description.controllers})\n`);
      }
      if (kube) process.stdout.write(`kubelets on ${kube.nodes.map((n) => n.name).join(", ")} KUBECONFIG=${kube.kubeconfig}\n`);
      if (labStack) {
        const { pulumi, configFile } = labStack;
        process.stdout.write(`stack ${stack} (config ${configFile}), first the adoption (the registry gets the stack's certificate): ${pulumi} up --stack ${stack} --config-file ${adoptionConfig(configFile)}\n`);
        process.stdout.write(`stack ${stack}, then: ${pulumi} up --stack ${stack}\n`);
      }
    } catch (e) {
      await stopKubelets(lab.dir).catch(() => undefined);
      await stopCluster(path.join(lab.dir, "cluster")).catch(() => undefined);
      await lab.stop().catch(() => undefined);
      throw e;
    }
  } else if (command === "stop") {
    // The cluster daemon first: lab.stop() removes DIR, cluster.json with it.
    await stopKubelets(dir);
    await stopCluster(path.join(dir, "cluster"));
    await attachLab(dir).stop();
    process.stdout.write(`lab stopped in ${Math.round(performance.now() - started)} ms: ${dir} removed\n`);
  } else {
    throw new Error(USAGE);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
