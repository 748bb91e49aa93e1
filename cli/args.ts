import { parseArgs as parseArgv } from "node:util";

/** A command-line mistake: the CLI prints the message and the usage, and exits 2. */
export class UsageError extends Error {}

export interface FlagSpec {
  /** Flags that take a value, e.g. "--host". */
  readonly values: readonly string[];
  /** Flags that may be repeated (collected in order). */
  readonly repeatable?: readonly string[];
  /** Boolean flags, e.g. "--json". */
  readonly booleans?: readonly string[];
}

export interface Parsed {
  readonly flags: Map<string, string[]>;
  readonly booleans: Set<string>;
  readonly positional: string[];
}

type OptionSpec = { type: "string" | "boolean"; multiple: true };

/**
 * Strict flag parsing with node:util's parseArgs: unknown flags, missing values, values given to boolean
 * flags and repeated single-value flags are usage errors naming the flag. Every option is collected as
 * `multiple` so that a repetition can be refused (util.parseArgs would silently keep the last one).
 */
export function parseArgs(argv: readonly string[], spec: FlagSpec): Parsed {
  const options: Record<string, OptionSpec> = {};
  for (const f of [...spec.values, ...(spec.repeatable ?? [])]) options[bare(f)] = { type: "string", multiple: true };
  for (const f of spec.booleans ?? []) options[bare(f)] = { type: "boolean", multiple: true };
  let parsed: ReturnType<typeof parseArgv>;
  try {
    parsed = parseArgv({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(usageMessage(e as Error & { code?: string }));
  }
  const flags = new Map<string, string[]>();
  const booleans = new Set<string>();
  for (const [name, value] of Object.entries(parsed.values)) {
    const flag = `--${name}`;
    const all = value as (string | boolean)[];
    if (options[name].type === "boolean") {
      booleans.add(flag);
      continue;
    }
    if (all.length > 1 && !spec.repeatable?.includes(flag)) throw new UsageError(`${flag} given twice`);
    flags.set(flag, all as string[]);
  }
  return { flags, booleans, positional: parsed.positionals };
}

function bare(flag: string): string {
  return flag.replace(/^--/, "");
}

/** util.parseArgs's messages, reduced to the flag and what is wrong with it. */
function usageMessage(e: Error & { code?: string }): string {
  const flag = /'(-[^' ]+)/.exec(e.message)?.[1] ?? "";
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${flag}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return /does not take an argument/.test(e.message) ? `${flag} takes no value` : `${flag} needs a value`;
    default:
      return e.message;
  }
}

export function one(p: Parsed, name: string): string | undefined {
  return p.flags.get(name)?.[0];
}

export function required(p: Parsed, name: string): string {
  const v = one(p, name);
  if (v === undefined) throw new UsageError(`${name} is required`);
  return v;
}

/** True when argv asks for help: `--help` or `-h` anywhere before a `--` terminator. */
export function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === "--help" || a === "-h");
}
