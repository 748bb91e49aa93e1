# registry-trust node library: sourced into every rendered script (see core/node/render.ts).
# POSIX sh. Every value it receives was validated and quoted by the renderer; file contents arrive base64.
#
# Flow: the rendered body plans files (rt_plan_*), rt_preflight refuses conflicts before anything is
# touched, rt_apply writes atomically (temp file + rename) with a journal of backups, then the checks run.
# Any failure (set -e, rt_die, a signal) rolls the journal back, so the node ends as it was; a rollback
# step that cannot be done is reported as such, never as "nothing was changed".
#
# Paths are compared as fixed strings only (grep -F, case with quoted words), never used as a regular
# expression or a pattern: an IPv6 endpoint's directory, certs.d/[fd00::1]:5000, is a bracket expression.

RT_MARKER="# Managed by registry-trust (owner $RT_OWNER)"
RT_WORK=$(mktemp -d "${TMPDIR:-/tmp}/registry-trust.XXXXXX")
RT_SEQ=0
RT_CHANGED=''
RT_RESTARTED=''
RT_VERIFIED=''
RT_UNVERIFIED=''
RT_STORE_DIRTY=0
RT_FINISHED=0
: > "$RT_WORK/plan"
: > "$RT_WORK/planned"
: > "$RT_WORK/journal"
: > "$RT_WORK/journaled"
: > "$RT_WORK/rollback-failed"

rt_log() { printf 'registry-trust: %s\n' "$*" >&2; }
rt_die() { rt_log "ERROR: $*"; exit 1; }

rt_on_exit() {
  status=$?
  # Every rollback step is checked on its own: one that fails must not end the trap before the others ran.
  set +e
  if [ "$RT_FINISHED" != 1 ]; then
    [ "$status" -ne 0 ] || status=1
    rt_rollback
    if [ -s "$RT_WORK/rollback-failed" ]; then
      rt_log "ROLLBACK INCOMPLETE: the node is NOT as it was; these could not be put back: $(tr '\n' ';' < "$RT_WORK/rollback-failed")"
    else
      rt_log "nothing was changed on this node (every step rolled back)"
    fi
  fi
  rm -rf "$RT_WORK"
  exit "$status"
}
trap rt_on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# A dropped SSH connection leaves stdout/stderr without a reader. Untrapped, the first write after that
# (rt_die's message, a check's log) would kill the shell with SIGPIPE before its EXIT trap: no rollback, a
# half-written node. Silence the dead streams and leave through the EXIT trap instead.
trap 'exec >/dev/null 2>&1; exit 129' HUP
trap 'exec >/dev/null 2>&1; exit 141' PIPE

rt_add() { # rt_add VAR WORD: appends WORD to a space-separated list variable
  eval "$1=\"\${$1} \$2\""
}

rt_journal() { # rt_journal PATH: remembers how to put PATH back, once per path
  if grep -qxF -e "$1" "$RT_WORK/journaled"; then return 0; fi
  printf '%s\n' "$1" >> "$RT_WORK/journaled"
  RT_SEQ=$((RT_SEQ + 1))
  if [ -e "$1" ]; then
    cp -p "$1" "$RT_WORK/backup.$RT_SEQ"
    echo "$RT_SEQ restore $1" >> "$RT_WORK/journal"
  else
    echo "$RT_SEQ absent $1" >> "$RT_WORK/journal"
  fi
}

rt_mkdir() { # rt_mkdir DIR: mkdir -p that journals every directory it creates
  [ -d "$1" ] && return 0
  rt_mkdir "$(dirname "$1")"
  mkdir "$1"
  RT_SEQ=$((RT_SEQ + 1))
  echo "$RT_SEQ dir $1" >> "$RT_WORK/journal"
}

rt_rmdir() { # rt_rmdir DIR: removes DIR if it is empty, journaled with its mode and owner
  [ -d "$1" ] || return 0
  meta=$(stat -c '%a %u:%g' "$1") || return 1
  rmdir "$1" 2>/dev/null || return 0
  RT_SEQ=$((RT_SEQ + 1))
  echo "$RT_SEQ rmdir $meta $1" >> "$RT_WORK/journal"
}

rt_rollback_failed() { printf '%s\n' "$*" >> "$RT_WORK/rollback-failed"; }

