#!/bin/sh
# Installs the Debian packages the local lab (lab/) runs on, and shellcheck, which the tests run on the
# rendered node scripts. Idempotent: when every package is already installed, apt is not touched at all
# (no update, no network).
set -eu

PACKAGES="openssh-server openssh-client docker-registry containerd skopeo curl openssl ca-certificates
iproute2 util-linux mount podman p11-kit shellcheck cloud-init busybox-static"

missing=""
for p in $PACKAGES; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$status" in
    "install ok installed") ;;
    *) missing="$missing $p" ;;
  esac
done

# Mount points the lab bind-mounts per-node copies over (podman/skopeo would create /var/lib/containers
# on first use); the lab itself never creates anything outside its own directory.
ensure_mountpoints() {
  # Empty on a Debian host; nodes get private /etc/pki (RHEL layout) and /etc/rancher (k3s/RKE2) over them.
  mkdir -p /var/lib/containers /etc/pki /etc/rancher
}

if [ -z "$missing" ]; then
  echo "install-lab-deps: all lab packages already installed"
  ensure_mountpoints
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-lab-deps: need root to install:$missing" >&2
  exit 1
fi

echo "install-lab-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing
ensure_mountpoints
