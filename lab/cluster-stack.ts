/*
 * Fills the lab stack's run-time config: what exists only once the lab is up (the registry's port, the
 * nodes' addresses, ports and generated host keys, the generated SSH key, the cluster's kubeconfig).
 *
 * The values go into a copy of stacks/Pulumi.<stack>.yaml in the lab directory, which `pulumi up
 * --config-file` then uses, never into the committed file: they change with every lab, the SSH key is
 * encrypted with a per-file salt, and tests and the demo may run labs at the same time.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";
import { PROJECT } from "../core/config/schema";
import type { ClusterDescription } from "./cluster";
import type { LabDescription } from "./lab";

const REPO_ROOT = path.resolve(__dirname, "..");

/** The keys the lab start writes (the committed file names them in its header). */
export const RUNTIME_KEYS = ["registries", "nodes", "sshPrivateKey", "probeImage", "clusters", "servingTarget"] as const;

export interface LabStackOptions {
  lab: LabDescription;
  cluster?: ClusterDescription;
  /** Stack name; its committed config is stacks/Pulumi.<stack>.yaml. @default "lab" */
  stack?: string;
  /** Where the filled copy goes. @default <lab dir>/Pulumi.<stack>.yaml */
  configFile?: string;
  /** Environment of the `pulumi` CLI (backend, passphrase, PATH with the CLI). @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Also create the stack in the backend (fails when it exists). @default true */
  createStack?: boolean;
}

/** The run-time values as plain config (the SSH key excluded: it is set as a secret). */
export function runtimeConfig(lab: LabDescription, cluster?: ClusterDescription): Record<string, unknown> {
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

/**
 * Writes the filled copy and sets the SSH key into it as a secret (through the CLI, on stdin: never on a
 * command line). Returns the file's path.
 */
export async function writeLabStackConfig(opts: LabStackOptions): Promise<string> {
  const stack = opts.stack ?? "lab";
  const committed = path.join(REPO_ROOT, "stacks", `Pulumi.${stack}.yaml`);
  if (!fs.existsSync(committed)) throw new Error(`lab: no stack config ${committed}`);
  const file = path.resolve(opts.configFile ?? path.join(opts.lab.dir, `Pulumi.${stack}.yaml`));
  const doc = YAML.parseDocument(fs.readFileSync(committed, "utf8"));
  for (const [key, value] of Object.entries(runtimeConfig(opts.lab, opts.cluster))) doc.setIn(["config", `${PROJECT}:${key}`], value);
  fs.writeFileSync(file, doc.toString(), { mode: 0o600 });

  // The CLI runs in a scratch project of the same name, so that `stack init` writes its encryption salt
  // there instead of into the repo's stacks/ directory.
  const project = path.join(path.dirname(file), `.pulumi-project-${stack}`);
  fs.mkdirSync(project, { recursive: true });
  fs.copyFileSync(path.join(REPO_ROOT, "Pulumi.yaml"), path.join(project, "Pulumi.yaml"));
  const env = opts.env ?? process.env;
  if (opts.createStack ?? true) await pulumi(["stack", "init", stack, "--non-interactive"], project, env);
  const key = fs.readFileSync(opts.lab.nodes[0].privateKeyPath, "utf8");
  await pulumi(["config", "set", "--secret", "--config-file", file, "--stack", stack, `${PROJECT}:sshPrivateKey`, "--non-interactive"], project, env, key);
  return file;
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
 * `<dir>`/operator/bin/pulumi: runs the `pulumi` found on `env`'s PATH in a private mount namespace whose
 * /etc/hosts also maps the lab registry's name, as each node's does. The program reads live state from
 * the operator's machine (the rotation preflight fetches what registry.test:PORT serves; the serving
 * switch waits until it serves the new certificate), and on this host that name exists only inside the
 * lab. The host's own /etc/hosts is never changed. Returns the wrapper's path.
 */
export function operatorPulumi(lab: LabDescription, env: NodeJS.ProcessEnv = process.env): string {
  const real = (env.PATH ?? "").split(path.delimiter).map((d) => path.join(d, "pulumi")).find((p) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (!real) throw new Error("lab: `pulumi` is not on PATH; run `. scripts/pulumi-env.sh` first (or install Pulumi)");
  const dir = path.join(lab.dir, "operator");
  fs.mkdirSync(path.join(dir, "bin"), { recursive: true });
  const hosts = path.join(dir, "hosts");
  fs.writeFileSync(hosts, `${fs.readFileSync("/etc/hosts", "utf8").trimEnd()}\n${lab.registry.address} ${lab.registry.host}\n`);
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const wrapper = path.join(dir, "bin", "pulumi");
  fs.writeFileSync(wrapper, [
    "#!/bin/sh",
    `# The lab's operator view: ${real} with ${lab.registry.host} resolving to ${lab.registry.address} (lab/cluster-stack.ts).`,
    `exec unshare --mount --propagation private sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' ${q(hosts)} ${q(real)} "$@"`,
    "",
  ].join("\n"), { mode: 0o755 });
  return wrapper;
}

function pulumi(args: string[], cwd: string, env: NodeJS.ProcessEnv, input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("pulumi", args, { cwd, env, stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.once("error", (e: NodeJS.ErrnoException) =>
      reject(new Error(e.code === "ENOENT" ? "lab: `pulumi` is not on PATH; run `. scripts/pulumi-env.sh` first (or install Pulumi)" : e.message)));
    child.once("exit", (code) => {
      // Only the command's words are shown: the one value passed (the SSH key) goes on stdin.
      if (code === 0) resolve();
      else reject(new Error(`lab: pulumi ${args.join(" ")} failed (${code}): ${output.trim()}`));
    });
    child.stdin.end(input ?? "");
  });
}
