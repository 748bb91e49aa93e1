# Source me (bash): sets up an offline Pulumi run with the engine scripts/pulumi-binaries.sh built.
#   . scripts/pulumi-env.sh && pulumi stack init dev && pulumi up
# PATH gets the built CLI first (with the language host and pulumi-nodejs launcher next to it, where the
# engine looks for them); PULUMI_HOME gets the resource plugins the build installed (its plugins/ becomes a
# link to them, or, in a PULUMI_HOME with plugins of its own, they are added with `pulumi plugin install
# --file`), so the engine takes each at the version its SDK asks for and nothing from PATH;
# state goes to a file:// backend and PULUMI_HOME goes to a temp dir unless PULUMI_BACKEND_URL /
# PULUMI_HOME are already set; secrets use a passphrase (PULUMI_CONFIG_PASSPHRASE, default below — set your
# own for anything but throwaway stacks). Plugin downloads and update checks are off.
# With a normal Pulumi install on PATH, only the backend/passphrase/offline settings are applied.
_rt_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v pulumi >/dev/null 2>&1 || [[ "$(command -v pulumi)" == "${REGISTRY_TRUST_CACHE:-$HOME/.cache/registry-trust}"/pulumi/* ]]; then
  _rt_bin="$(bash "$_rt_here/pulumi-binaries.sh" --print-bin)"
  if [[ ! -x "$_rt_bin/pulumi" ]]; then
    echo "pulumi-env: no Pulumi CLI in $_rt_bin; run 'npm run pulumi:binaries' first" >&2
    unset _rt_here _rt_bin
    return 1 2>/dev/null || exit 1
  fi
  export PATH="$_rt_bin:$PATH"
fi
_rt_tmp="${TMPDIR:-/tmp}/registry-trust-pulumi"
mkdir -p "$_rt_tmp/backend" "$_rt_tmp/home"
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$_rt_tmp/backend}"
export PULUMI_HOME="${PULUMI_HOME:-$_rt_tmp/home}"
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-registry-trust-local}"
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true
if [[ -n "${_rt_bin:-}" ]]; then
  _rt_plugins="$(bash "$_rt_here/pulumi-binaries.sh" --print-plugins)"
  mkdir -p "$PULUMI_HOME"
  if [[ ! -e "$PULUMI_HOME/plugins" ]]; then
    ln -s "$_rt_plugins" "$PULUMI_HOME/plugins"
  elif [[ "$(readlink -f "$PULUMI_HOME/plugins")" != "$(readlink -f "$_rt_plugins")" ]]; then
    for _rt_p in "$_rt_plugins"/resource-*-v*; do
      [[ -d "$_rt_p" && ! -e "$PULUMI_HOME/plugins/${_rt_p##*/}" ]] || continue
      _rt_n="${_rt_p##*/resource-}"
      "$_rt_bin/pulumi" plugin install resource "${_rt_n%-v*}" "${_rt_n##*-v}" --file "$_rt_p/pulumi-resource-${_rt_n%-v*}" --non-interactive >/dev/null
    done
  fi
fi
unset _rt_here _rt_bin _rt_tmp _rt_plugins _rt_p _rt_n
