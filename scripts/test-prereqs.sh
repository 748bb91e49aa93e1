#!/usr/bin/env bash
# Everything `npm test` needs beyond node_modules, idempotent and cached: the lab's Debian packages, the
# lab nodes' crictl and containerd 2.x (node-binaries.sh), kube-apiserver + etcd + the Cluster API CRDs,
# kubelet/kube-controller-manager/kube-scheduler (kubelet-binaries.sh), the four Cluster API managers
# (capi-binaries.sh), and the Pulumi engine (CLI, Node.js language host, tls,
# kubernetes and command plugins, the dynamic-provider launcher), both built from Go modules once per version (k8s-binaries.sh, pulumi-binaries.sh;
# docs/pulumi-engine.md). A machine with a normal Pulumi install builds no engine. Last, npm's cache is given
# what the consumer example's offline install resolves (consumer-npm-cache.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null || { echo "test-prereqs: Go is required (test/oracle and the Kubernetes test binaries are built with it)" >&2; exit 1; }
sh "$here/install-lab-deps.sh"
# First of the Go builds: every lab test needs its crictl, and it is the shortest.
bash "$here/node-binaries.sh"
bash "$here/k8s-binaries.sh"
bash "$here/kubelet-binaries.sh"
bash "$here/capi-binaries.sh"
bash "$here/pulumi-binaries.sh"
bash "$here/actionlint.sh"
# The consumer example installs offline from npm's cache: put its dependency set there.
bash "$here/consumer-npm-cache.sh"
