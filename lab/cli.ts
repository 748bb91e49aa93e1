/**
 * `tsx lab/cli.ts start [--nodes N] [--dir DIR]` starts a lab, writes DIR/lab.json and returns;
 * `tsx lab/cli.ts stop [--dir DIR]` tears it down. DIR defaults to $TMPDIR/registry-trust-lab.
 */
import * as os from "node:os";
import * as path from "node:path";
import { attachLab, startLab } from "./lab";

const USAGE = "usage: lab/cli.ts start [--nodes N] [--dir DIR] | stop [--dir DIR]";

function parse(argv: string[]): { command: string; nodes: number; dir: string } {
  const [command, ...rest] = argv;
  let nodes = 1;
  let dir = path.join(os.tmpdir(), "registry-trust-lab");
  for (let i = 0; i < rest.length; i++) {
    const [flag, inline] = rest[i].split(/=(.*)/s, 2);
    const value = inline ?? rest[++i];
    if (value === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
    if (flag === "--nodes" && command === "start") nodes = Number(value);
    else if (flag === "--dir") dir = path.resolve(value);
    else throw new Error(`unknown option ${flag}\n${USAGE}`);
  }
  return { command, nodes, dir };
}

async function main(): Promise<void> {
  const { command, nodes, dir } = parse(process.argv.slice(2));
  const started = performance.now();
  if (command === "start") {
    const lab = await startLab({ nodes, dir });
    const ms = Math.round(performance.now() - started);
    process.stdout.write(`lab started in ${ms} ms: ${path.join(lab.dir, "lab.json")}\n`);
    process.stdout.write(`registry ${lab.registry.image}\n`);
    for (const n of lab.nodes) process.stdout.write(`${n.name} ssh -i ${n.privateKeyPath} -p ${n.port} root@${n.host}\n`);
  } else if (command === "stop") {
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
