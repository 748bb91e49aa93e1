import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

/*
 * A dynamic provider as Pulumi runs it: serialized with pulumi.runtime.serializeFunction by a fixture
 * program (under ts-node, as `pulumi up` loads programs, or tsx), then loaded back with require-from-string
 * in a plain node process, as Pulumi's dynamic-provider host does, one process per method call.
 */

const run = promisify(execFile);
const repoRoot = path.resolve(__dirname, "..", "..");
const childEnv = { PATH: process.env.PATH, HOME: process.env.HOME };

export type ProviderMethod = "diff" | "read" | "create" | "update" | "delete";

/** The Cluster API trust providers the fixture (fixtures/serialize-trust-provider.ts) serializes. */
export type TrustProviderName = "control-plane-trust" | "worker-trust" | "topology-trust";
const fixture = path.join(__dirname, "fixtures", "serialize-trust-provider.ts");

/** The provider text the fixture prints, serialized under ts-node or tsx. */
export async function serializeProvider(name: TrustProviderName, loader: "ts-node" | "tsx"): Promise<string> {
  const args = loader === "ts-node" ? ["-r", "ts-node/register/transpile-only", fixture] : ["--import", "tsx", fixture];
  const { stdout } = await run(process.execPath, [...args, name], { cwd: repoRoot, env: childEnv, maxBuffer: 16 << 20 });
  return stdout;
}

export interface SerializedProvider {
  readonly text: string;
  /** Calls one method in a fresh node process; resolves with its JSON result, rejects with its error message. */
  call(method: ProviderMethod, ...args: unknown[]): Promise<any>;
  cleanup(): void;
}

export async function loadSerializedProvider(name: TrustProviderName): Promise<SerializedProvider> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "registry-trust-provider-"));
  const providerFile = path.join(dir, "provider.js");
  const text = await serializeProvider(name, "ts-node");
  fs.writeFileSync(providerFile, text);
  const host = `
    const fs = require("fs");
    const provider = require("require-from-string")(fs.readFileSync(process.argv[1], "utf8")).handler();
    const args = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
    provider[process.argv[3]](...args).then((r) => console.log(JSON.stringify(r ?? null)), (e) => { console.error(e.message); process.exit(1); });`;
  return {
    text,
    async call(method, ...args) {
      // Arguments (a kubeconfig among them) go through a private file, not the command line.
      const request = path.join(dir, `${method}-${Date.now()}.json`);
      fs.writeFileSync(request, JSON.stringify(args), { mode: 0o600 });
      const { stdout } = await run(process.execPath, ["-e", host, providerFile, request, method], { cwd: repoRoot, env: childEnv });
      return JSON.parse(stdout);
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
