import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import * as ts from "typescript";

/*
 * The dynamic providers are serialized into the state with everything they reach in core/ and components/.
 * Pulumi's closure serializer resolves a free name that is also a global of the program's process to
 * that global instead of capturing the module's own binding: a module-level `const escape` in
 * core/topology/sequencer.ts became the legacy global escape() in the serialized TopologyTrust provider,
 * and its annotation patches failed on the real apiserver (test/k8s/topology-trust.test.ts saw it). So no
 * module-level name in those folders may shadow a global.
 */

const REPO = join(__dirname, "..", "..");

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith(".ts") && !path.endsWith(".d.ts") ? [path] : [];
  });
}

/** Names a module binds at its top level: declarations and import bindings. */
function topLevelNames(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, false);
  const names: string[] = [];
  const bind = (n: ts.BindingName) => {
    if (ts.isIdentifier(n)) names.push(n.text);
    else for (const e of n.elements) if (!ts.isOmittedExpression(e)) bind(e.name);
  };
  for (const s of sf.statements) {
    if (ts.isVariableStatement(s)) s.declarationList.declarations.forEach((d) => bind(d.name));
    else if ((ts.isFunctionDeclaration(s) || ts.isClassDeclaration(s) || ts.isEnumDeclaration(s)) && s.name) names.push(s.name.text);
    else if (ts.isImportDeclaration(s) && s.importClause && !s.importClause.isTypeOnly) {
      const c = s.importClause;
      if (c.name) names.push(c.name.text);
      const b = c.namedBindings;
      if (b && ts.isNamespaceImport(b)) names.push(b.name.text);
      if (b && ts.isNamedImports(b)) for (const e of b.elements) if (!e.isTypeOnly) names.push(e.name.text);
    }
  }
  return names;
}

test("no module-level name in core/ or components/ shadows a global of the Node.js process", () => {
  const globals = new Set(Object.getOwnPropertyNames(globalThis));
  // The one that bit us, and Node.js's own: the environment must have them for the check to mean anything.
  for (const name of ["escape", "fetch", "crypto", "performance", "structuredClone"]) expect(globals.has(name)).toBe(true);
  const files = [...sources(join(REPO, "core")), ...sources(join(REPO, "components"))];
  expect(files.length).toBeGreaterThan(50);
  const shadowing = files.flatMap((f) => topLevelNames(f).filter((n) => globals.has(n)).map((n) => `${relative(REPO, f)}: ${n}`));
  expect(shadowing).toEqual([]);
});

test("the check finds the names a module binds: declarations, destructuring and imports, not type-only ones", () => {
  const dir = mkdtempSync(join(tmpdir(), "provider-globals-"));
  try {
    const file = join(dir, "m.ts");
    writeFileSync(file, [
      'import * as crypto from "node:crypto";',
      'import { fetch as get, type Agent } from "undici";',
      'import type { Server } from "node:net";',
      "const escape = (s: string) => s;",
      "export const { performance, a: [b] } = x;",
      "function inner() { const navigator = 1; return navigator; }",
      "",
    ].join("\n"));
    expect(topLevelNames(file)).toEqual(["crypto", "get", "escape", "performance", "b", "inner"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
