#!/usr/bin/env node
// `npm run build`: the package's dist/ from scratch. tsc compiles components/, core/ and cli/ with their .d.ts
// (tsconfig.build.json); then every non-TypeScript file in those folders is copied next to its JavaScript,
// because the code reads them at run time from its own directory (core/node/lib.sh, read with
// readFileSync(join(__dirname, "lib.sh"))). Copying all of them, not a list, means a new asset cannot be
// forgotten in the package.
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const dist = path.join(root, "dist");
const SHIPPED = ["components", "core", "cli"];

fs.rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", path.join(root, "tsconfig.build.json")], { cwd: root, stdio: "inherit" });

const copied = [];
for (const top of SHIPPED) {
  for (const rel of fs.readdirSync(path.join(root, top), { recursive: true })) {
    const src = path.join(root, top, rel);
    if (!fs.statSync(src).isFile() || rel.endsWith(".ts")) continue;
    const dst = path.join(dist, top, rel);
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    fs.copyFileSync(src, dst);
    copied.push(path.join(top, rel));
  }
}
// On stderr: `npm pack --json` prints its JSON on stdout after this (prepack) script.
process.stderr.write(`build-package: dist/ compiled; assets copied: ${copied.join(", ") || "none"}\n`);
