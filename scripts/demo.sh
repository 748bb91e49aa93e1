#!/usr/bin/env bash
# The main job until the real Pulumi engine lands (issue 6 turns it into `pulumi up --stack lab`): start the
# local lab of real parts, then do with registry-trust what operators did by hand with openssl during the
# second incident: see what the registry serves, save it, and get a verdict for a node's bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/tsx ] || npm install --no-audit --no-fund
sh scripts/install-lab-deps.sh
dir="$(mktemp -d)/lab"
trap 'node_modules/.bin/tsx lab/cli.ts stop --dir "$dir" >/dev/null 2>&1 || true' EXIT
node_modules/.bin/tsx lab/cli.ts start --nodes 1 --dir "$dir"
port=$(node -p "require('$dir/lab.json').registry.port")
ca=$(node -p "require('$dir/lab.json').registry.caPath")
rt() { node bin/registry-trust.cjs "$@"; }

echo; echo "== 1. What does the registry serve? (no bundle given: trust is not evaluated)"
rt inspect "https://127.0.0.1:$port" --save-chain "$dir/served.pem"

echo; echo "== 2. Would a node whose bundle holds the lab CA trust it as registry.test:$port?"
rt check --ca-bundle "$ca" --cert "$dir/served.pem" --host "registry.test:$port"

echo; echo "== 3. And a node with the wrong bundle (what the incident looked like)?"
if rt check --ca-bundle stacks/certs/prod-enterprise-ca.pem --cert "$dir/served.pem" --host "registry.test:$port"; then
  echo "unexpected: the wrong bundle was accepted" >&2
  exit 1
fi
echo; echo "demo: done (exit 1 above is the expected verdict for the wrong bundle)"
