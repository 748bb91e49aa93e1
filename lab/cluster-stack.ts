/*
 * Fills the lab stack's run-time config: what exists only once the lab is up (the registry's port, the
 * nodes' addresses, ports and generated host keys, the generated SSH key, the cluster's kubeconfig).
 *
 * The values go into a copy of stacks/Pulumi.<stack>.yaml in the lab directory, never into the committed
 * file: they change with every lab, the SSH key is encrypted with that copy's salt, and tests and the demo
 * may run labs at the same time. The lab's `pulumi` wrapper (labPulumi) puts the copy in the committed
 * file's place for the commands it runs.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";
import { PROJECT } from "../core/config/schema";
import type { ClusterDescription } from "./cluster";
import type { LabDescription } from "./lab";

const REPO_ROOT = path.resolve(__dirname, "..");

export interface LabStackOptions {
  lab: LabDescription;
  cluster?: ClusterDescription;
  /** Stack name; its committed config is stacks/Pulumi.<stack>.yaml. @default "lab" */
  stack?: string;
  /** Environment of the `pulumi` CLI (backend, passphrase, PATH with the CLI). @default process.env */
  env?: NodeJS.ProcessEnv;
}

/** The run-time values as plain config (the SSH key excluded: it is set as a secret). */
function runtimeConfig(lab: LabDescription, cluster?: ClusterDescription): Record<string, unknown> {
  // The serving switch reaches the registry's files through the first node: nodes share the host's /tmp,
  // where the lab keeps them, and the reload command runs there as well as on the host.
  const [first] = lab.nodes;
  return {
    servingTarget: {
      kind: "hostFiles", host: first.host, port: first.port, user: first.user, hostKey: first.hostKey,
      certPath: lab.registry.certPath, keyPath: lab.registry.keyPath, reloadCommand: [lab.registry.reloadCommand],
    },
    registries: [{ host: lab.registry.host, port: lab.registry.port }],
    nodes: lab.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port, hostKey: n.hostKey })),
    probeImage: lab.registry.image,
    clusters: cluster
      ? [{
          name: "lab",
          kubeconfig: cluster.kubeconfig,
          controlPlanes: [{ namespace: cluster.namespace, name: cluster.controlPlane }],
          machineDeployments: [{ namespace: cluster.namespace, name: cluster.machineDeployment }],
        }]
      : [],
  };
}

export interface LabStack {
  /** The filled copy of stacks/Pulumi.<stack>.yaml. */
  configFile: string;
  /** `pulumi` as the lab runs it (see labPulumi). */
  pulumi: string;
}

/**
 * Writes the filled copy, the lab's `pulumi` wrapper, creates the stack (unless told not to) and sets the
 * SSH key as a secret (through the CLI, on stdin: never on a command line).
 */
export async function writeLabStackConfig(opts: LabStackOptions): Promise<LabStack> {
  const stack = opts.stack ?? "lab";
  const committed = path.join(REPO_ROOT, "stacks", `Pulumi.${stack}.yaml`);
  if (!fs.existsSync(committed)) throw new Error(`lab: no stack config ${committed}`);
  const configFile = path.join(opts.lab.dir, `Pulumi.${stack}.yaml`);
  const doc = YAML.parseDocument(fs.readFileSync(committed, "utf8"));
  for (const [key, value] of Object.entries(runtimeConfig(opts.lab, opts.cluster))) doc.setIn(["config", `${PROJECT}:${key}`], value);
  fs.writeFileSync(configFile, doc.toString(), { mode: 0o600 });

  const env = opts.env ?? process.env;
  const wrapper = labPulumi(opts.lab, committed, configFile, env);
  // Fails when the stack exists: its state would describe another lab's nodes and cluster.
  await pulumi(wrapper, ["stack", "init", stack, "--non-interactive"], env);
  const key = fs.readFileSync(opts.lab.nodes[0].privateKeyPath, "utf8");
  await pulumi(wrapper, ["config", "set", "--secret", "--stack", stack, `${PROJECT}:sshPrivateKey`, "--non-interactive"], env, key);
  return { configFile, pulumi: wrapper };
}

