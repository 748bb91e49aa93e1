#!/usr/bin/env bash
# Builds actionlint (the GitHub Actions workflow checker; test/unit/rollout-ci-examples.test.ts runs it on
# examples/ci/github/) from Go modules into a cache outside the repo:
#   ${REGISTRY_TRUST_CACHE:-~/.cache/registry-trust}/actionlint/<version>/bin/actionlint
#   .../actionlint/<version>/VERSIONS   what was built, with which Go, and how long the build took
# `go install MODULE@VERSION` builds inside the module, so actionlint's own go.mod and go.sum decide every
# dependency version, as in its release build. CGO off, as upstream's release binaries. Built once; later
# runs reuse it. The Go build and module caches are the shared ones.
#
# --print-bin: print the bin directory for the pinned version (whether built or not) and exit.
set -euo pipefail

ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
CACHE="${REGISTRY_TRUST_CACHE:-$HOME/.cache/registry-trust}"
root="$CACHE/actionlint/$ACTIONLINT_VERSION"
bin="$root/bin"

if [[ "${1:-}" == --print-bin ]]; then echo "$bin"; exit 0; fi
if [[ $# -gt 0 ]]; then echo "usage: actionlint.sh [--print-bin]" >&2; exit 2; fi

log() { echo "actionlint: $*"; }
if [[ -x "$bin/actionlint" && -f "$root/VERSIONS" ]]; then
  log "reusing $root ($(tr '\n' ' ' <"$root/VERSIONS"))"
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "actionlint: 'go' is not on PATH; it is needed to build actionlint $ACTIONLINT_VERSION" >&2
  exit 1
fi

# A second run waits here and then reuses the first one's build.
mkdir -p "$CACHE/actionlint"
exec 9>"$CACHE/.actionlint.lock"
flock 9
if [[ -x "$bin/actionlint" && -f "$root/VERSIONS" ]]; then
  log "reusing $root, built meanwhile by another run"
  exit 0
fi

start=$(date +%s)
work="$(mktemp -d "$CACHE/actionlint/.build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "building github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION (cold: a few minutes on 2 cores)"
CGO_ENABLED=0 GOBIN="$work/bin" GOFLAGS=-mod=mod go install -trimpath \
  -ldflags "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" \
  "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
"$work/bin/actionlint" -version >/dev/null
took=$(( $(date +%s) - start ))
printf 'actionlint %s\n%s\nbuilt in %ss\n' "$ACTIONLINT_VERSION" "$(go version)" "$took" >"$work/VERSIONS"
rm -rf "$root"
mkdir -p "$(dirname "$root")"
mv "$work" "$root"
trap - EXIT
log "built $bin/actionlint in ${took}s"
