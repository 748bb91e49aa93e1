import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../core/config/issues";
import { StackConfig } from "../core/config/model";
import { PROJECT } from "../core/config/schema";
import { RawConfig, parseStackConfig } from "../core/config/validate";

// Public SDK API cannot tell whether a key was stored encrypted; the runtime helper the SDK itself uses can.
const runtimeIsSecret = (pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean }).isConfigSecret;

/** This stack's `registry-trust:*` config as the engine passed it (project defaults already merged in). */
export function rawStackConfig(): RawConfig {
  const raw: Record<string, { value: string; secret: boolean }> = {};
  for (const [key, value] of Object.entries(pulumi.runtime.allConfig())) {
    if (!key.startsWith(`${PROJECT}:`)) continue;
    raw[key.slice(PROJECT.length + 1)] = { value, secret: runtimeIsSecret ? runtimeIsSecret(key) : true };
  }
  return raw;
}

/**
 * Validates the stack config, failing the program before any resource is registered. A RunError makes
 * Pulumi print the message alone, without a stack trace.
 */
export function loadStackConfig(baseDir = process.cwd()): StackConfig {
  try {
    return parseStackConfig(rawStackConfig(), { baseDir });
  } catch (e) {
    if (e instanceof ConfigError) throw new pulumi.RunError(e.message);
    throw e;
  }
}

/** A secret config value as a Pulumi secret, or undefined when unset. */
export function secretConfig(key: "sshPrivateKey" | "servingKey"): pulumi.Output<string> | undefined {
  const value = new pulumi.Config(PROJECT).get(key);
  return value ? pulumi.secret(value) : undefined;
}