/**
 * The adoption step's config, next to `configFile` (…/Pulumi.<stack>.adopt.yaml): the same stack with no
 * nodes and no clusters, so that its `pulumi up` creates the CAs and switches the registry to this stack's
 * serving certificate, and nothing else. The lab registry starts out serving a certificate of the lab's own
 * CA, which no node trusts and which is not in the stack's bundle; in the full run NodeTrust verifies on
 * each node (TLS probe, CRI pull) before the serving switch, so that first run could never pass. Switching
 * first breaks nothing here: no node trusts the old certificate. Returns the file's path.
 */
export function adoptionConfig(configFile: string): string {
  const doc = YAML.parseDocument(fs.readFileSync(configFile, "utf8"));
  doc.setIn(["config", `${PROJECT}:nodes`], []);
  doc.setIn(["config", `${PROJECT}:clusters`], []);
  const file = configFile.replace(/\.yaml$/, ".adopt.yaml");
  fs.writeFileSync(file, doc.toString(), { mode: 0o600 });
  return file;
}

/**
 * `<lab dir>`/bin/pulumi: runs the `pulumi` found on `env`'s PATH, from the repository, in a private mount
 * namespace where
 *  - the committed stacks/Pulumi.<stack>.yaml is the lab's filled copy (bind mount). Every command then
 *    reads and writes the copy, including those that take no --config-file but save the stack file
 *    (`stack init` its salt; `stack output --show-secrets`, which the Automation API runs after each up,
 *    its secrets provider), so the committed file is never written and plain `pulumi up --stack lab` works;
 *  - /etc/hosts also maps the lab registry's name, as each node's does: the program reads live state from
 *    the machine that runs it (the rotation preflight fetches what registry.test:PORT serves; the serving
 *    switch waits until it serves the new certificate), and on this host that name exists only in the lab.
 * Nothing changes outside that namespace. Returns the wrapper's path.
 */
export function labPulumi(lab: LabDescription, committed: string, configFile: string, env: NodeJS.ProcessEnv = process.env): string {
  const real = (env.PATH ?? "").split(path.delimiter).map((d) => path.join(d, "pulumi")).find((p) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return fs.realpathSync(p) !== path.join(lab.dir, "bin", "pulumi");
    } catch {
      return false;
    }
  });
  if (!real) throw new Error("lab: `pulumi` is not on PATH; run `. scripts/pulumi-env.sh` first (or install Pulumi)");
  fs.mkdirSync(path.join(lab.dir, "bin"), { recursive: true });
  const hosts = path.join(lab.dir, "hosts");
  fs.writeFileSync(hosts, `${fs.readFileSync("/etc/hosts", "utf8").trimEnd()}\n${lab.registry.address} ${lab.registry.host}\n`);
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const wrapper = path.join(lab.dir, "bin", "pulumi");
  const script = 'mount --bind "$1" /etc/hosts && mount --bind "$2" "$3" && shift 3 && exec "$@"';
  fs.writeFileSync(wrapper, [
    "#!/bin/sh",
    `# The lab's pulumi (lab/cluster-stack.ts labPulumi): ${real} with ${path.relative(REPO_ROOT, committed)} = ${configFile}`,
    `# and ${lab.registry.host} resolving to ${lab.registry.address}, in a private mount namespace.`,
    `exec unshare --mount --propagation private sh -c ${q(script)} sh ${[hosts, configFile, committed, real].map(q).join(" ")} "$@"`,
    "",
  ].join("\n"), { mode: 0o755 });
  return wrapper;
}

function pulumi(wrapper: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(wrapper, args, { cwd: REPO_ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.once("error", reject);
    child.once("exit", (code) => {
      // Only the command's words are shown: the one value passed (the SSH key) goes on stdin.
      if (code === 0) resolve();
      else reject(new Error(`lab: pulumi ${args.join(" ")} failed (${code}): ${output.trim()}`));
    });
    child.stdin.end(input ?? "");
  });
}
