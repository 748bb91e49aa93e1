/*
 * Runs a Pulumi program under mocks in its own process, the way the engine would run it: config set first,
 * the program module loaded, and a program failure (thrown error or unhandled rejection) reported as the
 * outcome instead of crashing the test runner. Prints one JSON line: registered resources and the error.
 *
 * Usage: tsx test/support/mock-program.ts PROGRAM   (env MOCK_CONFIG = JSON {config, secretKeys})
 */
import "./network-guard";
import * as pulumi from "@pulumi/pulumi";
import { resolve } from "node:path";
import { TlsMocks } from "../../lab/tls-mocks";

const mocks = new TlsMocks();
const { config = {}, secretKeys = [] } = JSON.parse(process.env.MOCK_CONFIG ?? "{}");
pulumi.runtime.setAllConfig(config, secretKeys);
pulumi.runtime.setMocks(mocks, "registry-trust", "mock", false);

const failures: string[] = [];
// RunError and ResourceError keep Error's name; Pulumi tells them apart by a marker property.
const kind = (e: Error): string => {
  const name = e.name;
  if (pulumi.RunError.isInstance(e)) return "RunError";
  return pulumi.ResourceError.isInstance(e) ? "ResourceError" : name;
};
const fail = (e: unknown) => failures.push(e instanceof Error ? `${kind(e)}: ${e.message}` : String(e));
process.on("unhandledRejection", fail);

let outputs: Record<string, unknown> = {};
// An async program (`export = async () => …`) runs as the engine runs it: called, then awaited.
void (async () => {
  try {
    const exported = require(resolve(process.argv[2]));
    outputs = (typeof exported === "function" ? await exported() : exported) ?? {};
  } catch (e) {
    fail(e);
  }
})();

// The outcome is printed when the program has finished: once the event loop has nothing left to run
// ('beforeExit'), every registration and apply that could still happen has happened. (Waiting for the
// SDK's RPC queue instead would hang on a registration that failed, and a fixed delay would miss late
// failures.)
process.once("beforeExit", () => {
  mocks.pki.cleanup();
  const resources = mocks.resources.map((r) => ({ type: r.type, name: r.name }));
  process.stdout.write(`${JSON.stringify({ resources, outputs: Object.keys(outputs), errors: [...new Set(failures)] })}\n`);
});
