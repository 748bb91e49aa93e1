/** One thing wrong with the stack configuration, phrased for the person who has to fix it. */
export interface ConfigIssue {
  /** Config key path, e.g. "registry-trust:nodes[2].port". */
  readonly path: string;
  /** The offending value as shown to the user ("[secret]" for secrets, "(unset)" when missing). */
  readonly value: string;
  readonly problem: string;
  readonly fix: string;
}

export class ConfigError extends Error {
  constructor(readonly issues: readonly ConfigIssue[]) {
    super(formatIssues(issues));
    this.name = "ConfigError";
  }
}

export function formatIssues(issues: readonly ConfigIssue[]): string {
  const lines = issues.map((i) => `  - ${i.path} = ${i.value}: ${i.problem}\n    fix: ${i.fix}`);
  const n = issues.length;
  return `Invalid stack configuration (${n} problem${n === 1 ? "" : "s"}); nothing was changed:\n${lines.join("\n")}`;
}

/** A value shown as given, never as the config text: used for secrets and summaries. */
export class Shown {
  constructor(readonly text: string) {}
}
export const SECRET = new Shown("[secret]");

/** A short, single-line rendering of a config value for messages. */
export function show(value: unknown): string {
  if (value instanceof Shown) return value.text;
  if (value === undefined) return "(unset)";
  const text = typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
