import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PROBLEM_CODES } from "../../core/x509/problems";
import { REPO } from "../support/stack-files";
import { configReference, readmeSection } from "../../scripts/config-reference";

const readme = readFileSync(join(REPO, "README.md"), "utf8");
const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { scripts: Record<string, string>; bin: Record<string, string> };

describe("README stays true", () => {
  test("documents every problem code", () => {
    expect(PROBLEM_CODES.filter((c) => !readme.includes(`\`${c}\``))).toEqual([]);
  });
  test("its two commands are the package's scripts, and CI runs the test command", () => {
    expect(readme).toContain("`npm install && npm run demo`");
    expect(readme).toContain("`npm install && npm test`");
    expect(pkg.scripts.demo).toBe("bash scripts/demo.sh");
    expect(readFileSync(join(REPO, ".ci", "run"), "utf8")).toMatch(/^npm install --no-audit --no-fund\nnpm test /m);
    expect(pkg.bin["registry-trust"]).toBe("bin/registry-trust.cjs");
  });
  test("its configuration reference is Pulumi.yaml's schema, key for key (regenerate: npm run docs:config)", () => {
    const expected = configReference(readFileSync(join(REPO, "Pulumi.yaml"), "utf8"));
    expect(readmeSection(readme)).toBe(expected);
  });
});
