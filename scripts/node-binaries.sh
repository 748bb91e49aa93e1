#!/usr/bin/env bash
# Builds the node-side binaries the lab runs that Debian does not ship, from Go modules, into a cache
# outside the repo:
#   ${REGISTRY_TRUST_CACHE:-~/.cache/registry-trust}/node/<key>/bin/{containerd,ctr,crictl}
#   .../node/<key>/VERSIONS      what was built, from which module versions, with which Go
# <key> is the containerd version plus a hash of every pin in node-binaries.env.
#   containerd, ctr  github.com/containerd/containerd/v2 (cmd/containerd, cmd/ctr)
#   crictl           sigs.k8s.io/cri-tools (cmd/crictl)
# Each is built inside its own module (from the module cache), so its own go.mod and go.sum decide every
# dependency version, as in an upstream release build. CGO is off, as upstream's static builds and
# cri-tools' Makefile have it: containerd then leaves out only the btrfs snapshotter (its plugin needs
# cgo; cmd/containerd/builtins/btrfs_linux.go) — the lab uses the native snapshotter. No shim is built:
# lab nodes pull images but run no containers. runc is Debian's (scripts/install-lab-deps.sh).
# Built once; later runs reuse what is there. The Go build and module caches are the shared ones.
#
# --print-bin: print the bin directory for these pins (whether built or not) and exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env_file="$here/node-binaries.env"
pin() { local v; v="$(sed -n "s/^$1=//p" "$env_file")"; echo "${!1:-$v}"; }
CONTAINERD_VERSION="$(pin CONTAINERD_VERSION)"
CRICTL_VERSION="$(pin CRICTL_VERSION)"
BUILD_REVISION="$(pin BUILD_REVISION)"
CACHE="${REGISTRY_TRUST_CACHE:-$HOME/.cache/registry-trust}"
key="containerd-$CONTAINERD_VERSION-$(printf '%s' "$CONTAINERD_VERSION $CRICTL_VERSION $BUILD_REVISION" | sha256sum | cut -c1-10)"
root="$CACHE/node/$key"
bin="$root/bin"

if [[ "${1:-}" == --print-bin ]]; then echo "$bin"; exit 0; fi
if [[ $# -gt 0 ]]; then echo "usage: node-binaries.sh [--print-bin]" >&2; exit 2; fi

start=$(date +%s)
log() { echo "node-binaries: $*"; }
elapsed() { echo "$(( $(date +%s) - start ))s"; }

if [[ -x "$bin/containerd" && -x "$bin/ctr" && -x "$bin/crictl" && -f "$root/VERSIONS" ]]; then
  log "reusing $root ($(tr '\n' ' ' <"$root/VERSIONS"))"
  exit 0
fi

if ! command -v go >/dev/null; then
  echo "node-binaries: 'go' is not on PATH; it is needed to build containerd $CONTAINERD_VERSION and crictl $CRICTL_VERSION" >&2
  exit 1
fi

# A second run (another shell, CI on the same machine) waits here and then reuses the first one's build.
mkdir -p "$CACHE/node"
exec 9>"$CACHE/.node-binaries.lock"
flock 9
if [[ -x "$bin/containerd" && -x "$bin/ctr" && -x "$bin/crictl" && -f "$root/VERSIONS" ]]; then
  log "reusing $root, built meanwhile by another run"
  exit 0
fi

work="$(mktemp -d "$CACHE/node/.build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
export CGO_ENABLED=0

# module_dir MODULE@VERSION: downloads the module (if needed) and prints its directory in the module cache.
module_dir() {
  go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",\?$/\1/p'
}

cd_dir="$(module_dir "github.com/containerd/containerd/v2@$CONTAINERD_VERSION")"
crictl_dir="$(module_dir "sigs.k8s.io/cri-tools@$CRICTL_VERSION")"
[[ -d "$cd_dir" && -d "$crictl_dir" ]] || { echo "node-binaries: module download failed" >&2; exit 1; }

# The same ldflags and tags as containerd's Makefile (minus the git revision, which a module has not).
pkg=github.com/containerd/containerd/v2
cd_ldflags="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Revision=gomod-$CONTAINERD_VERSION -X $pkg/version.Package=$pkg"
log "building containerd $CONTAINERD_VERSION and ctr (cold: several minutes on 2 cores)"
(cd "$cd_dir" && nice -n 10 go build -mod=readonly -trimpath -tags urfave_cli_no_docs -ldflags "$cd_ldflags" \
  -o "$work/bin/" ./cmd/containerd ./cmd/ctr)
log "building crictl $CRICTL_VERSION after $(elapsed)"
(cd "$crictl_dir" && nice -n 10 go build -mod=readonly -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}" \
  -o "$work/bin/crictl" ./cmd/crictl)

printf 'containerd=%s\ncrictl=%s\ngo=%s\ncgo=0\nbuilt=%s\n' "$CONTAINERD_VERSION" "$CRICTL_VERSION" "$(go env GOVERSION)" \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$work/VERSIONS"
# Moved into place only when complete, so an interrupted build is never mistaken for a cached one.
rm -rf "$root"
mv "$work" "$root"
chmod 0755 "$root"
trap - EXIT
log "built $root ($(tr '\n' ' ' <"$root/VERSIONS")) in $(elapsed)"