rt_rollback() {
  # Newest first: a pruned directory comes back before the file that was in it, a created file goes
  # before the directory created for it.
  sort -rn "$RT_WORK/journal" | while read -r seq what path; do
    case "$what" in
      restore) { cp -p "$RT_WORK/backup.$seq" "$path.rt-restore" && mv -f "$path.rt-restore" "$path"; } || rt_rollback_failed "$path (restore)" ;;
      absent) rm -f "$path" || rt_rollback_failed "$path (remove)" ;;
      dir) rmdir "$path" || rt_rollback_failed "$path (remove the directory created)" ;;
      rmdir)
        mode=${path%% *}; rest=${path#* }; owner=${rest%% *}; dir=${rest#* }
        { mkdir "$dir" && chmod "$mode" "$dir" && chown "$owner" "$dir"; } || rt_rollback_failed "$dir (recreate the directory)" ;;
    esac
  done
  # The store's generated files are put back from their copy rather than regenerated: what the node had
  # may not be what the store tool would produce today, and "as before" means byte for byte.
  if [ "$RT_STORE_DIRTY" = 1 ]; then
    for out in $RT_STORE_OUT; do
      if ! { find "$out" -mindepth 1 -maxdepth 1 -exec rm -rf {} + && cp -a "$RT_WORK/store-out$out/." "$out/"; }; then
        rt_rollback_failed "$out (restore the generated trust store)"
      fi
    done
  fi
  for svc in $RT_RESTARTED; do rt_restart "$svc" || rt_rollback_failed "restart of $svc on the restored configuration"; done
}

rt_decode() { # rt_decode B64 FILE
  printf '%s' "$1" | base64 -d > "$2" || rt_die "could not decode content for $2 (is base64 installed?)"
}

# ---- planning and conflicts -------------------------------------------------------------------------

rt_plan_file() { # rt_plan_file PATH MODE B64: PATH should hold exactly this content (first line: marker)
  echo "write $1 $2 $3" >> "$RT_WORK/plan"
  printf '%s\n' "$1" >> "$RT_WORK/planned"
}

rt_plan_remove() { # rt_plan_remove PATH: remove PATH if it is ours
  echo "remove $1 - -" >> "$RT_WORK/plan"
}

rt_is_ours() { # a file whose first line carries our marker (this owner's)
  [ -f "$1" ] && head -n 1 "$1" | grep -qF "$RT_MARKER"
}

rt_plan_prune() { # rt_plan_prune GLOB...: plan removal of our files matching GLOB that are not planned writes
  for f in "$@"; do
    [ -f "$f" ] || continue
    rt_is_ours "$f" || continue
    grep -qxF -e "$f" "$RT_WORK/planned" || rt_plan_remove "$f"
  done
}

rt_preflight() {
  conflicts=''
  while read -r op path _mode _b64; do
    if [ "$op" = write ] && [ -e "$path" ] && ! rt_is_ours "$path"; then
      owner=$(head -n 1 "$path" | sed -n 's/^# Managed by registry-trust (owner \([a-z0-9-]*\)).*/\1/p')
      conflicts="$conflicts $path${owner:+ (managed by registry-trust owner $owner)}"
    fi
  done < "$RT_WORK/plan"
  if [ -n "$conflicts" ]; then
    rt_die "these files exist and were not written by this registry-trust owner ($RT_OWNER):$conflicts. Move them away (registry-trust will manage these paths), then run again."
  fi
}

rt_plan_differs() { # rt_plan_differs PREFIX: would applying the plan change a file below PREFIX?
  while read -r op path _mode b64; do
    case "$path" in "$1"*) ;; *) continue ;; esac
    [ "$op" = remove ] && [ -e "$path" ] && return 0
    [ "$op" = remove ] && continue
    rt_decode "$b64" "$RT_WORK/cmp"
    cmp -s "$RT_WORK/cmp" "$path" 2>/dev/null || return 0
  done < "$RT_WORK/plan"
  return 1
}

rt_apply() {
  while read -r op path mode b64; do
    case "$op" in
      write | merge)
        rt_decode "$b64" "$RT_WORK/new"
        if [ -f "$path" ] && cmp -s "$RT_WORK/new" "$path"; then continue; fi
        # Directories first: rolled back newest first, the file goes before the directories made for it.
        rt_mkdir "$(dirname "$path")"
        rt_journal "$path"
        if [ "$op" = merge ]; then
          # Someone else's file: keep its mode and owner, change only the content.
          cp -p "$path" "$path.rt-new"
          cat "$RT_WORK/new" > "$path.rt-new"
        else
          cp "$RT_WORK/new" "$path.rt-new"
          chmod "$mode" "$path.rt-new"
        fi
        mv -f "$path.rt-new" "$path"
        rt_add RT_CHANGED "$path"
        ;;
      remove)
        [ -e "$path" ] || continue
        rt_journal "$path"
        rm -f "$path"
        rt_add RT_CHANGED "$path"
        rt_rmdir "$(dirname "$path")"
        ;;
    esac
  done < "$RT_WORK/plan"
}

