import { stackFacts } from "../../core/policy/stack-facts";

describe("stackFacts: production is decided from the stack config and fails closed", () => {
  test("no config from the engine: held to the production rules, endpoints unknown", () => {
    const f = stackFacts(undefined);
    expect(f.production).toBe(true);
    expect(f.productionReason).toMatch(/did not pass this stack's configuration/);
    expect(f.registries).toBeUndefined();
    expect(f.registriesProblem).toMatch(/did not pass/);
  });

  test.each([
    [{}, false, /is not set/],
    [{ "registry-trust:production": "false" }, false, /is false/],
    [{ "registry-trust:production": "true" }, true, /is true/],
    [{ "registry-trust:production": "yes" }, true, /"yes", which is not false/],
    [{ "other-project:production": "true" }, false, /is not set/],
  ])("%j → production %s", (config, production, reason) => {
    const f = stackFacts(config);
    expect(f.production).toBe(production);
    expect(f.productionReason).toMatch(reason);
  });

  test("registries as the engine passes them (JSON text), port defaulting to 443 as the program does", () => {
    const f = stackFacts({ "registry-trust:registries": JSON.stringify([{ host: "Registry.Test.", port: 5000 }, { host: "10.0.0.5", mirrorOf: ["docker.io"] }]) });
    expect(f.registries).toEqual([{ host: "registry.test", port: 5000 }, { host: "10.0.0.5", port: 443 }]);
    expect(stackFacts({}).registries).toEqual([]);
  });

  test.each([
    ["not JSON", "registry.test", /not a JSON list/],
    ["not a list", '{"host":"registry.test"}', /is not a list/],
    ["a bad host", '[{"host":"http://registry.test"}]', /registries\[0\] is not a valid/],
    ["a bad port", '[{"host":"registry.test","port":0}]', /registries\[0\] is not a valid/],
  ])("registries that are %s leave the endpoints unknown, saying why", (_what, text, problem) => {
    const f = stackFacts({ "registry-trust:registries": text });
    expect(f.registries).toBeUndefined();
    expect(f.registriesProblem).toMatch(problem);
  });

  test("CA mode and retention: schema defaults when unset, NaN for a non-integer", () => {
    expect(stackFacts({})).toMatchObject({ caMode: "generate", caRetainGenerations: 1 });
    expect(stackFacts({ "registry-trust:caMode": "import", "registry-trust:caRetainGenerations": "0" })).toMatchObject({ caMode: "import", caRetainGenerations: 0 });
    expect(stackFacts({ "registry-trust:caRetainGenerations": "one" }).caRetainGenerations).toBeNaN();
  });
});
