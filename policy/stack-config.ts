import { createRequire } from "node:module";
import { StackFacts, stackFacts } from "../core/policy/stack-facts";

/*
 * The stack's configuration decides whether the production rules apply. The engine sends it to every
 * policy pack in the Analyzer ConfigureStack call, but @pulumi/policy 1.21 keeps only the stack tags from that
 * call and offers no way to read the rest. So before the PolicyPack starts its gRPC server, the server's
 * addService is wrapped to read the config from ConfigureStack and then hand the call on unchanged.
 * The engine's legacy launcher path (`pulumi-analyzer-policy`, used when no Node.js language host exists)
 * also puts the config into PULUMI_CONFIG; that is the fallback. Neither present = fails closed (StackFacts).
 */

interface ConfigureStackCall {
  readonly request: { getConfigMap(): { entries(): Iterable<[string, string]> } };
}
type Handler = (call: ConfigureStackCall, callback: unknown) => unknown;
type AddService = (service: unknown, implementation: Record<string, unknown>) => void;

let received: Record<string, string> | undefined;

/** Installs the ConfigureStack hook; call it before constructing the PolicyPack. */
export function captureStackConfig(): void {
  // The gRPC module @pulumi/policy itself loads, whichever copy that is.
  const grpc = createRequire(require.resolve("@pulumi/policy"))("@grpc/grpc-js") as { Server: { prototype: { addService: AddService } } };
  const proto = grpc.Server.prototype;
  const addService = proto.addService;
  proto.addService = function (this: unknown, service, implementation) {
    const configureStack = implementation.configureStack as Handler | undefined;
    if (typeof configureStack !== "function") return addService.call(this, service, implementation);
    proto.addService = addService;
    return addService.call(this, service, {
      ...implementation,
      configureStack: (call: ConfigureStackCall, callback: unknown) => {
        received = Object.fromEntries(call.request.getConfigMap().entries());
        return configureStack(call, callback);
      },
    });
  };
}

function environmentConfig(): Record<string, string> | undefined {
  const text = process.env.PULUMI_CONFIG;
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === "object" && v !== null ? (v as Record<string, string>) : undefined;
  } catch {
    return undefined;
  }
}

/** What the policies know about the stack being analyzed. */
export function currentStackFacts(): StackFacts {
  return stackFacts(received ?? environmentConfig());
}

/** The stack's facts when it is held to the production rules; otherwise marks the policy not applicable. */
export function productionFacts(args: { notApplicable(reason?: string): never }): StackFacts {
  const facts = currentStackFacts();
  if (!facts.production) args.notApplicable(`not a production stack (${facts.productionReason})`);
  return facts;
}

/** The sentence production-only violations end with. */
export const becauseProduction = (facts: StackFacts) => `Required in production stacks (${facts.productionReason}).`;
