import { OsFamily, RegistryEndpoint, Runtime } from "../core/config/model";
import { OS_FAMILIES, RUNTIMES } from "../core/config/schema";
import { renderNodeScript } from "../core/node/render";
import { NodeAction } from "../core/node/types";
import { UsageError, one, parseArgs, required } from "./args";
import { hostFlag } from "./check";
import { readInput } from "./files";
import { Io } from "./io";

export const RENDER_USAGE =
  "registry-trust render --os OS --runtime RT [--runtime RT…] --registry HOST[:PORT] [--registry …] --ca-bundle FILE [--action install|remove] [--serving-chain FILE] [--probe-image REF]";

const ACTIONS: readonly NodeAction[] = ["install", "remove"];

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${flag} "${value}" is not one of: ${allowed.join(", ")}`);
  return value as T;
}

/**
 * Prints the node script NodeTrust would run, for review, GitOps or running by hand as root. Everything is
 * validated before a byte is printed: a bad flag or an input the renderer refuses is a usage error (exit 2).
 */
export async function render(argv: readonly string[], io: Io): Promise<number> {
  const p = parseArgs(argv, {
    values: ["--os", "--ca-bundle", "--action", "--serving-chain", "--probe-image"],
    repeatable: ["--runtime", "--registry"],
  });
  if (p.positional.length > 0) throw new UsageError(`unexpected argument "${p.positional[0]}"`);
  const os = oneOf<OsFamily>("--os", required(p, "--os"), OS_FAMILIES);
  const runtimes = (p.flags.get("--runtime") ?? []).map((r) => oneOf<Runtime>("--runtime", r, RUNTIMES));
  if (runtimes.length === 0) throw new UsageError("--runtime is required (repeat it for several runtimes)");
  const registries: RegistryEndpoint[] = (p.flags.get("--registry") ?? []).map((r) => ({ ...hostFlag("--registry", r), mirrorOf: [] }));
  if (registries.length === 0) throw new UsageError("--registry is required (repeat it for several registries)");
  const action = oneOf<NodeAction>("--action", one(p, "--action") ?? "install", ACTIONS);
  const bundlePem = readInput("--ca-bundle", required(p, "--ca-bundle"));
  const chainFile = one(p, "--serving-chain");
  const servingChainPem = chainFile === undefined ? undefined : readInput("--serving-chain", chainFile);

  let script: string;
  try {
    script = renderNodeScript({ os, runtimes, registries, bundlePem, action, servingChainPem, probeImage: one(p, "--probe-image") });
  } catch (e) {
    // The renderer refuses bad input before producing any text, with every reason listed.
    throw new UsageError((e as Error).message);
  }
  io.out(script);
  return 0;
}
