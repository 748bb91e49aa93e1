#!/usr/bin/env bash
# Builds the real Cluster API managers the lab runs, into a cache outside the repo:
#   $REGISTRY_TRUST_CACHE (default ~/.cache/registry-trust)/capi/<CAPI_VERSION>/bin/
#     capi-manager   sigs.k8s.io/cluster-api/core                       (core: Cluster, Machine, MachineSet, MachineDeployment …)
#     kcp-manager    sigs.k8s.io/cluster-api/controlplane/kubeadm       (KubeadmControlPlane)
#     cabpk-manager  sigs.k8s.io/cluster-api/bootstrap/kubeadm          (KubeadmConfig → bootstrap data Secret)
#     capd-manager   sigs.k8s.io/cluster-api/test/infrastructure/docker (CAPD; the lab uses its in-memory backend)
# No package ships them and only the Go module proxy is reachable, so they are built from Go modules once
# per version; later runs reuse them. The Go module and build caches are the ones kube-apiserver/etcd used
# (go env GOMODCACHE / GOCACHE), so a warm machine compiles only what Cluster API adds.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pinned_capi="$(sed -n 's/^CAPI_VERSION=//p' "$here/k8s-binaries.env")"
CAPI_VERSION="${CAPI_VERSION:-$pinned_capi}"
CACHE="${REGISTRY_TRUST_CACHE:-$HOME/.cache/registry-trust}"
bin_dir="$CACHE/capi/$CAPI_VERSION/bin"
managers=(capi-manager kcp-manager cabpk-manager capd-manager)

start=$(date +%s)
log() { echo "capi-binaries: $*"; }
elapsed() { echo "$(( $(date +%s) - start ))s"; }

if ! command -v go >/dev/null; then
  echo "capi-binaries: 'go' is not on PATH; it is needed to build the Cluster API managers" >&2
  exit 1
fi

mkdir -p "$CACHE/capi"
exec 9>"$CACHE/.capi-binaries.lock"
flock 9

complete() {
  local m
  [[ -f "$bin_dir/VERSIONS" ]] || return 1
  for m in "${managers[@]}"; do [[ -x "$bin_dir/$m" ]] || return 1; done
}

# Global, so that the EXIT trap still sees it when a failing command ends the script inside build_managers.
work=""
build_managers() {
  work="$(mktemp -d "$CACHE/capi/.build-$CAPI_VERSION-XXXXXX")"
  trap 'rm -rf "$work"' EXIT

  local info gomod goversion
  info="$(go list -m -json "sigs.k8s.io/cluster-api@$CAPI_VERSION")"
  gomod="$(sed -n 's/^\t"GoMod": "\(.*\)",\?$/\1/p' <<<"$info")"
  goversion="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod" | head -n1)"
  # The test module (CAPD) says `replace sigs.k8s.io/cluster-api => ../`, which Go ignores outside that
  # repo, and then asks for a zero pseudo-version of the root module; requiring all three modules at the
  # same tag here makes the graph resolve to the release.
  cat >"$work/go.mod" <<EOF
module registry-trust.local/capi-binaries

go $goversion

require (
	sigs.k8s.io/cluster-api $CAPI_VERSION
	sigs.k8s.io/cluster-api/api $CAPI_VERSION
	sigs.k8s.io/cluster-api/test $CAPI_VERSION
)
EOF
  # Never compiled; makes `go mod tidy` resolve the four managers' full dependency graphs.
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "sigs.k8s.io/cluster-api/bootstrap/kubeadm"
	_ "sigs.k8s.io/cluster-api/controlplane/kubeadm"
	_ "sigs.k8s.io/cluster-api/core"
	_ "sigs.k8s.io/cluster-api/test/infrastructure/docker"
)
GO
  log "resolving modules for Cluster API $CAPI_VERSION (go $goversion)"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy)

  local date minor ldflags pkg name t0
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  minor="$(cut -d. -f2 <<<"${CAPI_VERSION#v}")"
  # What the managers log at start-up and report in their version; upstream sets the same variables.
  ldflags="-s -w"
  for kv in "gitVersion=$CAPI_VERSION" gitMajor=1 "gitMinor=$minor" gitTreeState=clean "buildDate=$date"; do
    ldflags+=" -X sigs.k8s.io/cluster-api/version.$kv"
  done
  mkdir -p "$work/out"
  for pair in \
    capi-manager=sigs.k8s.io/cluster-api/core \
    kcp-manager=sigs.k8s.io/cluster-api/controlplane/kubeadm \
    cabpk-manager=sigs.k8s.io/cluster-api/bootstrap/kubeadm \
    capd-manager=sigs.k8s.io/cluster-api/test/infrastructure/docker; do
    name="${pair%%=*}"; pkg="${pair#*=}"
    t0=$(date +%s)
    log "building $name ($pkg) after $(elapsed)"
    (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 nice -n 10 go build -pgo=off -trimpath -ldflags "$ldflags" \
      -o "$work/out/$name" "$pkg")
    log "built $name in $(( $(date +%s) - t0 ))s"
  done
  printf 'cluster-api=%s\ngo=%s\nbuilt=%s\n' "$CAPI_VERSION" "$(go env GOVERSION)" "$date" >"$work/out/VERSIONS"
  # Moved into place only when complete, so an interrupted build is never mistaken for a cached one.
  # (The version directory also holds the CRDs scripts/k8s-binaries.sh fetches; only bin/ is replaced.)
  mkdir -p "$(dirname "$bin_dir")"
  rm -rf "$bin_dir"
  mv "$work/out" "$bin_dir"
  rm -rf "$work"
  trap - EXIT
}

if complete; then
  log "reusing $bin_dir ($(tr '\n' ' ' <"$bin_dir/VERSIONS"))"
else
  build_managers
  log "built $bin_dir ($(tr '\n' ' ' <"$bin_dir/VERSIONS")) in $(elapsed)"
fi
log "done in $(elapsed)"
