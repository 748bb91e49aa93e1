import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { hostProblem, portProblem } from "../endpoint";
import { parseHostKey } from "../ssh/host-key";
import { ConfigIssue, show } from "./issues";
import { CONFIG_KEYS, ConfigKey, PROJECT } from "./schema";

/*
 * Reading raw stack config: typed getters that record an issue and return a usable fallback, so that one
 * run reports every problem, plus the field helpers the section parsers in validate.ts share.
 */

/** Raw stack config as Pulumi hands it to a program: strings (JSON for structured values), per key without namespace. */
export type RawConfig = Readonly<Record<string, { readonly value: string; readonly secret: boolean }>>;

export interface ParseOptions {
  /** Directory relative file paths are resolved against (the Pulumi project directory). */
  readonly baseDir: string;
  readonly now?: Date;
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

export function didYouMean(word: string, options: readonly string[]): string {
  const best = options.map((o) => [o, levenshtein(word, o)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= 3 ? ` Did you mean "${best[0]}"?` : "";
}

/** Collects issues while reading; every read returns a usable fallback so that all problems surface in one run. */
export class Reader {
  readonly issues: ConfigIssue[] = [];
  constructor(private readonly raw: RawConfig, private readonly opts: ParseOptions) {}

  issue(path: string, value: unknown, problem: string, fix: string): void {
    this.issues.push({ path: `${PROJECT}:${path}`, value: show(value), problem, fix });
  }

  private text(key: ConfigKey): string | undefined {
    return this.raw[key]?.value;
  }

  isSecret(key: ConfigKey): boolean {
    return this.raw[key]?.secret ?? false;
  }

  string(key: ConfigKey): string {
    const v = this.text(key);
    return v ?? (CONFIG_KEYS[key].default as string);
  }

  integer(key: ConfigKey, min: number, max: number): number {
    const v = this.text(key);
    const fallback = CONFIG_KEYS[key].default as number;
    if (v === undefined) return fallback;
    if (!/^-?\d+$/.test(v.trim()) || Number(v) < min || Number(v) > max) {
      this.issue(key, v, `must be an integer from ${min} to ${max}.`, `pulumi config set ${PROJECT}:${key} ${Math.min(Math.max(fallback, min), max)}`);
      return fallback;
    }
    return Number(v);
  }

  boolean(key: ConfigKey): boolean {
    const v = this.text(key);
    if (v === undefined) return CONFIG_KEYS[key].default as boolean;
    if (v !== "true" && v !== "false") {
      this.issue(key, v, "must be true or false.", `pulumi config set ${PROJECT}:${key} true   # or false`);
      return CONFIG_KEYS[key].default as boolean;
    }
    return v === "true";
  }

  oneOf<T extends string>(key: ConfigKey, options: readonly T[]): T {
    const v = this.string(key);
    if (!options.includes(v as T)) {
      this.issue(key, v, `must be one of ${options.join(", ")}.${didYouMean(v, options)}`, `pulumi config set ${PROJECT}:${key} ${options[0]}`);
      return CONFIG_KEYS[key].default as T;
    }
    return v as T;
  }

  json(key: ConfigKey): unknown {
    const v = this.text(key);
    if (v === undefined) return CONFIG_KEYS[key].default;
    try {
      return JSON.parse(v);
    } catch {
      this.issue(key, v, "is not a structured value (a YAML list or map in the stack file).", `Write ${key} as a YAML list in the stack file, see stacks/Pulumi.dev.yaml.`);
      return CONFIG_KEYS[key].default;
    }
  }

  file(key: string, path: string): string | undefined {
    const full = isAbsolute(path) ? path : resolve(this.opts.baseDir, path);
    if (!existsSync(full)) {
      this.issue(key, path, `file not found (looked at ${full}).`, "Fix the path; relative paths are resolved against the project directory (where Pulumi.yaml is).");
      return undefined;
    }
    return readFileSync(full, "utf8");
  }
}

export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function checkFields(r: Reader, path: string, obj: Obj, allowed: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) r.issue(`${path}.${k}`, obj[k], `unknown field.${didYouMean(k, allowed)}`, `Allowed fields: ${allowed.join(", ")}.`);
  }
}

export function list(r: Reader, key: ConfigKey): Obj[] {
  const v = r.json(key);
  if (!Array.isArray(v)) {
    r.issue(key, v, "must be a list.", `Write ${key} as a YAML list (entries starting with "-") in the stack file.`);
    return [];
  }
  return v.map((e, i) => {
    if (!isObj(e)) {
      r.issue(`${key}[${i}]`, e, "must be a map of fields.", `See the description of ${key} in Pulumi.yaml.`);
      return {};
    }
    return e;
  });
}

export function hostField(r: Reader, path: string, v: unknown, required = true): string | undefined {
  if (v === undefined && !required) return undefined;
  const p = typeof v !== "string" ? "must be a host name or IP address (a string)." : hostProblem(v) && `host ${hostProblem(v)}.`;
  if (p) {
    r.issue(path, v, p, `pulumi config set --path '${path}' registry.example.com`);
    return undefined;
  }
  return (v as string).toLowerCase();
}

export function portField(r: Reader, path: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  const p = portProblem(v);
  if (p) {
    r.issue(path, v, `${p}.`, `pulumi config set --path '${path}' ${fallback}`);
    return fallback;
  }
  return v as number;
}

/** A pinned SSH host key line: ed25519 or ECDSA (an RSA pin cannot work with the command plugin, see core/ssh/host-key.ts). */
export function hostKeyField(r: Reader, path: string, v: unknown, host: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const fix = `ssh-keyscan -t ed25519 ${host ?? "HOST"} | cut -d' ' -f2- (compare its fingerprint with the host's own \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` out of band), then pulumi config set --path '${PROJECT}:${path}' "ssh-ed25519 AAAA…"`;
  if (typeof v !== "string") {
    r.issue(path, v, "must be a public host key line such as \"ssh-ed25519 AAAAC3…\".", fix);
    return undefined;
  }
  try {
    parseHostKey(v);
  } catch (e) {
    r.issue(path, v, `${(e as Error).message}.`, fix);
    return undefined;
  }
  return v.trim();
}

export function stringField(r: Reader, path: string, v: unknown, pattern: RegExp, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || !pattern.test(v)) {
    r.issue(path, v, `must be ${what}.`, `Set ${path} to ${what}.`);
    return undefined;
  }
  return v;
}
