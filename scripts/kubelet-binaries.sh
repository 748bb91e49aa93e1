#!/usr/bin/env bash
# Builds the lab's real node and control loops — kubelet, kube-controller-manager, kube-scheduler — from
# the same Go module graph as the lab's kube-apiserver (scripts/k8s-module.sh, shared with k8s-binaries.sh: the same wrapper module
# around k8s.io/kubernetes $K8S_VERSION with every staging module replaced by its published v0.<minor>.<patch>,
# the same version ldflags), into a cache outside the repo:
#   ${REGISTRY_TRUST_CACHE:-~/.cache/registry-trust}/k8s/<K8S_VERSION>/node/{kubelet,kube-controller-manager,kube-scheduler,VERSIONS}
# Built once per version (later runs reuse it); a rebuild of kube-apiserver by k8s-binaries.sh replaces the
# version directory, node/ with it, so both are rebuilt together. CGO is off as for the apiserver: kubelet needs no cgo on
# Linux for what the lab uses (cgroupfs driver, CRI over a unix socket).
# Binaries a user already has are used instead: KUBELET_BIN + KUBE_CONTROLLER_MANAGER_BIN + KUBE_SCHEDULER_BIN.
#
# --print-dir: print the output directory for the pinned version (whether built or not) and exit.
set -euo pipefail

# K8S_VERSION, CACHE; k8s_module and k8s_ldflags, shared with scripts/k8s-binaries.sh.
source "$(dirname "${BASH_SOURCE[0]}")/k8s-module.sh"
out_dir="$CACHE/k8s/$K8S_VERSION/node"
names=(kubelet kube-controller-manager kube-scheduler)

if [[ "${1:-}" == --print-dir ]]; then echo "$out_dir"; exit 0; fi
if [[ $# -gt 0 ]]; then echo "usage: kubelet-binaries.sh [--print-dir]" >&2; exit 2; fi

start=$(date +%s)
log() { echo "kubelet-binaries: $*"; }
elapsed() { echo "$(( $(date +%s) - start ))s"; }

if [[ -n "${KUBELET_BIN:-}${KUBE_CONTROLLER_MANAGER_BIN:-}${KUBE_SCHEDULER_BIN:-}" ]]; then
  for v in KUBELET_BIN KUBE_CONTROLLER_MANAGER_BIN KUBE_SCHEDULER_BIN; do
    if [[ ! -x "${!v:-}" ]]; then
      echo "kubelet-binaries: KUBELET_BIN, KUBE_CONTROLLER_MANAGER_BIN and KUBE_SCHEDULER_BIN must all name executables ($v='${!v:-}')" >&2
      exit 1
    fi
  done
  log "using KUBELET_BIN=$KUBELET_BIN KUBE_CONTROLLER_MANAGER_BIN=$KUBE_CONTROLLER_MANAGER_BIN KUBE_SCHEDULER_BIN=$KUBE_SCHEDULER_BIN"
  exit 0
fi

complete() {
  local n
  for n in "${names[@]}"; do [[ -x "$out_dir/$n" ]] || return 1; done
  [[ -f "$out_dir/VERSIONS" ]]
}
if complete; then
  log "reusing $out_dir ($(tr '\n' ' ' <"$out_dir/VERSIONS"))"
  exit 0
fi

if ! command -v go >/dev/null; then
  echo "kubelet-binaries: 'go' is not on PATH; it is needed to build kubelet, kube-controller-manager and kube-scheduler $K8S_VERSION" >&2
  exit 1
fi

# A second run waits here and then reuses the first one's build.
mkdir -p "$CACHE/k8s"
exec 9>"$CACHE/.kubelet-binaries.lock"
flock 9
if complete; then
  log "reusing $out_dir, built meanwhile by another run"
  exit 0
fi

work="$(mktemp -d "$CACHE/k8s/.build-node-$K8S_VERSION-XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The apiserver's and etcd's imports stay, so `go mod tidy` selects the very graph the apiserver was built from.
k8s_module "$work" go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet

date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$work/out"
log "building ${names[*]} $K8S_VERSION (cold: many minutes on 2 cores)"
# One go build for the three commands, so the packages they share compile once.
(cd "$work" && CGO_ENABLED=0 nice -n 10 go build -pgo=off -trimpath -ldflags "$(k8s_ldflags "$date")" -o "$work/out/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
printf 'kubernetes=%s\ngo=%s\nbuilt=%s\nbuild_seconds=%s\n' "$K8S_VERSION" "$(go env GOVERSION)" "$date" "$(( $(date +%s) - start ))" \
  >"$work/out/VERSIONS"
# Moved into place only when complete, so an interrupted build is never mistaken for a cached one.
rm -rf "$out_dir"
mkdir -p "$(dirname "$out_dir")"
mv "$work/out" "$out_dir"
log "built $out_dir ($(tr '\n' ' ' <"$out_dir/VERSIONS")) in $(elapsed)"
