#!/bin/bash
# Runs inside a lab node's mount and PID namespaces (lab/kubelet.ts enters them with nsenter) and execs the
# real kubelet there, so that the kubelet and the node's containerd see the same files: the node's
# /etc/containerd/certs.d and trust store, the node's /run (containerd's socket), and the mounts the
# kubelet makes for pod volumes. Before that, two things that would otherwise land on the shared host:
# - The node gets a private /var/log: the kubelet writes pod logs to /var/log/pods and links them from
#   /var/log/containers (a fixed path).
# - The kubelet sets six kernel sysctls it wants (vm.overcommit_memory=1, kernel.panic=10,
#   kernel.panic_on_oops=1, …) unless protectKernelDefaults. They are machine-wide and this machine is
#   shared, so in the node's mount namespace each /proc/sys file whose value differs is covered by a file
#   holding the value the kubelet wants: it reads that and leaves the kernel alone. EMULATED; see docs/kubelet.md.
# Usage: kubelet-start.sh STATE_DIR KUBELET_BIN ARGS...
set -eu
state=$1
shift
mkdir -p "$state/var-log" "$state/sysctl"
mount --bind "$state/var-log" /var/log
# The values pkg/kubelet/cm/container_manager_linux.go setupKernelTunables wants.
for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
  kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
  key=${kv%%=*}
  want=${kv#*=}
  [ "$(cat "/proc/sys/$key")" = "$want" ] && continue
  file="$state/sysctl/$(echo "$key" | tr / .)"
  echo "$want" >"$file"
  mount --bind "$file" "/proc/sys/$key"
done
exec "$@"
