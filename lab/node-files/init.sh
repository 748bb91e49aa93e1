#!/bin/bash
# PID 1 of one lab node's private PID and mount namespaces (lab/node.ts starts it through unshare).
# It gives the node its own copies of everything a trust installer touches, then runs sshd and
# supervises containerd the way systemd would: `systemctl restart containerd` (lab/node-files/systemctl)
# kills containerd and this loop starts a new one. When this process exits, the kernel kills whatever
# is left in the namespace and the mounts vanish with it.
set -u
N=$1
F=$N/fs

bind() {
  mount --bind "$1" "$2" || { echo "init: cannot bind $1 over $2" >&2; exit 1; }
}
bind "$F/etc/ssl/certs" /etc/ssl/certs
bind "$F/usr/local/share/ca-certificates" /usr/local/share/ca-certificates
bind "$F/etc/ca-certificates.conf" /etc/ca-certificates.conf
# The hooks in update.d (jks-keystore) run dpkg against the host's package database.
bind "$F/etc/ca-certificates/update.d" /etc/ca-certificates/update.d
bind "$F/etc/containerd" /etc/containerd
bind "$F/etc/containers" /etc/containers
bind "$F/etc/docker" /etc/docker
bind "$F/etc/cni/net.d" /etc/cni/net.d
bind "$F/var/lib/containers" /var/lib/containers
bind "$F/etc/hosts" /etc/hosts
bind "$F/usr/local/sbin" /usr/local/sbin
bind "$F/etc/pki" /etc/pki
bind "$F/etc/rancher" /etc/rancher
# A directory rather than a tmpfs so the host can reach the containerd socket under $N/run.
bind "$N/run" /run
mkdir -p /run/sshd /run/containerd
chmod 0755 /run/sshd

CPID=0
SSHD=0
stopping=0
trap 'stopping=1; kill -TERM $CPID $SSHD 2>/dev/null' TERM INT

start_containerd() {
  rm -f /run/containerd/containerd.pid /run/containerd/containerd.sock
  containerd --config /etc/containerd/config.toml >>"$N/logs/containerd.log" 2>&1 &
  CPID=$!
  until [ -S /run/containerd/containerd.sock ]; do
    kill -0 "$CPID" 2>/dev/null || { echo "init: containerd exited, see $N/logs/containerd.log" >&2; return 1; }
    sleep 0.01
  done
  # systemctl and the lab read this only once the socket is up: it doubles as the readiness signal.
  echo "$CPID" >/run/containerd/containerd.pid
}

/usr/sbin/sshd -D -e -f "$N/ssh/sshd_config" 2>>"$N/logs/sshd.log" &
SSHD=$!
start_containerd || exit 1

while [ "$stopping" = 0 ]; do
  wait -n "$CPID" "$SSHD"
  [ "$stopping" = 1 ] && break
  # A node nobody can reach is useless (e.g. its port was taken): fail loudly instead.
  if ! kill -0 "$SSHD" 2>/dev/null; then
    echo "init: sshd exited, see $N/logs/sshd.log" >&2
    kill -TERM "$CPID" 2>/dev/null
    wait
    exit 1
  fi
  # Interrupted by a signal while containerd still runs: keep waiting.
  kill -0 "$CPID" 2>/dev/null && continue
  # `systemctl stop` leaves this marker; `systemctl start` removes it.
  while [ -e /run/containerd/lab-stopped ] && [ "$stopping" = 0 ]; do sleep 0.1; done
  [ "$stopping" = 0 ] && { start_containerd || sleep 1; }
done
wait
