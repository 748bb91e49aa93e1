#!/usr/bin/env bash
# Provides kube-apiserver + etcd and the real Cluster API CRDs for test/k8s, in a cache outside the repo:
#   $REGISTRY_TRUST_CACHE (default ~/.cache/registry-trust)/k8s/<K8S_VERSION>/{kube-apiserver,etcd}
#   $REGISTRY_TRUST_CACHE/capi/<CAPI_VERSION>/*.yaml
# No package ships kube-apiserver, and only the Go module proxy is reachable, so the binaries are built
# from Go modules (once per version; later runs reuse them). Binaries a user already has are used instead:
# KUBE_APISERVER_BIN + ETCD_BIN, or a KUBEBUILDER_ASSETS directory holding both.
set -euo pipefail

# K8S_VERSION, CAPI_VERSION, CACHE; k8s_module and k8s_ldflags.
source "$(dirname "${BASH_SOURCE[0]}")/k8s-module.sh"
bin_dir="$CACHE/k8s/$K8S_VERSION"
crd_dir="$CACHE/capi/$CAPI_VERSION"

start=$(date +%s)
log() { echo "k8s-binaries: $*"; }
elapsed() { echo "$(( $(date +%s) - start ))s"; }

if ! command -v go >/dev/null; then
  echo "k8s-binaries: 'go' is not on PATH; it is needed to build kube-apiserver/etcd and fetch the Cluster API CRDs" >&2
  exit 1
fi

# A second run (another shell, CI on the same machine) waits here and then reuses the first one's build.
mkdir -p "$CACHE"
exec 9>"$CACHE/.k8s-binaries.lock"
flock 9

user_binaries() {
  if [[ -n "${KUBE_APISERVER_BIN:-}" || -n "${ETCD_BIN:-}" ]]; then
    if [[ ! -x "${KUBE_APISERVER_BIN:-}" || ! -x "${ETCD_BIN:-}" ]]; then
      echo "k8s-binaries: KUBE_APISERVER_BIN and ETCD_BIN must both name executables (got '${KUBE_APISERVER_BIN:-}', '${ETCD_BIN:-}')" >&2
      exit 1
    fi
    log "using KUBE_APISERVER_BIN=$KUBE_APISERVER_BIN ETCD_BIN=$ETCD_BIN"
    return 0
  fi
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    if [[ ! -x "$KUBEBUILDER_ASSETS/kube-apiserver" || ! -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
      echo "k8s-binaries: KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks an executable kube-apiserver or etcd" >&2
      exit 1
    fi
    log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
    return 0
  fi
  return 1
}

build_binaries() {
  mkdir -p "$CACHE/k8s"
  local work
  work="$(mktemp -d "$CACHE/k8s/.build-$K8S_VERSION-XXXXXX")"
  trap 'rm -rf "$work"' EXIT

  k8s_module "$work" go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver

  local etcd_version date
  etcd_version="$(cd "$work" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  mkdir -p "$work/out"
  log "building kube-apiserver $K8S_VERSION (cold: many minutes on 2 cores)"
  (cd "$work" && CGO_ENABLED=0 nice -n 10 go build -pgo=off -trimpath -ldflags "$(k8s_ldflags "$date")" \
    -o "$work/out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  log "building etcd $etcd_version after $(elapsed)"
  (cd "$work" && CGO_ENABLED=0 nice -n 10 go build -pgo=off -trimpath -ldflags "-s -w" \
    -o "$work/out/etcd" go.etcd.io/etcd/server/v3)
  printf 'kubernetes=%s\netcd=%s\ngo=%s\nbuilt=%s\n' "$K8S_VERSION" "$etcd_version" "$(go env GOVERSION)" "$date" \
    >"$work/out/VERSIONS"
  # Moved into place only when complete, so an interrupted build is never mistaken for a cached one.
  rm -rf "$bin_dir"
  mv "$work/out" "$bin_dir"
  rm -rf "$work"
  trap - EXIT
}

fetch_crds() {
  local dir tmp name found
  dir="$(go mod download -json "sigs.k8s.io/cluster-api@$CAPI_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",\?$/\1/p')"
  tmp="$(mktemp -d "$CACHE/capi/.fetch-XXXXXX")"
  # The bases files carry no conversion-webhook patch, so they install on a bare apiserver.
  for name in \
    controlplane.cluster.x-k8s.io_kubeadmcontrolplanes.yaml \
    bootstrap.cluster.x-k8s.io_kubeadmconfigtemplates.yaml \
    cluster.x-k8s.io_machinedeployments.yaml \
    cluster.x-k8s.io_clusters.yaml; do
    # The directory moved between releases (config/ → core/config/), so look the file up by name.
    found="$(find "$dir" -path "*/crd/bases/$name" | head -n1)"
    if [[ -z "$found" ]]; then
      echo "k8s-binaries: $name not found under $dir" >&2
      rm -rf "$tmp"
      exit 1
    fi
    cp "$found" "$tmp/$name"
  done
  chmod -R u+w "$tmp"
  rm -rf "$crd_dir"
  mv "$tmp" "$crd_dir"
}

if user_binaries; then
  :
elif [[ -x "$bin_dir/kube-apiserver" && -x "$bin_dir/etcd" && -f "$bin_dir/VERSIONS" ]]; then
  log "reusing $bin_dir ($(tr '\n' ' ' <"$bin_dir/VERSIONS"))"
else
  build_binaries
  log "built $bin_dir ($(tr '\n' ' ' <"$bin_dir/VERSIONS")) in $(elapsed)"
fi

mkdir -p "$CACHE/capi"
if [[ $(find "$crd_dir" -name '*.yaml' 2>/dev/null | wc -l) -eq 4 ]]; then
  log "reusing Cluster API $CAPI_VERSION CRDs in $crd_dir"
else
  fetch_crds
  log "fetched Cluster API $CAPI_VERSION CRDs into $crd_dir"
fi
log "done in $(elapsed)"
