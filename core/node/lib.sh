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
  [ -z "${RT_CHECK_FILE:-}" ] || rm -f "$RT_CHECK_FILE"
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
#
# containerd's own parser is the judge (docs/node-script.md): `containerd -c FILE config dump` loads FILE
# the way the daemon does, imports included, and prints the effective configuration in containerd's own
# canonical TOML. We decide from that dump; the only text read from it is fixed lines of that canonical
# form (a table header, `config_path = "…"`). When config_path has to be set, candidate edits of the
# operator's file are made as small as possible (set the value on an existing config_path line, or add
# the key under an existing registry table, or under its parent as a dotted key, or append the table)
# and each candidate is proven with the same parser before anything is written: it must load, its
# effective config_path must be ours, and its dump must differ from the original's in that one line only.
# The first candidate that passes is planned; none passing refuses the node with the file untouched.
# Each edited line carries a marker comment, so remove can put the file back byte for byte.

RT_CONTAINERD_RESTART=0
RT_CRI_V2='plugins."io.containerd.grpc.v1.cri".registry'
RT_CRI_V3='plugins."io.containerd.cri.v1.images".registry'

rt_containerd_dump() { # rt_containerd_dump FILE OUT: effective config as the daemon loads it (cwd /, as under systemd)
  (cd / && containerd -c "$1" config dump) > "$2" 2> "$RT_WORK/dump.err"
}

rt_dump_registry() { # rt_dump_registry DUMP: version=, section=, config_path=, conflict= from a canonical dump
  awk -v v2="$RT_CRI_V2" -v v3="$RT_CRI_V3" '
    function hdr(l) { sub(/^[ \t]+/, "", l); sub(/[ \t]+$/, "", l); gsub(/\047/, "\"", l); return l }
    # Top-level keys come first in a dump. Version 3+ (containerd 2.x) reads only the images plugin
    # table: a grpc.v1.cri registry table there is echoed back by the dump but read by nobody.
    /^version = / { version = $3; want = (version + 0 >= 3) ? v3 : v2 }
    /^[ \t]*\[/ {
      h = hdr($0); cur = ""
      if (h == "[" want "]") { cur = substr(h, 2, length(h) - 2); sect = cur }
      else if (sect != "" && index(h, "[" sect ".mirrors.") == 1) conflict = conflict " " substr(h, 2, length(h) - 2)
      else if (sect != "" && index(h, "[" sect ".configs.") == 1 && h ~ /\.tls\]$/) conflict = conflict " " substr(h, 2, length(h) - 2)
      next
    }
    cur != "" && /^[ \t]*config_path = / {
      v = $0; sub(/^[ \t]*config_path = /, "", v)
      q = substr(v, 1, 1)
      if ((q == "\"" || q == "\047") && substr(v, length(v), 1) == q && index(v, "\\") == 0) cp = substr(v, 2, length(v) - 2)
      else cp = "<unreadable: " v ">"
    }
    END { print "version=" version; print "section=" sect; print "config_path=" cp; print "conflict=" conflict }
  ' "$1"
}

