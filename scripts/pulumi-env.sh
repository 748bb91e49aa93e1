# Source me (bash): sets up an offline Pulumi run with the engine scripts/pulumi-binaries.sh built.
#   . scripts/pulumi-env.sh && pulumi stack init dev && pulumi up
# PATH gets the built CLI and plugins first (the engine finds plugins on PATH as pulumi-resource-<name>);
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
unset _rt_here _rt_bin _rt_tmp
