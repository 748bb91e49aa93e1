// An offline Pulumi engine for e2e tests: the CLI and plugins built by scripts/pulumi-binaries.sh (or a
// normal Pulumi install on PATH), a file:// backend and PULUMI_HOME in a temp dir, a passphrase secrets
// provider, and no plugin downloads or update checks. Never builds anything itself.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LocalWorkspace, PulumiCommand, Stack } from "@pulumi/pulumi/automation";

const repoRoot = path.resolve(__dirname, "..", "..");
const binariesScript = path.join(repoRoot, "scripts", "pulumi-binaries.sh");

export interface Engine {
  /** Directory holding `pulumi` and what ships next to it (first on PATH for the engine). */
  binDir: string;
  /**
   * True for the engine built by scripts/pulumi-binaries.sh: PULUMI_HOME is a temp dir whose `plugins` is the
   * resource plugins the build installed (`pulumi plugin install --file`, off PATH), and plugin downloads
   * are off. False for a normal Pulumi install, which keeps its own PULUMI_HOME and plugin handling.
   */
  built: boolean;
  /** For LocalWorkspace's `pulumiCommand`. */
  command: PulumiCommand;
  /** Environment for the CLI and everything it starts (LocalWorkspace `envVars`). */
  env: Record<string, string>;
  /** PULUMI_HOME (temp). */
  home: string;
  /** Directory of the file:// backend (temp); stacks' state files live under `.pulumi/stacks/`. */
  backendDir: string;
  passphrase: string;
  cleanup(): void;
}

function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/**
 * Where the engine binaries are: PULUMI_BIN's directory or an installed `pulumi` on PATH first (users with
 * a normal install), else the cache directory scripts/pulumi-binaries.sh builds into for the pinned versions.
 */
export function engineBinDir(): string {
  const installed = process.env.PULUMI_BIN ?? which("pulumi");
  if (installed) return path.dirname(fs.realpathSync(installed));
  return execFileSync("bash", [binariesScript, "--print-bin"], { encoding: "utf8" }).trim();
}

/** True when the engine in use is the one scripts/pulumi-binaries.sh builds (not a normal install). */
export function usesBuiltEngine(): boolean {
  return !(process.env.PULUMI_BIN ?? which("pulumi"));
}

/** The `plugins` directory of the PULUMI_HOME into which scripts/pulumi-binaries.sh installed the resource plugins. */
export function enginePluginsDir(): string {
  return execFileSync("bash", [binariesScript, "--print-plugins"], { encoding: "utf8" }).trim();
}

/** Throws a message that says what to run when the CLI or one of `plugins` is missing. */
export function requireEngine(plugins: string[]): string {
  const binDir = engineBinDir();
  if (!usesBuiltEngine()) return binDir;
  const pluginsDir = enginePluginsDir();
  const installed = fs.existsSync(pluginsDir) ? fs.readdirSync(pluginsDir) : [];
  const missing = [
    ...(fs.existsSync(path.join(binDir, "pulumi")) ? [] : [path.join(binDir, "pulumi")]),
    ...plugins
      // pulumi-nodejs ships next to the CLI (bin/); the others are installed plugins.
      .filter((p) => !fs.existsSync(path.join(binDir, `pulumi-resource-${p}`)))
      .filter((p) => !installed.some((d) => d.startsWith(`resource-${p}-v`) && fs.existsSync(path.join(pluginsDir, d, `pulumi-resource-${p}`))))
      .map((p) => `resource plugin ${p} in ${pluginsDir}`),
  ];
  if (missing.length > 0) {
    throw new Error(
      `The Pulumi engine is not built: missing ${missing.join(", ")}.\n` +
        `Run \`npm run pulumi:binaries\` (scripts/pulumi-binaries.sh; cold build takes many minutes) and retry.`,
    );
  }
  return binDir;
}

export async function offlineEngine(plugins: string[]): Promise<Engine> {
  const binDir = requireEngine(plugins);
  const built = usesBuiltEngine();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rt-pulumi-"));
  const home = built ? path.join(tmp, "home") : (process.env.PULUMI_HOME ?? path.join(os.homedir(), ".pulumi"));
  const backendDir = path.join(tmp, "backend");
  fs.mkdirSync(home, { recursive: true });
  fs.mkdirSync(backendDir);
  // The installed plugins, shared read-mostly (the engine only drops a `.lastused` stamp beside each).
  if (built) fs.symlinkSync(enginePluginsDir(), path.join(home, "plugins"));
  const passphrase = "registry-trust-e2e";
  const env: Record<string, string> = {
    PATH: `${binDir}${path.delimiter}${process.env.PATH ?? ""}`,
    PULUMI_HOME: home,
    PULUMI_BACKEND_URL: `file://${backendDir}`,
    PULUMI_CONFIG_PASSPHRASE: passphrase,
    ...(built ? { PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true" } : {}),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_SKIP_CONFIRMATIONS: "true",
    PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
    PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
  };
  const command = await PulumiCommand.get({ root: path.dirname(binDir), skipVersionCheck: true });
  return {
    binDir,
    built,
    command,
    env,
    home,
    backendDir,
    passphrase,
    cleanup: () => fs.rmSync(tmp, { recursive: true, force: true }),
  };
}

/** Runs the engine's CLI with the offline environment (for commands the Automation API does not wrap). */
export function runPulumi(engine: Engine, args: string[], cwd?: string): string {
  return execFileSync(path.join(engine.binDir, "pulumi"), args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, ...engine.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** An Automation API stack of an inline program on this engine: its file:// backend, PULUMI_HOME and passphrase. */
export function inlineStack(engine: Engine, project: string, name: string, program: () => Promise<Record<string, unknown> | void>): Promise<Stack> {
  return LocalWorkspace.createOrSelectStack(
    { stackName: name, projectName: project, program },
    {
      pulumiCommand: engine.command,
      envVars: engine.env,
      pulumiHome: engine.home,
      projectSettings: { name: project, runtime: "nodejs", backend: { url: engine.env.PULUMI_BACKEND_URL } },
      secretsProvider: "passphrase",
    },
  );
}
