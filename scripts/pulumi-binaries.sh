#!/usr/bin/env bash
# Builds the Pulumi engine pieces this repo's e2e tests run, for machines without a Pulumi install, into a
# cache outside the repo:
#   ${REGISTRY_TRUST_CACHE:-~/.cache/registry-trust}/pulumi/<key>/bin/
#     pulumi and what upstream ships next to it: pulumi-language-nodejs, pulumi-resource-pulumi-nodejs
#   .../pulumi/<key>/home/plugins/resource-{tls,kubernetes,command}-v<version>/
#     the resource plugins, installed the way Pulumi expects (`pulumi plugin install resource NAME VERSION
#     --file BINARY`, with PULUMI_HOME=.../home) under the version their SDK in package.json asks for
#   .../pulumi/<key>/VERSIONS           what was built, from which module versions
# <key> is the CLI version plus a hash of every pin in pulumi-binaries.env, so a changed pin builds anew.
# Built once; later runs reuse what is there. scripts/pulumi-env.sh puts bin/ first on PATH and gives
# PULUMI_HOME these plugins; resource plugins are kept off PATH, where the engine would take them whatever
# version a program asks for, with a warning on every command.
#
# Users with a normal Pulumi install need none of this: if `pulumi` is already on PATH (or PULUMI_BIN names
# one) nothing is built unless PULUMI_BINARIES_FORCE=1.
#
# PULUMI_BINARIES="cli nodejs tls kubernetes command" (default: all five) picks what to build, e.g. to cut CI time.
# Each binary is built on its own: one that fails is reported and the others are still built.
#
# pulumi-language-nodejs is our own minimal host (standins/pulumi-language-nodejs/main.go; rebuilt when that
# file changes): the upstream host's Go module is untagged, so the proxy cannot serve it. Automation API
# inline programs need no host at all.
# pulumi-resource-command is ours too (standins/pulumi-resource-command/*.go; rebuilt when those files
# change): a clean-room stand-in serving @pulumi/command 1.2.1's remote/local Command for the lab and CI,
# because upstream's provider/ module has no tag of its own and the proxy serves no version of it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env_file="$here/pulumi-binaries.env"
# Our own stand-ins for upstream pieces the module proxy does not serve (standins/README.md).
standins="$(cd "$here/../standins" && pwd)"
pin() { local v; v="$(sed -n "s/^$1=//p" "$env_file")"; echo "${!1:-$v}"; }
PULUMI_VERSION="$(pin PULUMI_VERSION)"
TLS_PLUGIN_VERSION="$(pin TLS_PLUGIN_VERSION)"
TLS_TF_PROVIDER_VERSION="$(pin TLS_TF_PROVIDER_VERSION)"
TF_BRIDGE_VERSION="$(pin TF_BRIDGE_VERSION)"
K8S_PROVIDER_MODULE_VERSION="$(pin K8S_PROVIDER_MODULE_VERSION)"
K8S_PLUGIN_VERSION="$(pin K8S_PLUGIN_VERSION)"
WRAPPER_REVISION="$(pin WRAPPER_REVISION)"
# Not part of the cache key: it only changes our own plugin, whose stamp covers it (see stamp below).
COMMAND_PLUGIN_VERSION="$(pin COMMAND_PLUGIN_VERSION)"
CACHE="${REGISTRY_TRUST_CACHE:-$HOME/.cache/registry-trust}"
pins="$PULUMI_VERSION $TLS_PLUGIN_VERSION $TLS_TF_PROVIDER_VERSION $TF_BRIDGE_VERSION $K8S_PROVIDER_MODULE_VERSION $K8S_PLUGIN_VERSION $WRAPPER_REVISION"
key="$PULUMI_VERSION-$(printf '%s' "$pins" | sha256sum | cut -c1-10)"
root="$CACHE/pulumi/$key"
bin="$root/bin"
# A PULUMI_HOME holding only the installed resource plugins: others use its plugins/ (pulumi-env.sh).
home="$root/home"
plugins="$home/plugins"
wanted="${PULUMI_BINARIES:-cli nodejs tls kubernetes command}"
langhost_src="$standins/pulumi-language-nodejs/main.go"
command_src="$standins/pulumi-resource-command"

# --print-bin: print the bin directory for these pins (whether built or not) and exit.
if [[ "${1:-}" == --print-bin ]]; then echo "$bin"; exit 0; fi
# --print-plugins: print the installed resource plugins' directory (a PULUMI_HOME's plugins/) and exit.
if [[ "${1:-}" == --print-plugins ]]; then echo "$plugins"; exit 0; fi

start=$(date +%s)
log() { echo "pulumi-binaries: $*"; }
elapsed() { echo "$(( $(date +%s) - start ))s"; }

existing="${PULUMI_BIN:-$(command -v pulumi 2>/dev/null || true)}"
if [[ -n "$existing" && "${PULUMI_BINARIES_FORCE:-}" != 1 && "$existing" != "$bin/pulumi" ]]; then
  log "using the installed Pulumi CLI $existing ($("$existing" version 2>/dev/null || echo '?')); nothing to build"
  log "(set PULUMI_BINARIES_FORCE=1 to build the pinned engine anyway)"
  exit 0
fi

if ! command -v go >/dev/null; then
  echo "pulumi-binaries: 'go' is not on PATH; it is needed to build the Pulumi CLI and plugins" >&2
  exit 1
fi

mkdir -p "$CACHE/pulumi"
exec 9>"$CACHE/.pulumi-binaries.lock"
flock 9

# The checksum database does not answer for some of these module versions here (e.g. pkg/v3@v3.248.0:
# "sum.golang.org/lookup ...: 404 Not Found"); the proxy's content is used as served and go.sum is kept
# next to each build in the cache.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/pulumi,github.com/hashicorp/terraform-provider-tls"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
export CGO_ENABLED=0

# new_module DIR NAME GOVERSION: an empty wrapper module; callers append require/replace lines.
new_module() {
  mkdir -p "$1"
  printf 'module registry-trust.local/%s\n\ngo %s\n' "$2" "$3" >"$1/go.mod"
}

gobuild() { # gobuild DIR OUT PKG LDFLAGS
  (cd "$1" && nice -n 10 go build -pgo=off -trimpath -ldflags "-s -w $4" -o "$2" "$3")
}

build_cli() {
  local w="$1"
  new_module "$w" pulumi-cli 1.25.11
  # pkg/v3's own go.mod replaces sdk/v3 with ../sdk (the same tag) and swaps the clipboard module; a
  # module outside the repo has to say both itself.
  cat >>"$w/go.mod" <<EOF

require (
	github.com/pulumi/pulumi/pkg/v3 $PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
EOF
  cat >"$w/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
GO
  (cd "$w" && go mod tidy)
  gobuild "$w" "$w/out/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"
  echo "pulumi=$PULUMI_VERSION (github.com/pulumi/pulumi/pkg/v3 $PULUMI_VERSION)" >"$w/out/VERSION"
}

build_nodejs() {
  local w="$1"
  new_module "$w" pulumi-language-nodejs 1.25.11
  printf '\nrequire github.com/pulumi/pulumi/sdk/v3 %s\n' "$PULUMI_VERSION" >>"$w/go.mod"
  cp "$langhost_src" "$w/main.go"
  (cd "$w" && go mod tidy)
  gobuild "$w" "$w/out/pulumi-language-nodejs" . "-X main.Version=${PULUMI_VERSION#v}"
  echo "nodejs=${PULUMI_VERSION#v} (standins/pulumi-language-nodejs/main.go $(stamp nodejs), github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION)" >"$w/out/VERSION"
}

build_command() {
  local w="$1"
  new_module "$w" pulumi-resource-command 1.25.11
  # golang.org/x/crypto (ssh, ssh/agent) comes at the version the Pulumi SDK itself requires.
  printf '\nrequire github.com/pulumi/pulumi/sdk/v3 %s\n' "$PULUMI_VERSION" >>"$w/go.mod"
  cp "$command_src"/*.go "$w/"
  (cd "$w" && go mod tidy)
  gobuild "$w" "$w/out/pulumi-resource-command" . "-X main.Version=$COMMAND_PLUGIN_VERSION"
  local crypto
  crypto="$(cd "$w" && go list -m -f '{{.Version}}' golang.org/x/crypto)"
  echo "command=$COMMAND_PLUGIN_VERSION (ours: standins/pulumi-resource-command $(stamp command), a stand-in for @pulumi/command's plugin; github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION, golang.org/x/crypto $crypto)" >"$w/out/VERSION"
}

build_tls() {
  local w="$1"
  new_module "$w" pulumi-resource-tls 1.25.8
  # The bridge brings the Pulumi SDK it was built against (pkg/sdk v3.228.0 for bridge v3.127.0): newer
  # ones changed interfaces it implements, so the CLI's version is deliberately not forced here.
  cat >>"$w/go.mod" <<EOF

require (
	github.com/hashicorp/terraform-provider-tls $TLS_TF_PROVIDER_VERSION
	github.com/hashicorp/terraform-provider-tls/shim v0.0.0
	github.com/pulumi/pulumi-terraform-bridge/v3 $TF_BRIDGE_VERSION
)

replace (
	github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
	github.com/hashicorp/terraform-plugin-sdk/v2 => github.com/pulumi/terraform-plugin-sdk/v2 v2.0.0-20260318212141-5525259d096b
	github.com/hashicorp/terraform-provider-tls/shim => ./shim
)
EOF
  # The Terraform provider lives in an internal package; Go lets a package whose path is under
  # github.com/hashicorp/terraform-provider-tls import it, which is how pulumi-tls reaches it too.
  mkdir -p "$w/shim" "$w/info" "$w/gen" "$w/cmd"
  cat >"$w/shim/go.mod" <<EOF
module github.com/hashicorp/terraform-provider-tls/shim

go 1.25.8

require github.com/hashicorp/terraform-provider-tls $TLS_TF_PROVIDER_VERSION
EOF
  cat >"$w/shim/shim.go" <<'GO'
package shim

import (
	tfpf "github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-provider-tls/internal/provider"
)

func NewProvider() tfpf.Provider { return provider.New() }
GO
  # The resource and function tokens are those of @pulumi/tls (tls:index/privateKey:PrivateKey, ...).
  cat >"$w/info/info.go" <<'GO'
package info

import (
	"github.com/hashicorp/terraform-provider-tls/shim"
	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
)

var Version string

func res(file, name string) tokens.Type { return tokens.Type("tls:index/" + file + ":" + name) }
func fn(name string) tokens.ModuleMember { return tokens.ModuleMember("tls:index/" + name + ":" + name) }

func Provider(metadata []byte) tfbridge.ProviderInfo {
	return tfbridge.ProviderInfo{
		P:            pf.ShimProvider(shim.NewProvider()),
		Name:         "tls",
		Version:      Version,
		GitHubOrg:    "hashicorp",
		MetadataInfo: tfbridge.NewProviderMetadata(metadata),
		Resources: map[string]*tfbridge.ResourceInfo{
			"tls_cert_request":        {Tok: res("certRequest", "CertRequest")},
			"tls_locally_signed_cert": {Tok: res("locallySignedCert", "LocallySignedCert")},
			"tls_private_key":         {Tok: res("privateKey", "PrivateKey")},
			"tls_self_signed_cert":    {Tok: res("selfSignedCert", "SelfSignedCert")},
		},
		DataSources: map[string]*tfbridge.DataSourceInfo{
			"tls_public_key":  {Tok: fn("getPublicKey")},
			"tls_certificate": {Tok: fn("getCertificate")},
		},
		EnableZeroDefaultSchemaVersion: true,
	}
}
GO
  # Build step 1: a generator writes the Pulumi schema and bridge metadata from the Terraform schema
  # (what pulumi-tls's tfgen produces and embeds; its generated files are not in any module zip).
  cat >"$w/gen/main.go" <<'GO'
package main

import (
	"context"
	"os"
	"path/filepath"

	pftfgen "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"
	"github.com/pulumi/pulumi-terraform-bridge/v3/unstable/metadata"
	"registry-trust.local/pulumi-resource-tls/info"
)

func main() {
	out := os.Args[1]
	i := info.Provider(nil)
	res, err := pftfgen.GenerateSchema(context.Background(), pftfgen.GenerateSchemaOptions{ProviderInfo: i, XInMemoryDocs: true})
	if err != nil {
		panic(err)
	}
	must(os.WriteFile(filepath.Join(out, "schema.json"), res.ProviderMetadata.PackageSchema, 0o644))
	must(os.WriteFile(filepath.Join(out, "bridge-metadata.json"), (*metadata.Data)(i.MetadataInfo.Data).MarshalIndent(), 0o644))
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
GO
  # Build step 2: the plugin, serving the generated files.
  cat >"$w/cmd/main.go" <<'GO'
package main

import (
	"context"
	_ "embed"

	pftfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"registry-trust.local/pulumi-resource-tls/info"
)

//go:embed schema.json
var schema []byte

//go:embed bridge-metadata.json
var metadata []byte

func main() {
	pftfbridge.Main(context.Background(), "tls", info.Provider(metadata), pftfbridge.ProviderMetadata{PackageSchema: schema})
}
GO
  (cd "$w" && go mod tidy)
  local ld="-X registry-trust.local/pulumi-resource-tls/info.Version=$TLS_PLUGIN_VERSION"
  gobuild "$w" "$w/tfgen-tls" ./gen "$ld"
  "$w/tfgen-tls" "$w/cmd"
  gobuild "$w" "$w/out/pulumi-resource-tls" ./cmd "$ld"
  cp "$w/cmd/schema.json" "$w/out/tls-schema.json"
  echo "tls=$TLS_PLUGIN_VERSION (github.com/hashicorp/terraform-provider-tls $TLS_TF_PROVIDER_VERSION, github.com/pulumi/pulumi-terraform-bridge/v3 $TF_BRIDGE_VERSION)" >"$w/out/VERSION"
}

build_kubernetes() {
  local w="$1" dir gomod goversion
  dir="$(go mod download -json "github.com/pulumi/pulumi-kubernetes/provider/v4@$K8S_PROVIDER_MODULE_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",\?$/\1/p')"
  gomod="$dir/go.mod"
  goversion="$(sed -n 's/^go //p' "$gomod")"
  new_module "$w" pulumi-resource-kubernetes "$goversion"
  # Upstream replaces its Go SDK with ../sdk (the same commit); outside the repo that resolves to the
  # published SDK module the provider requires. Its other replace directives are kept as they are.
  {
    echo
    echo "require github.com/pulumi/pulumi-kubernetes/provider/v4 $K8S_PROVIDER_MODULE_VERSION"
    echo
    sed -n '/^replace (/,/^)/p; /^replace [^(]/p' "$gomod" | { grep -v 'pulumi-kubernetes/sdk/v4 => \.\./sdk' || true; }
  } >>"$w/go.mod"
  # The upstream main embeds schema-embed.json and terraform-mapping-embed.json, which its generate.go
  # writes from schema.json and terraform-mapping.json; those two ARE in the module zip, so our main
  # embeds them directly (the schema's version field is set the same way generate.go does).
  cp "$dir/cmd/pulumi-resource-kubernetes/schema.json" "$dir/cmd/pulumi-resource-kubernetes/terraform-mapping.json" "$w/"
  chmod u+w "$w"/*.json
  cat >"$w/main.go" <<'GO'
package main

import (
	_ "embed"
	"encoding/json"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema.json
var schema []byte

//go:embed terraform-mapping.json
var terraformMapping []byte

func main() {
	var spec map[string]json.RawMessage
	if err := json.Unmarshal(schema, &spec); err != nil {
		panic(err)
	}
	spec["version"], _ = json.Marshal(version.Version)
	versioned, err := json.Marshal(spec)
	if err != nil {
		panic(err)
	}
	provider.Serve("kubernetes", version.Version, versioned, terraformMapping)
}
GO
  (cd "$w" && go mod tidy)
  gobuild "$w" "$w/out/pulumi-resource-kubernetes" . \
    "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_PLUGIN_VERSION"
  echo "kubernetes=$K8S_PLUGIN_VERSION (github.com/pulumi/pulumi-kubernetes/provider/v4 $K8S_PROVIDER_MODULE_VERSION)" >"$w/out/VERSION"
}

# build_one NAME BINARY: builds into a scratch dir under the cache and moves the binary into bin/ only
# when complete, so an interrupted build is never taken for a cached one.
failed=()
# stamp NAME: what a cached binary must have been built from beyond the pins (our own source's hash).
stamp() {
  case "$1" in
    nodejs) sha256sum <"$langhost_src" | cut -c1-12 ;;
    command) { echo "$COMMAND_PLUGIN_VERSION"; cat "$command_src"/*.go; } | sha256sum | cut -c1-12 ;;
  esac
}
# plugin_version NAME: the version a resource plugin is installed under, the one its SDK asks the engine
# for (the engine takes an installed plugin only at exactly that version); empty for the CLI and the host.
plugin_version() {
  case "$1" in
    tls) echo "$TLS_PLUGIN_VERSION" ;;
    kubernetes) echo "$K8S_PLUGIN_VERSION" ;;
    command) echo "$COMMAND_PLUGIN_VERSION" ;;
  esac
}
# target NAME BINARY: where the finished binary lives.
target() {
  local v
  v="$(plugin_version "$1")"
  if [[ -n "$v" ]]; then echo "$plugins/resource-$1-v$v/$2"; else echo "$bin/$2"; fi
}
# install_plugin NAME BINARY FILE: `pulumi plugin install` with the CLI just built, into $home.
install_plugin() {
  if [[ ! -x "$bin/pulumi" ]]; then
    echo "pulumi-binaries: cannot install $2: no CLI in $bin to run 'pulumi plugin install' (add cli to PULUMI_BINARIES)" >&2
    return 1
  fi
  PULUMI_HOME="$home" PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true \
    "$bin/pulumi" plugin install resource "$1" "$(plugin_version "$1")" --file "$3" --reinstall --non-interactive
}
build_one() {
  local name="$1" binary="$2" w t0 dest
  dest="$(target "$name" "$binary")"
  if [[ -x "$dest" && "$(cat "$root/$name.stamp" 2>/dev/null)" == "$(stamp "$name")" ]]; then
    log "reusing $dest ($(sed -n "s/^$name=//p" "$root/VERSIONS" 2>/dev/null))"
    return 0
  fi
  t0=$(date +%s)
  w="$(mktemp -d "$CACHE/pulumi/.build-$name-XXXXXX")"
  log "building $binary (cold: many minutes on 2 cores)"
  # set -e is ignored inside `if`, `||` and `&&`, so the subshell runs as a plain command.
  local rc
  set +e
  ( set -e; "build_$name" "$w" ) >"$w.log" 2>&1
  rc=$?
  set -e
  if (( rc == 0 )) && [[ -n "$(plugin_version "$name")" ]]; then
    install_plugin "$name" "$binary" "$w/out/$binary" >>"$w.log" 2>&1 || rc=$?
  fi
  if (( rc == 0 )); then
    mkdir -p "$bin"
    [[ -f "$w/out/tls-schema.json" ]] && mv "$w/out/tls-schema.json" "$root/"
    cp "$w/go.mod" "$root/$name.go.mod"; cp "$w/go.sum" "$root/$name.go.sum"
    touch "$root/VERSIONS"
    { grep -v "^$name=" "$root/VERSIONS" || true; cat "$w/out/VERSION"; } >"$root/VERSIONS.new"
    mv "$root/VERSIONS.new" "$root/VERSIONS"
    [[ -n "$(plugin_version "$name")" ]] || mv "$w/out/$binary" "$bin/$binary"
    stamp "$name" >"$root/$name.stamp"
    log "built $binary in $(( $(date +%s) - t0 ))s"
    rm -rf "$w" "$w.log"
  else
    echo "pulumi-binaries: building $binary FAILED after $(( $(date +%s) - t0 ))s; last lines of $w.log:" >&2
    tail -n 25 "$w.log" >&2
    rm -rf "$w"
    failed+=("$binary")
  fi
}

mkdir -p "$root"
for name in $wanted; do
  case "$name" in
    cli) build_one cli pulumi ;;
    nodejs) build_one nodejs pulumi-language-nodejs ;;
    tls) build_one tls pulumi-resource-tls ;;
    kubernetes) build_one kubernetes pulumi-resource-kubernetes ;;
    command) build_one command pulumi-resource-command ;;
    *) echo "pulumi-binaries: unknown binary '$name' in PULUMI_BINARIES (cli, nodejs, tls, kubernetes, command)" >&2; exit 2 ;;
  esac
done
# Dynamic providers (ControlPlaneTrust, WorkerTrust) run in the engine's `pulumi-nodejs` plugin, a launcher
# that upstream ships next to `pulumi`: ours is standins/pulumi-resource-pulumi-nodejs.
mkdir -p "$bin"
cmp -s "$standins/pulumi-resource-pulumi-nodejs" "$bin/pulumi-resource-pulumi-nodejs" || install -m 0755 "$standins/pulumi-resource-pulumi-nodejs" "$bin/"
printf 'go=%s\n' "$(go env GOVERSION)" >"$root/GO"
ln -sfn "$key" "$CACHE/pulumi/current"
log "versions: $(tr '\n' ';' <"$root/VERSIONS" 2>/dev/null)"
log "bin: $bin ($(elapsed))"
if (( ${#failed[@]} )); then
  echo "pulumi-binaries: failed: ${failed[*]}" >&2
  exit 1
fi
