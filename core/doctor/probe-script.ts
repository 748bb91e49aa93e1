import { isIP } from "node:net";
import { DoctorTarget } from "./target";

/*
 * The node side of `registry-trust doctor`: a POSIX sh script, sent on ssh's stdin, that only reads and
 * prints. It makes no judgement: it prints what exists (files with mtime and base64 content, processes
 * with their start ticks, commands, the chain the registry serves as seen from the node, a CRI pull) as
 * one record per line, and core/doctor/dump.ts parses it. Every value in it is a validated token
 * (core/doctor/target.ts), single-quoted anyway.
 *
 * It never ships a private key: a file containing "PRIVATE KEY" is listed with its content withheld,
 * and password/token values in registry configuration files are blanked before they leave the node.
 */

export const DUMP_HEADER = "REGISTRY_TRUST_DOCTOR 1";
export const DUMP_END = "REGISTRY_TRUST_DOCTOR_END";

/** Go's crypto/x509 system roots on Linux (root_linux.go): the first readable file wins. */
export const GO_CERT_FILES = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/ca-bundle.pem",
  "/etc/pki/tls/cacert.pem",
  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
  "/etc/ssl/cert.pem",
] as const;

/** Go also reads every file directly in these directories. */
export const GO_CERT_DIRS = ["/etc/ssl/certs", "/etc/pki/tls/certs"] as const;

/** Where CAs wait for the OS update tool (update-ca-certificates / update-ca-trust). */
export const OS_ANCHOR_DIRS = ["/usr/local/share/ca-certificates", "/etc/pki/ca-trust/source/anchors", "/etc/pki/trust/anchors"] as const;

export const CERTS_DIRS = { containerd: "/etc/containerd/certs.d", docker: "/etc/docker/certs.d", crio: "/etc/containers/certs.d" } as const;

export const CONFIG_FILES = [
  "/etc/os-release",
  "/etc/containerd/config.toml",
  "/etc/docker/daemon.json",
  "/etc/containers/registries.conf",
  "/etc/rancher/k3s/registries.yaml",
  "/etc/rancher/rke2/registries.yaml",
] as const;

/** Process names (/proc/PID/comm) of the runtimes whose start time matters. */
export const PROCESS_NAMES = ["containerd", "dockerd", "crio", "k3s-server", "k3s-agent", "k3s", "rke2", "kubelet"] as const;

export const COMMANDS = ["containerd", "dockerd", "crio", "k3s", "rke2", "kubelet", "crictl", "podman", "openssl", "curl", "update-ca-certificates", "update-ca-trust"] as const;

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const words = (xs: readonly string[]) => xs.map(q).join(" ");

