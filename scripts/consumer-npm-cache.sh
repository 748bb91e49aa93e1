#!/usr/bin/env bash
# test/e2e/consumer-example.test.ts installs examples/consumer from the packed tarball with
# `npm install --offline`, as a test must not reach the registry. npm resolves a project without a lock
# file from the registry's package documents (packuments), which the repository's own `npm install`
# never fetches (it installs from package-lock.json). This resolves the same dependency set once — the
# example's own dependencies plus the ones the tarball declares (package.json "dependencies") — into a
# throwaway lock file, so that npm's cache holds every packument and tarball the offline install needs.
# With a warm cache it answers from the cache (--prefer-offline) and needs no network.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
node -e '
  const fs = require("fs");
  const [root, out] = process.argv.slice(1);
  const pkg = JSON.parse(fs.readFileSync(`${root}/package.json`, "utf8"));
  const example = JSON.parse(fs.readFileSync(`${root}/examples/consumer/package.json`, "utf8"));
  const dependencies = { ...pkg.dependencies, ...example.dependencies };
  delete dependencies[pkg.name];
  fs.writeFileSync(`${out}/package.json`, JSON.stringify({ name: "consumer-npm-cache", private: true, dependencies, devDependencies: example.devDependencies }));
' "$root" "$tmp"
t0=$(date +%s)
(cd "$tmp" && npm install --package-lock-only --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
# The tarballs too: a lock-only install fetches documents, not packages.
(cd "$tmp" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
echo "consumer-npm-cache: the example's dependency set is in npm's cache ($(( $(date +%s) - t0 ))s)"
