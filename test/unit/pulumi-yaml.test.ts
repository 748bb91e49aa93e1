import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { CONFIG_KEYS } from "../../core/config/schema";
import { REPO } from "../support/stack-files";

interface Declared { type?: string; items?: { type: string }; description?: string; default?: unknown; secret?: boolean }
const project = parse(readFileSync(join(REPO, "Pulumi.yaml"), "utf8")) as {
  name: string; runtime: { name: string }; stackConfigDir: string; config: Record<string, Declared>;
};

describe("Pulumi.yaml", () => {
  test("is a nodejs project with its stacks in stacks/", () => {
    expect(project).toMatchObject({ name: "registry-trust", runtime: { name: "nodejs" }, stackConfigDir: "stacks" });
  });

  test("declares exactly the keys the config model reads", () => {
    expect(Object.keys(project.config).sort()).toEqual(Object.keys(CONFIG_KEYS).sort());
  });

  test.each(Object.entries(CONFIG_KEYS))("%s: type, description and default match the model", (key, def) => {
    const d = project.config[key];
    const expectedType = def.type === "structured" ? undefined : def.type === "array<string>" ? "array" : def.type;
    expect(d.type).toBe(expectedType);
    if (def.type === "array<string>") expect(d.items).toEqual({ type: "string" });
    expect(d.description).toBe(def.description);
    expect(d.default).toEqual(def.default);
    // Pulumi refuses `secret: true` on a key with a plaintext default; secrecy of these optional keys is
    // enforced by the config validation instead, and the description tells how to set them.
    if ("secret" in def && def.secret) expect(d.description).toContain("--secret");
    expect(d.secret).toBeUndefined();
  });
});