/** Renders the read-only probe for one node and registry (and image to pull through CRI, if given). */
export function renderProbeScript(t: DoctorTarget): string {
  const { host, port } = t.registry;
  const connect = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  const sni = isIP(host) ? "" : host;
  return `#!/bin/sh
# registry-trust doctor probe: reads and prints only. Records: one per line, variable text in base64.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C
export PATH LC_ALL
CONNECT=${q(connect)}
SNI=${q(sni)}
IMAGE=${q(t.image ?? "")}

b64() { if [ -n "$1" ]; then printf '%s' "$1" | base64 | tr -d '\\n'; else printf -- '-'; fi; }
mtime() { stat -L -c %Y "$1" 2>/dev/null || echo 0; }
# Registry configuration may hold credentials: values of these keys are blanked before leaving the node.
redact() { sed -e 's/^\\([[:space:]]*"\\{0,1\\}\\(password\\|identity_token\\|identitytoken\\|token\\|registrytoken\\)"\\{0,1\\}[[:space:]]*[:=]\\).*/\\1 "redacted"/' -e 's/^\\([[:space:]]*"\\{0,1\\}auth"\\{0,1\\}[[:space:]]*[:=][[:space:]]*\\)[^[:space:]].*/\\1"redacted"/' "$1"; }

# F PATH MTIME LINK CONTENT: CONTENT is "-" when not read (not a certificate or config), "!" when withheld (private key).
file_record() { # file_record PATH READ(0|1)
  p=$1
  link=-
  [ -L "$p" ] && link=$(b64 "$(readlink "$p")")
  if [ -d "$p" ]; then printf 'D %s %s\\n' "$(b64 "$p")" "$(mtime "$p")"; return 0; fi
  [ -e "$p" ] || { [ "$link" = - ] || printf 'F %s 0 %s -\\n' "$(b64 "$p")" "$link"; return 0; }
  if [ ! -r "$p" ]; then printf 'U %s\\n' "$(b64 "$p")"; return 0; fi
  content=-
  if [ "$2" = 1 ]; then
    if grep -q 'PRIVATE KEY' "$p" 2>/dev/null; then content='!'
    else
      case "$p" in
        *.toml|*.yaml|*.yml|*.json|*.conf) content=$(redact "$p" | base64 | tr -d '\\n') ;;
        *) content=$(base64 < "$p" | tr -d '\\n') ;;
      esac
      [ -n "$content" ] || content=-
    fi
  fi
  printf 'F %s %s %s %s\\n' "$(b64 "$p")" "$(mtime "$p")" "$link" "$content"
}

wants_content() { # certificates and registry configuration; never keys
  case "$1" in *.key) echo 0 ;; *.crt|*.pem|*.cer|*.cert|*.toml|*.yaml|*.yml|*.json|*.conf) echo 1 ;; *) echo 0 ;; esac
}

tree_records() { # tree_records DIR DEPTH: the directory and what is under it
  [ -e "$1" ] || return 0
  file_record "$1" 0
  find "$1" -mindepth 1 -maxdepth "$2" 2>/dev/null | sort | while IFS= read -r f; do file_record "$f" "$(wants_content "$f")"; done
}

echo ${q(DUMP_HEADER)}
printf 'K uid %s\\n' "$(id -u)"
printf 'K now %s\\n' "$(date +%s)"
printf 'K btime %s\\n' "$(sed -n 's/^btime //p' /proc/stat 2>/dev/null)"
printf 'K clk %s\\n' "$(getconf CLK_TCK 2>/dev/null || echo 100)"

for c in ${words(COMMANDS)}; do
  p=$(command -v "$c" 2>/dev/null) && printf 'C %s %s\\n' "$c" "$(b64 "$p")"
done
command -v containerd >/dev/null 2>&1 && printf 'V containerd %s\\n' "$(b64 "$(containerd --version 2>&1 | head -n 1)")"

for d in /proc/[0-9]*; do
  c=$(cat "$d/comm" 2>/dev/null) || continue
  case "$c" in ${PROCESS_NAMES.join("|")}) ;; *) continue ;; esac
  s=$(cat "$d/stat" 2>/dev/null) || continue
  s=\${s##*) }
  # shellcheck disable=SC2086 # split the stat fields on purpose
  set -- $s
  printf 'P %s %s %s\\n' "$c" "\${d#/proc/}" "\${20}"
done

for f in ${words(CONFIG_FILES)}; do file_record "$f" 1; done
for f in /etc/containers/registries.conf.d/*.conf; do [ -e "$f" ] && file_record "$f" 1; done

# Go's system pool: the first readable bundle file, then the files directly in its directories. Links
# to the distribution's public roots (already in the bundle) and hash links are counted, not shipped.
for f in ${words(GO_CERT_FILES)}; do
  if [ -f "$f" ] && [ -r "$f" ]; then file_record "$f" 1; printf 'K gofile %s\\n' "$(b64 "$f")"; break; fi
done
for d in ${words(GO_CERT_DIRS)}; do
  [ -d "$d" ] || continue
  file_record "$d" 0
  skipped=0
  for f in "$d"/* "$d"/.[!.]*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    if [ -L "$f" ]; then
      # Go skips links within the directory (no "/" in the target).
      t=$(readlink "$f")
      case "$t" in */*) ;; *) skipped=$((skipped + 1)); continue ;; esac
      case "$t" in /usr/share/ca-certificates/*) skipped=$((skipped + 1)); continue ;; esac
    fi
    [ -d "$f" ] && continue
    file_record "$f" 1
  done
  printf 'S %s %s\\n' "$(b64 "$d")" "$skipped"
done
for d in ${words(OS_ANCHOR_DIRS)}; do tree_records "$d" 3; done

# Runtime certs.d directories, those named by containerd's config_path, and CA files the configuration names.
# This only gathers candidates (a superset does no harm: each is just dumped); which config_path applies is
# decided from the dumped config.toml with a TOML parser (stores.ts). containerd 1.x writes "…", 2.x '…'.
cdirs=${q(Object.values(CERTS_DIRS).join(" "))}
if [ -r /etc/containerd/config.toml ]; then
  for d in $(sed -n -e 's/^[[:space:]]*config_path[[:space:]]*=[[:space:]]*"\\([^"]*\\)".*/\\1/p' \\
    -e "s/^[[:space:]]*config_path[[:space:]]*=[[:space:]]*'\\([^']*\\)'.*/\\1/p" /etc/containerd/config.toml | tr ':' ' '); do
    case " $cdirs " in *" $d "*) ;; *) cdirs="$cdirs $d" ;; esac
  done
fi
for d in $cdirs; do tree_records "$d" 2; done
refs=$( { for d in $cdirs; do [ -d "$d" ] && find "$d" -maxdepth 2 -name hosts.toml 2>/dev/null | while IFS= read -r h; do cat "$h"; done; done
  cat /etc/containerd/config.toml /etc/rancher/k3s/registries.yaml /etc/rancher/rke2/registries.yaml 2>/dev/null; } |
  grep -E '^[[:space:]]*"?(ca|ca_file)"?[[:space:]]*[=:]' | grep -oE '/[^]"'"'"', []+' | sort -u)
for f in $refs; do case "$f" in *.key) ;; *) file_record "$f" 1 ;; esac; done

# The chain the registry serves, as this node reaches it (its DNS, its /etc/hosts, its routes).
if command -v openssl >/dev/null 2>&1; then
  to=''; command -v timeout >/dev/null 2>&1 && to='timeout 20'
  # shellcheck disable=SC2086 # $to is empty or a command prefix, split on purpose
  if [ -n "$SNI" ]; then out=$($to openssl s_client -connect "$CONNECT" -servername "$SNI" -showcerts </dev/null 2>&1); rc=$?
  else out=$($to openssl s_client -connect "$CONNECT" -showcerts </dev/null 2>&1); rc=$?; fi
  printf 'X chain %s %s\\n' "$rc" "$(b64 "$out")"
fi

# A pull through CRI, the kubelet's path (it adds the image to the node's image store, nothing else).
if [ -n "$IMAGE" ] && command -v crictl >/dev/null 2>&1; then
  sudo=''
  [ "$(id -u)" = 0 ] || { sudo -n true 2>/dev/null && sudo='sudo -n'; }
  to=''; command -v timeout >/dev/null 2>&1 && to='timeout 120'
  # shellcheck disable=SC2086 # $sudo and $to are empty or a command prefix, split on purpose
  out=$($sudo $to crictl pull "$IMAGE" 2>&1); rc=$?
  printf 'X pull %s %s\\n' "$rc" "$(b64 "$out")"
fi
echo ${q(DUMP_END)}
`;
}
