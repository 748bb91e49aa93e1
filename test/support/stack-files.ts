import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { CONFIG_KEYS } from "../../core/config/schema";
import { RawConfig } from "../../core/config/validate";

export const REPO = join(__dirname, "..", "..");

/** Raw config as the Pulumi engine hands it to the program: project defaults merged, scalars as text, structures as JSON. */
export function rawFrom(values: Record<string, unknown>, secretKeys: readonly string[] = []): RawConfig {
  const raw: Record<string, { value: string; secret: boolean }> = {};
  const all = { ...Object.fromEntries(Object.entries(CONFIG_KEYS).map(([k, d]) => [k, d.default])), ...values };
  for (const [k, v] of Object.entries(all)) {
    raw[k] = { value: typeof v === "object" ? JSON.stringify(v) : String(v), secret: secretKeys.includes(k) };
  }
  return raw;
}

/** A committed stack file's `registry-trust:*` values. */
export function stackValues(stack: string): Record<string, unknown> {
  const doc = parse(readFileSync(join(REPO, "stacks", `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> };
  return Object.fromEntries(Object.entries(doc.config).map(([k, v]) => [k.replace(/^registry-trust:/, ""), v]));
}