rt_dump_diff_only_config_path() { # rt_dump_diff_only_config_path OLD NEW SECTION: do they differ in that one line only?
  awk -v sect="$3" '
    function hdr(l) { sub(/^[ \t]+/, "", l); sub(/[ \t]+$/, "", l); gsub(/\047/, "\"", l); return l }
    FNR == NR { if ($0 !~ /^imports = /) old[++n] = $0; next }
    $0 ~ /^imports = / { next }
    {
      m++
      if (/^[ \t]*\[/) cur = hdr($0)
      if ($0 == old[m]) next
      if (cur == "[" sect "]" && $0 ~ /^[ \t]*config_path = / && old[m] ~ /^[ \t]*config_path = /) { changed++; next }
      bad = 1
    }
    END { exit !(bad == 0 && m == n && changed == 1) }
  ' "$1" "$2"
}

rt_toml_candidates() { # rt_toml_candidates FILE DIR PREFIX SECTION: writes PREFIX.N, each a minimal edit setting config_path; prints N
  nofinal=0; [ ! -s "$1" ] || [ -z "$(tail -c 1 "$1")" ] || nofinal=1
  awk -v nofinal="$nofinal" -v section="$4" -v dir="$3" -v path="$2" -v v2="$RT_CRI_V2" -v v3="$RT_CRI_V3" -v add="# added by registry-trust (owner $RT_OWNER)" -v was="# registry-trust (owner $RT_OWNER) replaced: " '
    function hdr(l) { sub(/^[ \t]+/, "", l); sub(/\][ \t]*(#.*)?$/, "]", l); gsub(/[ \t]/, "", l); gsub(/\047/, "\"", l); return l }
    function emit(kind, at, text,   i, f, out, k) {
      f = dir "." (++n); k = 0
      for (i = 1; i <= nl; i++) {
        if (i == at && kind == "set") { out[++k] = text; continue }
        out[++k] = line[i]
        if (i == at && kind == "after") out[++k] = text
      }
      if (kind == "append") out[++k] = text
      # A file without a final newline keeps it that way, except where a table is appended (the marker says so).
      for (i = 1; i <= k; i++) printf "%s%s", out[i], (i < k || !nofinal || kind == "append" ? "\n" : "") > f
      close(f)
    }
    { line[++nl] = $0 }
    END {
      # Candidates in order of preference: the smallest edit first; the proof discards the wrong ones.
      for (i = 1; i <= nl; i++) {
        l = line[i]
        if (l ~ /^[ \t]*[^=#\[]*config_path["\047 \t]*=[ \t]*(""|\047\047)/) {
          pre = l; sub(/(""|\047\047).*$/, "", pre)
          rest = substr(l, length(pre) + 3)
          emit("set", i, pre "\"" path "\"" rest "  " was l)
        }
      }
      # Then a key under the registry table, a dotted key under the CRI plugin table, one under [plugins].
      for (tier = 1; tier <= 3; tier++) for (i = 1; i <= nl; i++) {
        if (line[i] !~ /^[ \t]*\[[^\[]/) continue
        h = hdr(line[i]); ind = line[i]; sub(/[^ \t].*$/, "", ind)
        if (tier == 1 && (h == "[" v2 "]" || h == "[" v3 "]" || h == "[plugins.cri.registry]")) emit("after", i, ind "  config_path = \"" path "\"  " add)
        if (tier == 2 && (h == "[plugins.\"io.containerd.grpc.v1.cri\"]" || h == "[plugins.\"io.containerd.cri.v1.images\"]" || h == "[plugins.cri]")) emit("after", i, ind "  registry.config_path = \"" path "\"  " add)
        if (tier == 3 && h == "[plugins]") {
          emit("after", i, ind "  \"io.containerd.grpc.v1.cri\".registry.config_path = \"" path "\"  " add)
          emit("after", i, ind "  \"io.containerd.cri.v1.images\".registry.config_path = \"" path "\"  " add)
        }
      }
      tail = nofinal ? ", the file had no final newline" : ""
      # The table of the containerd generation the dump shows first (2.x also migrates the older one).
      first = (section == v3) ? v3 : v2; second = (section == v3) ? v2 : v3
      emit("append", 0, "\n[" first "]  " add tail "\n  config_path = \"" path "\"  " add)
      emit("append", 0, "\n[" second "]  " add tail "\n  config_path = \"" path "\"  " add)
      print n
    }
  ' "$1"
}

rt_toml_unedit() { # rt_toml_unedit FILE > ORIGINAL: undoes the edits this owner's marker comments record
  nofinal=0; [ ! -s "$1" ] || [ -z "$(tail -c 1 "$1")" ] || nofinal=1
  awk -v nofinal="$nofinal" -v add="# added by registry-trust (owner $RT_OWNER)" -v was="# registry-trust (owner $RT_OWNER) replaced: " '
    { i = index($0, was) }
    i > 0 { out[++n] = substr($0, i + length(was)); next }
    index($0, add) > 0 {
      if ($0 ~ /^[ \t]*\[/ && n > 0 && out[n] == "") n--
      if (index($0, ", the file had no final newline") > 0) nofinal = 1
      next
    }
    { out[++n] = $0 }
    END { for (i = 1; i <= n; i++) printf "%s%s", out[i], (i < n || !nofinal ? "\n" : "") }
  ' "$1"
}

rt_path_has() { # rt_path_has LIST DIR: is DIR one of the colon-separated LIST's entries (fixed strings)?
  case ":$1:" in *":$2:"*) return 0 ;; esac
  return 1
}

rt_containerd_prove() { # rt_containerd_prove CANDIDATE ORIGINAL_DUMP SECTION DIR CFG: does containerd read what we want?
  # With imports, the candidate must sit where the original does (an import may be relative, or a glob
  # that matches it); its name matches no *.toml glob. It is removed at once, and by the EXIT trap.
  if [ "$(sed -n 's/^imports = //p' "$2" | tr -cd ',' | wc -c)" -gt 0 ]; then
    RT_CHECK_FILE="$(dirname "$5")/.registry-trust-check.$$"
  else
    RT_CHECK_FILE="$RT_WORK/candidate"
  fi
  cp "$1" "$RT_CHECK_FILE"
  ok=0
  if rt_containerd_dump "$RT_CHECK_FILE" "$RT_WORK/candidate.dump" &&
    rt_dump_registry "$RT_WORK/candidate.dump" > "$RT_WORK/candidate.state" &&
    [ "$(sed -n 's/^config_path=//p' "$RT_WORK/candidate.state")" = "$4" ] &&
    rt_dump_diff_only_config_path "$2" "$RT_WORK/candidate.dump" "$3"; then ok=1; fi
  rm -f "$RT_CHECK_FILE"
  RT_CHECK_FILE=''
  [ "$ok" = 1 ]
}
RT_CHECK_FILE=''

rt_plan_containerd_config() { # rt_plan_containerd_config CERTS_DIR ALLOW_RESTART
  command -v containerd >/dev/null 2>&1 || rt_die "runtime containerd is configured for this node but containerd is not installed"
  cfg=${RT_CONTAINERD_CONFIG:-/etc/containerd/config.toml}
  if [ -f "$cfg" ]; then
    rt_containerd_dump "$cfg" "$RT_WORK/original.dump" ||
      rt_die "containerd cannot load $cfg: $(cat "$RT_WORK/dump.err"). Fix the file first (check it with: containerd -c $cfg config dump)."
  else
    # No file: the daemon runs on its defaults, which is what `config default` prints.
    containerd config default > "$RT_WORK/original.dump" 2> "$RT_WORK/dump.err" || rt_die "containerd config default failed: $(cat "$RT_WORK/dump.err")"
  fi
  rt_dump_registry "$RT_WORK/original.dump" > "$RT_WORK/original.state"
  state() { sed -n "s/^$1=//p" "$RT_WORK/original.state"; }
  section=$(state section)
  current=$(state config_path)
  [ -n "$section" ] || rt_die "containerd's effective configuration (containerd -c $cfg config dump) has no CRI registry table ($RT_CRI_V2 or $RT_CRI_V3); registry-trust handles config versions 2 (containerd 1.x) and 3 (2.x)."
  conflict=$(state conflict)
  [ -z "$conflict" ] || rt_die "$cfg (with its imports) sets${conflict}, which containerd refuses together with config_path (the CRI plugin would not load). Move each mirror to $1/<registry>/hosts.toml ([host.\"https://mirror\"], capabilities = [\"pull\", \"resolve\"]) and each TLS setting to the ca/client/skip_verify keys of that registry's hosts.toml, delete those tables, restart containerd, then run again."
  rt_path_has "$current" "$1" && return 0
  [ -z "$current" ] || rt_die "$cfg sets config_path = \"$current\", which does not include $1. Add $1 to it (colon-separated) and restart containerd once."
  [ "$2" = 1 ] || rt_die "$cfg does not set config_path, so containerd ignores $1; enabling it needs one containerd restart, which this stack does not allow (allowRuntimeRestart=false). Set it by hand in a maintenance window or allow the restart."

  if [ -f "$cfg" ]; then
    n=$(rt_toml_candidates "$cfg" "$1" "$RT_WORK/cand" "$section")
  else
    # A file of ours with just that key: the marker makes `remove` delete it again.
    case "$section" in
      # containerd 2.x: the version its defaults have (3 or 4), so that nothing is migrated on load.
      "$RT_CRI_V3") printf '%s: enables %s.\nversion = %s\n\n[%s]\n  config_path = "%s"\n' "$RT_MARKER" "$1" "$(state version)" "$RT_CRI_V3" "$1" > "$RT_WORK/cand.1" ;;
      *) printf '%s: enables %s.\nversion = 2\n\n[%s]\n  config_path = "%s"\n' "$RT_MARKER" "$1" "$RT_CRI_V2" "$1" > "$RT_WORK/cand.1" ;;
    esac
    n=1
  fi
  i=1
  while [ "$i" -le "$n" ]; do
    if rt_containerd_prove "$RT_WORK/cand.$i" "$RT_WORK/original.dump" "$section" "$1" "$cfg"; then
      if [ -f "$cfg" ]; then
        # config.toml is the operator's file: merged (mode and owner kept), never claimed.
        echo "merge $cfg - $(base64 < "$RT_WORK/cand.$i" | tr -d '\n')" >> "$RT_WORK/plan"
      else
        rt_plan_file "$cfg" 0644 "$(base64 < "$RT_WORK/cand.$i" | tr -d '\n')"
      fi
      RT_CONTAINERD_RESTART=1
      return 0
    fi
    i=$((i + 1))
  done
  imports=$(sed -n 's/^imports = //p' "$RT_WORK/original.dump")
  rt_die "cannot set config_path in $cfg safely: no minimal edit made containerd read config_path = \"$1\" with nothing else changed (the effective configuration also loads $imports; an imported file that redefines the CRI plugin overrides $cfg). Set config_path = \"$1\" in the CRI registry table ($section) of the file that defines it, restart containerd once, then run again."
}

rt_unplan_containerd_config() { # rt_unplan_containerd_config CERTS_DIR: undo our config_path edit when nothing else needs it
  cfg=${RT_CONTAINERD_CONFIG:-/etc/containerd/config.toml}
  [ -f "$cfg" ] || return 0
  if rt_is_ours "$cfg"; then
    :
  elif ! grep -qF -e "registry-trust (owner $RT_OWNER)" "$cfg"; then
    return 0
  fi
  # Someone else's hosts.toml or certificates under certs.d still need config_path: leave it on.
  find "$1" -type f 2>/dev/null | while read -r f; do rt_is_ours "$f" || echo "$f"; done > "$RT_WORK/foreign"
  if [ -s "$RT_WORK/foreign" ]; then
    rt_log "keeping config_path in $cfg: other files under $1 need it ($(head -n 3 "$RT_WORK/foreign" | tr '\n' ' '))"
    return 0
  fi
  if rt_is_ours "$cfg"; then
    rt_plan_remove "$cfg"
  else
    rt_toml_unedit "$cfg" > "$RT_WORK/config.toml.orig"
    echo "merge $cfg - $(base64 < "$RT_WORK/config.toml.orig" | tr -d '\n')" >> "$RT_WORK/plan"
  fi
  # No restart: the running containerd keeps config_path until its next start, and with none of our
  # files left under the directory it resolves every registry as without it.
}

# ---- k3s / RKE2 registries.yaml ---------------------------------------------------------------------

rt_yaml_edit() { # rt_yaml_edit FILE OURS KEYS > EDITED: a minimal targeted edit of someone else's registries.yaml
  # Block-style YAML only. Our entries go right under the existing mirrors:/configs: header, re-indented
  # to that map's own indentation, each key line marked with our owner; a section we add is marked too.
  # Every other byte is kept, so removing our marked lines (OURS empty) gives back the input byte for byte.
  # Exit 3: flow style or a section that is not a block map; exit 4: an entry we would manage is someone else's.
  awk -v ours="$2" -v keys="$3" -v mark="# registry-trust (owner $RT_OWNER)" -v added="# added by registry-trust (owner $RT_OWNER)" '
    function indent(l) { match(l, /^ */); return RLENGTH }
    function top(l,   k) { k = l; sub(/:.*$/, "", k); gsub(/["\047]/, "", k); return k }
    function key(l,   k) { k = l; sub(/^[ \t]+/, "", k); sub(/[ \t]+#.*$/, "", k); sub(/[ \t]*:[ \t]*$/, "", k); gsub(/^["\047]|["\047]$/, "", k); return k }
    function blank(l) { return l ~ /^[ \t]*(#.*)?$/ }
    BEGIN {
      n = split(keys, k, " "); for (i = 1; i <= n; i++) mine[k[i]] = 1
      while ((getline l < ours) > 0) {
        if (l ~ /^[a-z]+:/) { s = l; sub(/:.*/, "", s); order[++ns] = s; continue }
        if (l ~ /^  [^ ]/) l = l " " mark
        add[s] = add[s] l "\n"
      }
    }
    { line[++nl] = $0 }
    END {
      # Pass 1: drop our marked entries (and a section we added that is left empty); refuse what we cannot edit.
      m = 0; sect = ""
      for (i = 1; i <= nl; i++) {
        l = line[i]
        if (l ~ /^[^ \t#]/) {
          if (l ~ /^[{\[]/) { print "the whole document is in flow style" > "/dev/stderr"; exit 3 }
          sect = top(l); N = 0
          if ((sect == "mirrors" || sect == "configs") && l !~ /^["\047]?(mirrors|configs)["\047]?:[ \t]*(#.*)?$/) { print sect " is not a block map: " l > "/dev/stderr"; exit 3 }
          out[++m] = l; hdr[sect] = m; mk[m] = index(l, added) > 0
          continue
        }
        if ((sect == "mirrors" || sect == "configs") && !blank(l)) {
          if (N == 0) N = indent(l)
          if (indent(l) == N) {
            if (index(l, mark) > 0) { skip = 1; continue }
            skip = 0
            if (ns > 0 && (key(l) in mine)) { print sect "." key(l) > "/dev/stderr"; exit 4 }
          } else if (skip && indent(l) > N) continue
          else skip = 0
          kids[sect]++
        } else if (blank(l)) skip = 0
        out[++m] = l
      }
      # Pass 2: ours right after the existing header (at its children indentation), or as a new section at the end.
      for (i = 1; i <= m; i++) {
        l = out[i]
        if (mk[i] && (top(l) == "mirrors" || top(l) == "configs") && !kids[top(l)]) continue
        print l
        s = top(l)
        if (l ~ /^[^ \t#]/ && hdr[s] == i && (s in add) && add[s] != "" && !(mk[i] && !kids[s])) {
          printf "%s", reindent(add[s], childindent(s, i)); add[s] = ""
        }
      }
      for (j = 1; j <= ns; j++) if (add[order[j]] != "") { print order[j] ": " added; printf "%s", add[order[j]] }
    }
    function childindent(s, at,   i) {
      for (i = at + 1; i <= m; i++) { if (out[i] ~ /^[^ \t#]/) break; if (!blank(out[i])) return indent(out[i]) }
      return 2
    }
    function reindent(text, n,   r, pad, parts, c, i) {
      pad = sprintf("%" n "s", ""); c = split(text, parts, "\n"); r = ""
      for (i = 1; i < c; i++) r = r pad substr(parts[i], 3) "\n"
      return r
    }
  ' "$1"
}

rt_plan_registries_yaml() { # rt_plan_registries_yaml FILE OURS_B64 KEYS: OURS empty = remove our entries
  rt_decode "$2" "$RT_WORK/ours.yaml"
  if [ -f "$1" ] && ! rt_is_ours "$1"; then
    # Someone else's file: keep everything but our entries, and do not claim the file.
    rt_yaml_edit "$1" "$RT_WORK/ours.yaml" "$3" > "$RT_WORK/registries.yaml" 2> "$RT_WORK/yaml.err" || case $? in
      3) rt_die "cannot edit $1: $(cat "$RT_WORK/yaml.err"). registry-trust edits block-style YAML only: write mirrors: and configs: as indented maps (one key per line), then run again." ;;
      4) rt_die "$1 already has $(cat "$RT_WORK/yaml.err"), which registry-trust manages for this stack but did not write. Remove that entry (registry-trust writes it with the bundle's CA), or take the registry out of the stack, then run again." ;;
      *) rt_die "cannot edit $1: $(cat "$RT_WORK/yaml.err")" ;;
    esac
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
