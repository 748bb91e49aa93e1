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

/** Strict flag parsing: unknown flags, missing values and repeated single-value flags are usage errors. */
export function parseArgs(argv: readonly string[], spec: FlagSpec): Parsed {
  const flags = new Map<string, string[]>();
  const booleans = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (spec.booleans?.includes(name)) {
      if (eq > 0) throw new UsageError(`${name} takes no value`);
      booleans.add(name);
    } else if (spec.values.includes(name) || spec.repeatable?.includes(name)) {
      const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined || (eq < 0 && value.startsWith("--"))) throw new UsageError(`${name} needs a value`);
      const seen = flags.get(name) ?? [];
      if (seen.length > 0 && !spec.repeatable?.includes(name)) throw new UsageError(`${name} given twice`);
      flags.set(name, [...seen, value]);
    } else {
      throw new UsageError(`unknown option ${name}`);
    }
  }
  return { flags, booleans, positional };
}

export function one(p: Parsed, name: string): string | undefined {
  return p.flags.get(name)?.[0];
}

export function required(p: Parsed, name: string): string {
  const v = one(p, name);
  if (v === undefined) throw new UsageError(`${name} is required`);
  return v;
}
