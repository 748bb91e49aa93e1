#!/usr/bin/env bash
# The main job (`npm run demo`): the lab stack under a real `pulumi up`, end to end, on one machine.
#   1. lab packages, kube-apiserver/etcd, the Pulumi engine, crictl and containerd 2.x (built from Go modules
#      when missing);
#   2. the lab: a TLS registry, two SSH nodes with their own containerd, the real kube-apiserver with the
#      real Cluster API v1.14 managers (lab/capi.ts), a KubeadmControlPlane + MachineDeployment on CAPD in-memory;
#   3. `pulumi up --stack lab`, then a check of every claim on the real parts (lab/cluster-summary.ts);
#   4. `pulumi preview` must report no changes; on exit `pulumi destroy` and the lab is stopped.
# Everything (state, Pulumi home, lab) lives in one temp dir removed at the end; the repo is not written to.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
# The run-time values go to a copy of stacks/Pulumi.lab.yaml in the lab dir; the committed file must not change.
committed=$(sha256sum stacks/Pulumi.lab.yaml)
say() { printf '\n== %s\n' "$*"; }

# Node.js 22 or 24, refused before anything starts otherwise (the message says how to get one).
bash scripts/node-runtime.sh --check
[ -x node_modules/.bin/tsx ] || npm install --no-audit --no-fund
sh scripts/install-lab-deps.sh

cache="${REGISTRY_TRUST_CACHE:-$HOME/.cache/registry-trust}"
k8s_version=$(sed -n 's/^K8S_VERSION=//p' scripts/k8s-binaries.env)
if [ -z "${KUBE_APISERVER_BIN:-}${KUBEBUILDER_ASSETS:-}" ] && [ ! -x "$cache/k8s/${K8S_VERSION:-$k8s_version}/kube-apiserver" ]; then
  say "building kube-apiserver and etcd from Go modules: cold, this takes ~15 minutes on 2 cores (cached afterwards)"
fi
bash scripts/k8s-binaries.sh
# The lab cluster runs the real Cluster API managers (lab/capi.ts), built from Go modules once.
bash scripts/capi-binaries.sh
if ! command -v pulumi >/dev/null && [ ! -x "$(bash scripts/pulumi-binaries.sh --print-bin)/pulumi" ]; then
  say "building the Pulumi CLI and plugins from Go modules: cold, this takes 13-25 minutes on 2 cores (cached afterwards)"
fi
bash scripts/pulumi-binaries.sh
# The lab's nodes run the real crictl (and containerd 2.x on nodes that ask for it), built from Go modules.
if [ ! -x "$(bash scripts/node-binaries.sh --print-bin)/crictl" ]; then
  say "building containerd 2.x and crictl from Go modules: cold, this takes several minutes on 2 cores (cached afterwards)"
fi
bash scripts/node-binaries.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/registry-trust-demo-XXXXXX")
lab="$work/lab"
export PULUMI_BACKEND_URL="file://$work/state" PULUMI_HOME="$work/pulumi-home"
mkdir -p "$work/state" "$work/pulumi-home"
# shellcheck source=scripts/pulumi-env.sh
. scripts/pulumi-env.sh
up_done=
finish() {
  rc=$?
  set +e
  if [ -n "$up_done" ]; then
    say "pulumi destroy --stack lab (removes what the stack installed on nodes and cluster)"
    "${op[@]}" destroy --stack lab --yes "${quiet[@]}" | tail -n 6
  fi
  if [ -f "$lab/lab.json" ]; then
    say "stopping the lab"
    node_modules/.bin/tsx lab/cli.ts stop --dir "$lab"
  fi
  rm -rf "$work"
  if [ "$(sha256sum stacks/Pulumi.lab.yaml)" != "$committed" ]; then
    echo "FAIL stacks/Pulumi.lab.yaml was changed by this run" >&2
    rc=1
  fi
  echo "demo: $([ "$rc" = 0 ] && echo done || echo "FAILED (exit $rc)") in $(( $(date +%s) - t0 ))s"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

say "starting the lab: registry, 2 SSH nodes, kube-apiserver + the real Cluster API controllers and a workload cluster, stack 'lab' config"
node_modules/.bin/tsx lab/cli.ts start --nodes 2 --dir "$lab" --cluster --stack lab

# The lab's pulumi (lab/cluster-stack.ts): the lab's filled copy of stacks/Pulumi.lab.yaml in the committed
# file's place, and registry.test resolvable as on the nodes, both only inside its own mount namespace.
op=("$lab/bin/pulumi")
quiet=(--non-interactive --color never --suppress-outputs --suppress-progress)
up_done=1
say "pulumi up --stack lab, adoption step ($lab/Pulumi.lab.adopt.yaml: no nodes, no clusters)"
echo "The lab registry serves a certificate of the lab's own CA, which no node trusts and the stack's bundle"
echo "does not hold; this first up creates the stack's CA and switches the registry to its certificate."
"${op[@]}" up --stack lab --config-file "$lab/Pulumi.lab.adopt.yaml" --yes "${quiet[@]}" | tail -n 8

say "pulumi up --stack lab --yes"
"${op[@]}" up --stack lab --yes "${quiet[@]}"

say "verification on the real parts"
"${op[@]}" stack output --stack lab --json >"$work/outputs.json"
node_modules/.bin/tsx lab/cluster-summary.ts "$lab" "$work/outputs.json"

say "pulumi preview --stack lab: a second run must change nothing"
preview=$("${op[@]}" preview --stack lab --non-interactive --color never --json)
changes=$(node -e 'const s = JSON.parse(require("fs").readFileSync(0, "utf8")).changeSummary || {}; const other = Object.keys(s).filter((k) => k !== "same"); console.log(other.map((k) => k + "=" + s[k]).join(" "))' <<<"$preview")
if [ -n "$changes" ]; then
  echo "FAIL preview reports changes: $changes" >&2
  exit 1
fi
echo "ok   preview: no changes ($(node -e 'console.log((JSON.parse(require("fs").readFileSync(0, "utf8")).changeSummary || {}).same || 0)' <<<"$preview") resources unchanged)"
