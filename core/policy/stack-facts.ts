import { CONFIG_KEYS, PROJECT } from "../config/schema";
import { Endpoint, hostProblem, portProblem } from "../endpoint";

/*
 * What the policies need to know about the stack, from its configuration as the engine hands it to a policy
 * pack (full keys such as "registry-trust:production", values as strings, JSON for structured ones, project
 * defaults NOT merged in). Production is decided here and fails closed: a stack whose configuration did not
 * reach the policy pack, or whose production flag is not plainly false, is held to the production rules.
 */

export interface StackFacts {
  readonly production: boolean;
  /** Why the stack is (or is not) treated as production, for messages. */
  readonly productionReason: string;
  /** Registry endpoints from `registry-trust:registries`; undefined when they cannot be known. */
  readonly registries?: readonly Endpoint[];
  /** Why `registries` is undefined. */
  readonly registriesProblem?: string;
  readonly caMode: string;
  /** `registry-trust:caRetainGenerations`, or the schema default when unset; NaN when not an integer. */
  readonly caRetainGenerations: number;
  /** `registry-trust:allowUnpinnedHostKeys` is plainly true (a lab's opt-out); false when unknown (fails closed). */
  readonly allowUnpinnedHostKeys: boolean;
}

const key = (k: keyof typeof CONFIG_KEYS) => `${PROJECT}:${k}`;

function registries(text: string | undefined): { registries?: Endpoint[]; problem?: string } {
  if (text === undefined) return { registries: [] };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { problem: `${key("registries")} is not a JSON list` };
  }
  if (!Array.isArray(v)) return { problem: `${key("registries")} is not a list` };
  const out: Endpoint[] = [];
  for (const [i, e] of v.entries()) {
    const host = typeof e === "object" && e !== null ? (e as Record<string, unknown>).host : undefined;
    const port = typeof e === "object" && e !== null ? ((e as Record<string, unknown>).port ?? 443) : undefined;
    if (typeof host !== "string" || hostProblem(host) || portProblem(port)) {
      return { problem: `${key("registries")}[${i}] is not a valid {host, port} endpoint` };
    }
    out.push({ host: host.toLowerCase().replace(/\.$/, ""), port: port as number });
  }
  return { registries: out };
}

/** `config` undefined means the engine never sent the stack's configuration. */
export function stackFacts(config: Readonly<Record<string, string>> | undefined): StackFacts {
  if (config === undefined) {
    return {
      production: true,
      productionReason: "the engine did not pass this stack's configuration to the policy pack, so it is held to the production rules",
      registriesProblem: "the engine did not pass this stack's configuration to the policy pack",
      caMode: String(CONFIG_KEYS.caMode.default),
      caRetainGenerations: Number(CONFIG_KEYS.caRetainGenerations.default),
      allowUnpinnedHostKeys: false,
    };
  }
  const flag = config[key("production")];
  const production = flag === undefined ? false : flag.trim() !== "false";
  const productionReason =
    flag === undefined ? `${key("production")} is not set`
    : flag.trim() === "true" ? `${key("production")} is true`
    : flag.trim() === "false" ? `${key("production")} is false`
    : `${key("production")} is ${JSON.stringify(flag)}, which is not false, so the stack is held to the production rules`;
  const regs = registries(config[key("registries")]);
  const retain = config[key("caRetainGenerations")];
  return {
    production,
    productionReason,
    registries: regs.registries,
    registriesProblem: regs.problem,
    caMode: config[key("caMode")] ?? String(CONFIG_KEYS.caMode.default),
    caRetainGenerations: retain === undefined ? Number(CONFIG_KEYS.caRetainGenerations.default) : /^\s*-?\d+\s*$/.test(retain) ? Number(retain) : NaN,
    allowUnpinnedHostKeys: config[key("allowUnpinnedHostKeys")]?.trim() === "true",
  };
}
