import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { UsageError, wantsHelp } from "./args";
import { CHECK_USAGE, check } from "./check";
import { DOCTOR_USAGE, doctor } from "./doctor";
import { DRIFT_USAGE, drift } from "./drift";
import { INSPECT_USAGE, inspect } from "./inspect";
import { Io, processIo } from "./io";
import { RENDER_USAGE, render } from "./render";
import { ROLLOUT_USAGE, rollout } from "./rollout";

const USAGE = `registry-trust: make private container registries trusted by Kubernetes nodes.

Usage:
  ${CHECK_USAGE}
      Offline: would a container runtime with this CA bundle trust this serving certificate for HOST?
  ${INSPECT_USAGE}
      Online: show the chain a registry serves and what is wrong with it.
  ${RENDER_USAGE}
      Print the POSIX sh script that installs (or removes) the bundle on a node, run as root.
  ${DOCTOR_USAGE}
      Read-only, over ssh: why does this node fail to pull from the registry (x509), and the fix.
  ${ROLLOUT_USAGE}
      Promote a change through the stacks of a rollout file: preview, up, gates; --resume after a stop.
  ${DRIFT_USAGE}
      Read-only, over ssh: has any node's trust been edited since the stack installed it?

  registry-trust COMMAND --help   Usage of one command.
  registry-trust --version        Print the version.

Exit codes: 0 trusted / no problem, 1 problems found (each listed with a code and a fix), 2 usage error
(doctor: also when the node cannot be reached).
`;

const COMMANDS: Record<string, { usage: string; run: (argv: readonly string[], io: Io) => Promise<number> }> = {
  check: { usage: CHECK_USAGE, run: check },
  inspect: { usage: INSPECT_USAGE, run: inspect },
  render: { usage: RENDER_USAGE, run: render },
  doctor: { usage: DOCTOR_USAGE, run: doctor },
  rollout: { usage: ROLLOUT_USAGE, run: rollout },
  drift: { usage: DRIFT_USAGE, run: drift },
};

/**
 * The package's own version, read at run time so that it can never disagree with package.json: the nearest
 * package.json named registry-trust above this file (cli/ in a checkout, dist/cli/ in the installed package).
 */
function version(): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version: string };
      if (pkg.name === "registry-trust") return pkg.version;
    }
    if (dirname(dir) === dir) throw new Error(`registry-trust: no package.json of registry-trust above ${__dirname}`);
  }
}

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === "--version" || command === "-v") {
      io.out(`registry-trust ${version()}\n`);
      return 0;
    }
    if (command === undefined) throw new UsageError("a command is required");
    if (command === "help" || command === "--help" || command === "-h") {
      io.out(USAGE);
      return 0;
    }
    const sub = Object.prototype.hasOwnProperty.call(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!sub) throw new UsageError(`unknown command "${command}"`);
    if (wantsHelp(rest)) {
      io.out(`Usage: ${sub.usage}\n`);
      return 0;
    }
    return await sub.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`registry-trust: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}
