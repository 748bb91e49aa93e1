import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import * as ts from "typescript";

/*
 * The rule of the floors (design.md §7), read off the import graph: every import, export-from, import type,
 * dynamic import() and require() of every source file, resolved to the top-level folder it lands in.
 */

const REPO = join(__dirname, "..", "..");

/** The floors a folder must not import from ("@pulumi" stands for any @pulumi/* package). */
const FORBIDDEN: Record<string, readonly string[]> = {
  core: ["@pulumi", "components", "cli", "policy", "lab", "bench", "test", "examples", "scripts", "index.ts"],
  components: ["cli", "policy", "lab", "bench", "test", "examples", "scripts", "index.ts"],
  cli: ["lab", "bench", "test", "examples", "index.ts"],
  policy: ["lab", "bench", "test", "examples", "index.ts"],
  lab: ["bench", "test", "examples"],
  bench: ["test", "examples"],
  scripts: ["test", "examples"],
  "index.ts": ["cli", "lab", "bench", "test", "examples"],
  // A consumer program takes the package from its tarball, never from the checkout.
  examples: ["core", "components", "cli", "policy", "lab", "bench", "test", "scripts", "index.ts"],
};

interface Edge { readonly file: string; readonly specifier: string; readonly floor: string }

/** The floor a specifier of `file` lands in, or undefined for a package outside the project other than @pulumi. */
function floorOf(file: string, specifier: string): string | undefined {
  if (specifier.startsWith("@pulumi/")) return "@pulumi";
  if (!specifier.startsWith(".")) return undefined;
  return relative(REPO, resolve(dirname(file), specifier)).split("/")[0];
}

function importsOf(file: string, source: string): Edge[] {
  return ts.preProcessFile(source, true, true).importedFiles.flatMap((i) => {
    const floor = floorOf(file, i.fileName);
    return floor === undefined ? [] : [{ file: relative(REPO, file), specifier: i.fileName, floor }];
  });
}

function sources(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true }).flatMap((e) => {
    if (e.name === "node_modules" || e.name === "dist" || e.name.startsWith(".")) return [];
    const p = join(path, e.name);
    if (e.isDirectory()) return sources(p);
    return /\.(ts|mts|cts|js|cjs|mjs)$/.test(e.name) ? [p] : [];
  });
}

function violations(edges: readonly Edge[]): string[] {
  return edges
    .filter((e) => {
      const from = e.file.split("/")[0];
      return e.floor !== from && (FORBIDDEN[from] ?? []).includes(e.floor);
    })
    .map((e) => `${e.file} imports ${e.specifier} (${e.file.split("/")[0]}/ must not import ${e.floor})`);
}

describe("the rule of the floors", () => {
  it("sees every form of import a file can use", () => {
    const file = join(REPO, "lab", "x.ts");
    const src = [
      `import { a } from "../test/support/a";`,
      `import type { B } from "../test/support/b";`,
      `export { c } from "../test/support/c";`,
      `const d = require("../test/support/d");`,
      `async function e() { return import("../test/support/e"); }`,
      `import { f } from "./f";`,
      `import * as yaml from "yaml";`,
    ].join("\n");
    expect(violations(importsOf(file, src)).map((v) => v.split(" ")[2])).toEqual(
      ["a", "b", "c", "d", "e"].map((n) => `../test/support/${n}`),
    );
    expect(violations(importsOf(join(REPO, "core", "x.ts"), `import * as pulumi from "@pulumi/pulumi";`))).toHaveLength(1);
  });

  it("holds for every source file of the checkout", () => {
    const files = Object.keys(FORBIDDEN).flatMap((d) => sources(join(REPO, d)));
    expect(files.length).toBeGreaterThan(100);
    const edges = files.flatMap((f) => importsOf(f, readFileSync(f, "utf8")));
    expect(violations(edges)).toEqual([]);
  });
});
