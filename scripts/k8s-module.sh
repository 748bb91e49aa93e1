# Sourced by scripts/k8s-binaries.sh (kube-apiserver, etcd) and scripts/kubelet-binaries.sh (kubelet,
# kube-controller-manager, kube-scheduler): the one place that knows how to build Kubernetes commands from
# Go modules, so that every binary of the lab comes from the same module graph with the same version stamp.
# The caller sets `set -euo pipefail` and defines log().

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Environment overrides the pinned versions (scripts/k8s-binaries.env).
K8S_VERSION="${K8S_VERSION:-$(sed -n 's/^K8S_VERSION=//p' "$here/k8s-binaries.env")}"
CAPI_VERSION="${CAPI_VERSION:-$(sed -n 's/^CAPI_VERSION=//p' "$here/k8s-binaries.env")}"
CACHE="${REGISTRY_TRUST_CACHE:-$HOME/.cache/registry-trust}"

# k8s_module DIR PACKAGE...: writes DIR/go.mod, a module requiring k8s.io/kubernetes $K8S_VERSION, and
# DIR/tools.go importing each PACKAGE, then resolves the graph with `go mod tidy`. k8s.io/kubernetes points its
# staging modules at ./staging; outside that repo they resolve only to their published tags, which are
# v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>, so each gets a replace directive saying so.
# Sets k8s_goversion (the go directive of k8s.io/kubernetes, which the module takes over).
k8s_module() {
  local dir="$1" info gomod staging m p
  shift
  info="$(go list -m -json "k8s.io/kubernetes@$K8S_VERSION")"
  gomod="$(sed -n 's/^\t"GoMod": "\(.*\)",\?$/\1/p' <<<"$info")"
  k8s_goversion="$(sed -n 's/^\t"GoVersion": "\(.*\)",\?$/\1/p' <<<"$info")"
  staging="$(sed -n 's#^\t\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$gomod")"
  if [[ -z "$staging" ]]; then
    echo "$(basename "$0" .sh): found no staging replace directives in $gomod" >&2
    exit 1
  fi
  {
    echo "module registry-trust.local/k8s-binaries"
    echo
    echo "go $k8s_goversion"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    while read -r m; do echo "	$m => $m v0.${K8S_VERSION#v1.}"; done <<<"$staging"
    echo ")"
  } >"$dir/go.mod"
  # A file that is never compiled but makes `go mod tidy` resolve the commands' full dependency graphs.
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
    printf ')\n'
  } >"$dir/tools.go"
  log "resolving modules for Kubernetes $K8S_VERSION (go $k8s_goversion)"
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy)
}

# k8s_ldflags DATE: linker flags that stamp $K8S_VERSION into a command. Without them the binaries report
# v0.0.0, and the apiserver derives a nonsense emulation version from it.
k8s_ldflags() {
  local date="$1" minor pkg flags="-s -w"
  minor="$(cut -d. -f2 <<<"${K8S_VERSION#v}")"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  echo "$flags"
}
