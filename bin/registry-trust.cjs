#!/usr/bin/env node
// The `registry-trust` command. In the installed package it runs the compiled CLI (dist/cli/main.js). In a
// checkout, where cli/main.ts exists, it always runs the TypeScript source through tsx (a devDependency),
// so a stale dist/ from an earlier `npm run build` can never stand in for the code being edited and tested.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const source = path.join(__dirname, "..", "cli", "main.ts");
let cli;
if (fs.existsSync(source)) {
  require("tsx/cjs/api").register();
  cli = require(source);
} else {
  cli = require("../dist/cli/main.js");
}
cli.main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