rt_changed_under() { # rt_changed_under PREFIX: did this run change anything below PREFIX?
  for f in $RT_CHANGED; do case "$f" in "$1"*) return 0 ;; esac; done
  return 1
}

# ---- OS family and trust store ----------------------------------------------------------------------

rt_detect_os() { # sets RT_OS from /etc/os-release unless the renderer fixed it
  [ "$RT_OS" = auto ] || return 0
  [ -r /etc/os-release ] || rt_die "cannot detect the OS: /etc/os-release is missing; set the node's os explicitly"
  # shellcheck disable=SC1091 # the node's own file, read at run time
  ids=$(. /etc/os-release && echo "${ID:-} ${ID_LIKE:-}")
  for id in $ids; do
    case "$id" in
      debian | ubuntu) RT_OS=debian; return 0 ;;
      rhel | centos | fedora | rocky | almalinux | amzn | ol) RT_OS=rhel; return 0 ;;
      sles | suse | opensuse | opensuse-leap | opensuse-tumbleweed) RT_OS=suse; return 0 ;;
      alpine) RT_OS=alpine; return 0 ;;
      flatcar | coreos) RT_OS=flatcar; return 0 ;;
      photon) RT_OS=photon; return 0 ;;
    esac
  done
  rt_die "unsupported OS ($ids): set the node's os to one of debian, rhel, suse, alpine, flatcar, photon"
}

# rt_store_layout (generated from core/node/os-stores.ts) sets RT_STORE_DIR and RT_STORE_EXT (our anchors),
# RT_STORE_BUNDLE (the result), RT_STORE_OUT (what the update tool rewrites) and RT_STORE_UPDATE.

rt_store_update() {
  # Called on the left of ||, where set -e does not apply: every step checks its own status.
  # shellcheck disable=SC2086 # RT_STORE_UPDATE is a command with its arguments
  $RT_STORE_UPDATE || return 1
  # update-ca-certificates leaves the links to an anchor it no longer has: the name link and the hash
  # link to it, both named after our file and both dangling now.
  for out in $RT_STORE_OUT; do
    find "$out" -maxdepth 1 -type l -lname "*registry-trust-$RT_OWNER-*" ! -exec test -e {} \; -exec rm -f {} + || return 1
  done
}

