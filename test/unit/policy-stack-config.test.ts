import * as grpc from "@grpc/grpc-js";
import { AnalyzerClient, AnalyzerService } from "@pulumi/pulumi/proto/analyzer_grpc_pb";
import { AnalyzerStackConfigureRequest, AnalyzerStackConfigureResponse } from "@pulumi/pulumi/proto/analyzer_pb";
import { captureStackConfig, currentStackFacts } from "../../policy/stack-config";

/*
 * How the policy pack learns the stack config: from the Analyzer ConfigureStack call, over real gRPC, the
 * way the engine sends it; from PULUMI_CONFIG on the engine's legacy launcher path; and failing closed
 * without either.
 */

const saved = process.env.PULUMI_CONFIG;
afterAll(() => {
  if (saved === undefined) delete process.env.PULUMI_CONFIG;
  else process.env.PULUMI_CONFIG = saved;
});

test("no config from the engine at all: the production rules apply", () => {
  delete process.env.PULUMI_CONFIG;
  expect(currentStackFacts()).toMatchObject({ production: true, productionReason: expect.stringMatching(/did not pass this stack's configuration/) });
});

test("PULUMI_CONFIG (legacy launcher path)", () => {
  process.env.PULUMI_CONFIG = JSON.stringify({ "registry-trust:production": "false", "registry-trust:registries": '[{"host":"registry.test"}]' });
  expect(currentStackFacts()).toMatchObject({ production: false, registries: [{ host: "registry.test", port: 443 }] });
});

test("ConfigureStack over gRPC wins, and the pack's own handler still gets the call", async () => {
  captureStackConfig();
  const seenByPack: string[] = [];
  const server = new grpc.Server();
  server.addService(AnalyzerService, {
    configureStack: (call: grpc.ServerUnaryCall<AnalyzerStackConfigureRequest, AnalyzerStackConfigureResponse>, cb: grpc.sendUnaryData<AnalyzerStackConfigureResponse>) => {
      seenByPack.push(call.request.getStack());
      cb(null, new AnalyzerStackConfigureResponse());
    },
  } as unknown as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const client = new AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const req = new AnalyzerStackConfigureRequest();
    req.setStack("prod");
    req.getConfigMap().set("registry-trust:production", "true").set("registry-trust:caRetainGenerations", "0");
    await new Promise<void>((resolve, reject) => client.configureStack(req, (e) => (e ? reject(e) : resolve())));
  } finally {
    client.close();
    server.forceShutdown();
  }
  expect(seenByPack).toEqual(["prod"]);
  expect(currentStackFacts()).toMatchObject({ production: true, productionReason: "registry-trust:production is true", caRetainGenerations: 0, registries: [] });
});
