#!/usr/bin/env bash
# Everything `npm test` needs beyond node_modules, idempotent and cached: the lab's Debian packages, and
# kube-apiserver + etcd + the Cluster API CRDs (built from Go modules once per version, see k8s-binaries.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null || { echo "test-prereqs: Go is required (test/oracle and the Kubernetes test binaries are built with it)" >&2; exit 1; }
sh "$here/install-lab-deps.sh"
bash "$here/k8s-binaries.sh"