rt_plan_store() { # rt_plan_store NAME B64 [NAME B64]...: one file per CA, stale ones of ours removed
  while [ $# -ge 2 ]; do
    rt_plan_file "$RT_STORE_DIR/registry-trust-$RT_OWNER-$1.$RT_STORE_EXT" 0644 "$2"
    shift 2
  done
  rt_plan_prune "$RT_STORE_DIR/registry-trust-$RT_OWNER-"*."$RT_STORE_EXT"
}

rt_apply_store() { # rebuilds the OS store when this run changed it
  rt_changed_under "$RT_STORE_DIR/registry-trust-$RT_OWNER-" || return 0
  for out in $RT_STORE_OUT; do mkdir -p "$RT_WORK/store-out$out" && cp -a "$out/." "$RT_WORK/store-out$out/"; done
  RT_STORE_DIRTY=1
  rt_store_update > "$RT_WORK/store.log" 2>&1 || { cat "$RT_WORK/store.log" >&2; rt_die "$RT_STORE_UPDATE failed"; }
}

# ---- services ---------------------------------------------------------------------------------------

rt_service_active() {
  if command -v systemctl >/dev/null 2>&1; then systemctl is-active --quiet "$1"
  elif command -v rc-service >/dev/null 2>&1; then rc-service "$1" status >/dev/null 2>&1
  else return 1
  fi
}

rt_restart() { # rt_restart SERVICE: restart and wait until it is active again; non-zero (and why) if not
  # It returns rather than dies: the rollback restarts too, and must go on after one restart fails.
  if command -v systemctl >/dev/null 2>&1; then systemctl restart "$1" || { rt_log "systemctl restart $1 failed"; return 1; }
  elif command -v rc-service >/dev/null 2>&1; then rc-service "$1" restart || { rt_log "rc-service $1 restart failed"; return 1; }
  else rt_log "cannot restart $1: neither systemctl nor rc-service is available"; return 1
  fi
  i=0
  until rt_service_active "$1"; do
    i=$((i + 1))
    [ "$i" -le 50 ] || { rt_log "$1 did not become active again after its restart"; return 1; }
    sleep 0.2
  done
}

# ---- containerd config_path -------------------------------------------------------------------------

RT_CONTAINERD_RESTART=0

rt_toml_registry_state() { # rt_toml_registry_state FILE SECTION: prints version=, config_path=, mirrors=
  awk -v sect="$2" '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    { t = trim($0) }
    t ~ /^version[ \t]*=/ { v = t; sub(/^version[ \t]*=[ \t]*/, "", v); sub(/[ \t]*#.*$/, "", v); version = v }
    t ~ /^\[/ { h = t; gsub(/[][ \t]/, "", h); in_sect = (h == sect); if (index(h, sect ".mirrors") == 1 || index(h, sect ".configs") == 1) legacy = h; next }
    in_sect && t ~ /^config_path[ \t]*=/ { v = t; sub(/^config_path[ \t]*=[ \t]*/, "", v); sub(/[ \t]*#.*$/, "", v); gsub(/"/, "", v); cp = v; has = 1 }
    END { print "version=" version; print "has_config_path=" (has + 0); print "config_path=" cp; print "legacy=" legacy }
  ' "$1"
}

rt_toml_add_config_path() { # rt_toml_add_config_path FILE SECTION DIR > NEWFILE
  awk -v sect="$2" -v dir="$3" '
    { t = $0; sub(/^[ \t]+/, "", t) }
    t ~ /^\[/ { h = t; gsub(/[][ \t]/, "", h); print; if (h == sect) { match($0, /^[ \t]*/); print substr($0, 1, RLENGTH) "  config_path = \"" dir "\"  # added by registry-trust"; done = 1 }; next }
    { print }
    END { if (!done) { print ""; print "[" sect "]"; print "  config_path = \"" dir "\"  # added by registry-trust" } }
  ' "$1"
}

rt_plan_containerd_config() { # rt_plan_containerd_config CERTS_DIR ALLOW_RESTART
  command -v containerd >/dev/null 2>&1 || rt_die "runtime containerd is configured for this node but containerd is not installed"
  cfg=/etc/containerd/config.toml
  if [ ! -f "$cfg" ]; then
    major=$(containerd --version | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^v?[0-9]+\.[0-9]+/) { sub(/^v/, "", $i); split($i, p, "."); print p[1]; exit } }')
    # containerd 2.x reads /etc/containerd/certs.d by default; 1.x needs config_path set.
    [ "${major:-1}" -ge 2 ] && return 0
    printf 'version = 2\n\n' > "$RT_WORK/config.toml.src"
    section='plugins."io.containerd.grpc.v1.cri".registry'
  else
    cp "$cfg" "$RT_WORK/config.toml.src"
    version=$(rt_toml_registry_state "$cfg" x | sed -n 's/^version=//p')
    case "$version" in
      2) section='plugins."io.containerd.grpc.v1.cri".registry' ;;
      3) section='plugins."io.containerd.cri.v1.images".registry' ;;
      *) rt_die "$cfg has config version '${version:-none}'; registry-trust handles version 2 (containerd 1.x) and 3 (2.x). Migrate it with 'containerd config migrate'." ;;
    esac
    state=$(rt_toml_registry_state "$cfg" "$section")
    legacy=$(echo "$state" | sed -n 's/^legacy=//p')
    [ -z "$legacy" ] || rt_die "$cfg sets [$legacy], which containerd refuses together with config_path. Move those settings to hosts.toml files under $1 first."
    if [ "$(echo "$state" | sed -n 's/^has_config_path=//p')" = 1 ]; then
      current=$(echo "$state" | sed -n 's/^config_path=//p')
      case ":$current:" in
        *":$1:"*) return 0 ;;
        *) rt_die "$cfg sets config_path = \"$current\", which does not include $1. Add $1 to it (colon-separated) and restart containerd once." ;;
      esac
    fi
  fi
  [ "$2" = 1 ] || rt_die "$cfg does not set config_path, so containerd ignores $1; enabling it needs one containerd restart, which this stack does not allow (allowRuntimeRestart=false). Set it by hand in a maintenance window or allow the restart."
  rt_toml_add_config_path "$RT_WORK/config.toml.src" "$section" "$1" > "$RT_WORK/config.toml.new"
  # config.toml is the operator's file: merged (mode and owner kept), never claimed.
  if [ -f "$cfg" ]; then op='merge'; else op='write'; fi
  echo "$op $cfg 0644 $(base64 < "$RT_WORK/config.toml.new" | tr -d '\n')" >> "$RT_WORK/plan"
  RT_CONTAINERD_RESTART=1
}

# ---- k3s / RKE2 registries.yaml ---------------------------------------------------------------------

rt_yaml_merge() { # rt_yaml_merge FILE OURS KEYS > MERGED: drop our keys from mirrors:/configs:, append ours
  awk -v ours="$2" -v keys="$3" '
    BEGIN {
      n = split(keys, k, " "); for (i = 1; i <= n; i++) mine[k[i]] = 1
      while ((getline line < ours) > 0) {
        if (line ~ /^[a-z]+:/) { sec = line; sub(/:.*/, "", sec); order[++nsec] = sec; continue }
        add[sec] = add[sec] line "\n"
      }
    }
    function key(l,   s) { s = l; sub(/^[ \t]+/, "", s); sub(/:[ \t]*(#.*)?$/, "", s); gsub(/"/, "", s); return s }
    /^[^ \t#]/ {
      flush()
      sec = $0; sub(/:.*/, "", sec)
      if ($0 ~ /^(mirrors|configs):[ \t]*[{[]/) { print "flow-style " sec " is not supported" > "/dev/stderr"; exit 3 }
      print; skip = 0; cur = sec; seen[sec] = 1; next
    }
    (cur == "mirrors" || cur == "configs") && /^  [^ \t#]/ { skip = (key($0) in mine) }
    !skip { print }
    function flush() { if (cur in add) { printf "%s", add[cur]; delete add[cur] } }
    END {
      flush()
      for (i = 1; i <= nsec; i++) if (order[i] in add && add[order[i]] != "") { print order[i] ":"; printf "%s", add[order[i]] }
    }
  ' "$1"
}

rt_plan_registries_yaml() { # rt_plan_registries_yaml FILE OURS_B64 KEYS: OURS empty = remove our entries
  rt_decode "$2" "$RT_WORK/ours.yaml"
  if [ -f "$1" ] && ! rt_is_ours "$1"; then
    # Someone else's file: keep everything but our entries, and do not claim the file.
    rt_yaml_merge "$1" "$RT_WORK/ours.yaml" "$3" > "$RT_WORK/registries.yaml" || rt_die "cannot merge into $1 (only block-style mirrors:/configs: maps are supported)"
    echo "merge $1 - $(base64 < "$RT_WORK/registries.yaml" | tr -d '\n')" >> "$RT_WORK/plan"
  elif [ -s "$RT_WORK/ours.yaml" ]; then
    { echo "$RT_MARKER: registries for k3s/RKE2."; cat "$RT_WORK/ours.yaml"; } > "$RT_WORK/registries.yaml"
    rt_plan_file "$1" 0600 "$(base64 < "$RT_WORK/registries.yaml" | tr -d '\n')"
  else
    rt_plan_prune "$1"
  fi
}

rt_plan_rancher() { # rt_plan_rancher DISTRO ALLOW_RESTART: restart k3s/RKE2 when its files will change
  rt_plan_differs "/etc/rancher/$1/" || return 0
  for svc in "$1" "$1-server" "$1-agent"; do
    rt_service_active "$svc" || continue
    [ "$2" = 1 ] || rt_die "$1 must restart to read the new registries.yaml, which this stack does not allow (allowRuntimeRestart=false)"
    RT_RANCHER_RESTART="$RT_RANCHER_RESTART $svc"
  done
}
RT_RANCHER_RESTART=''

rt_restart_planned() { # restarts what the plan requires, after files are in place
  if [ "$RT_CONTAINERD_RESTART" = 1 ]; then rt_add RT_RESTARTED containerd; rt_restart containerd || rt_die "containerd did not restart"; fi
  for svc in $RT_RANCHER_RESTART; do rt_add RT_RESTARTED "$svc"; rt_restart "$svc" || rt_die "$svc did not restart"; done
}

# ---- verification -----------------------------------------------------------------------------------

rt_unverified() { # rt_unverified CHECK WHY: a check that could not run here (fails the node unless allowed)
  rt_log "$2: $1 not checked"
  rt_add RT_UNVERIFIED "$1"
}

rt_verify_offline() { # rt_verify_offline CAFILE HOST...: openssl verify of the serving chain against CAFILE
  command -v openssl >/dev/null 2>&1 || { rt_unverified "openssl-verify:$1" "openssl not found"; return 0; }
  ca=$1; shift
  for host in "$@"; do
    case "$host" in *:* | [0-9]*.[0-9]*.[0-9]*.[0-9]*) hostflag=-verify_ip ;; *) hostflag=-verify_hostname ;; esac
    openssl verify -CAfile "$ca" ${RT_HAS_INTERMEDIATES:+-untrusted "$RT_WORK/intermediates.pem"} -purpose sslserver "$hostflag" "$host" "$RT_WORK/leaf.pem" > "$RT_WORK/verify.log" 2>&1 ||
      { cat "$RT_WORK/verify.log" >&2; rt_die "the installed bundle $ca does not verify the registry's serving certificate for $host"; }
  done
  rt_add RT_VERIFIED "openssl-verify:$ca"
}

rt_probe_tls() { # rt_probe_tls ENDPOINT CAFILE: TLS handshake with https://ENDPOINT/v2/ trusting only CAFILE
  url="https://$1/v2/"
  if command -v curl >/dev/null 2>&1; then
    # -g: an IPv6 literal's brackets are part of the URL, not a curl glob.
    curl -g -sS -o /dev/null --max-time 15 --cacert "$2" "$url" 2> "$RT_WORK/probe.log" ||
      { cat "$RT_WORK/probe.log" >&2; rt_die "TLS probe of $url failed through $2"; }
  elif command -v openssl >/dev/null 2>&1; then
    case "$1" in
      \[*\]:*) host=${1%:*}; port=${1##*:} ;;
      \[*\]) host=$1; port=443 ;;
      *:*) host=${1%:*}; port=${1##*:} ;;
      *) host=$1; port=443 ;;
    esac
    # s_client checks the chain only; the name is checked only when asked for (as curl does by itself).
    case "$host" in
      \[*\]) name=${host#[}; name=${name%]}; set -- "$1" "$2" -verify_ip "$name" ;;
      *[!0-9.]*) set -- "$1" "$2" -servername "$host" -verify_hostname "$host" ;;
      *) set -- "$1" "$2" -verify_ip "$host" ;;
    esac
    openssl s_client -connect "$host:$port" "$3" "$4" ${5:+"$5"} ${6:+"$6"} -CAfile "$2" -verify_return_error < /dev/null > "$RT_WORK/probe.log" 2>&1 ||
      { cat "$RT_WORK/probe.log" >&2; rt_die "TLS probe of $host:$port failed through $2"; }
  else
    rt_unverified "tls:$1@$2" "neither curl nor openssl found"
    return 0
  fi
  rt_add RT_VERIFIED "tls:$1@$2"
}

rt_probe_pull() { # rt_probe_pull IMAGE: a pull through CRI, the kubelet's path
  command -v crictl >/dev/null 2>&1 || { rt_unverified "cri-pull:$1" "crictl not found"; return 0; }
  crictl pull "$1" > "$RT_WORK/pull.log" 2>&1 || { cat "$RT_WORK/pull.log" >&2; rt_die "CRI pull of $1 failed"; }
  rt_add RT_VERIFIED "cri-pull:$1"
}

# ---- report -----------------------------------------------------------------------------------------

rt_json_list() { # words → ["a","b"] (words never contain quotes or backslashes: paths the renderer made)
  out=''
  for w in "$@"; do out="$out${out:+,}\"$w\""; done
  printf '[%s]' "$out"
}

rt_finish() { # rt_finish ACTION BUNDLE_SHA256
  if [ -n "$RT_UNVERIFIED" ] && [ "${RT_ALLOW_UNVERIFIED:-}" != 1 ]; then
    rt_die "these checks could not run on this node:$RT_UNVERIFIED. Install what they need (curl or openssl; crictl for the pull check), or accept unverified nodes explicitly (registry-trust:allowUnverifiedNodes)."
  fi
  RT_FINISHED=1
  # shellcheck disable=SC2086 # word splitting of the lists is intended
  printf 'REGISTRY_TRUST_REPORT {"action":"%s","os":"%s","changed":%s,"restarted":%s,"verified":%s,"unverified":%s,"bundleSha256":"%s"}\n' \
    "$1" "$RT_OS" "$(rt_json_list $RT_CHANGED)" "$(rt_json_list $RT_RESTARTED)" "$(rt_json_list $RT_VERIFIED)" "$(rt_json_list $RT_UNVERIFIED)" "$2"
}
