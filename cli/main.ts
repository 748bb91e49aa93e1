import { UsageError } from "./args";
import { CHECK_USAGE, check } from "./check";
import { DOCTOR_USAGE, doctor } from "./doctor";
import { INSPECT_USAGE, inspect } from "./inspect";
import { Io, processIo } from "./io";
import { RENDER_USAGE, render } from "./render";

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

Exit codes: 0 trusted / no problem, 1 problems found (each listed with a code and a fix), 2 usage error
(doctor: also when the node cannot be reached).
`;

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "check":
        return await check(rest, io);
      case "inspect":
        return await inspect(rest, io);
      case "render":
        return await render(rest, io);
      case "doctor":
        return await doctor(rest, io);
      case "help":
      case "--help":
      case "-h":
        io.out(USAGE);
        return 0;
      default:
        throw new UsageError(command === undefined ? "a command is required" : `unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`registry-trust: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}
