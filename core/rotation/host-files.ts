import { createHash } from "node:crypto";
import { SAFE_WORD, pathProblem } from "../config/targets";

/*
 * The serving switch for a registry that reads its certificate from files (docker-registry, nginx,
 * harbor's proxy): a POSIX script sent on stdin, because it carries the private key. The command line
 * names only the user's shell and the certificate's hash, so neither `ps` on the host nor the Pulumi
 * diff ever shows key material. Paths and reload words are re-checked here although the config
 * validation already did: this module is the last place before a root shell.
 */

export interface HostFilesSpec {
  readonly certPath: string;
  readonly keyPath: string;
  /** argv; every word is single-quoted, so nothing in it is expanded. */
  readonly reloadCommand: readonly string[];
}

const quote = (s: string) => `'${s}'`;

/** Throws naming every path or reload word that is not plain; the config validation says the same earlier. */
export function checkHostFilesSpec(spec: HostFilesSpec): void {
  for (const [field, p] of [["certPath", spec.certPath], ["keyPath", spec.keyPath]] as const) {
    const problem = pathProblem(p);
    if (problem) throw new Error(`hostFiles: ${field} ${JSON.stringify(p)} ${problem}: give the file's absolute, normalized path`);
  }
  if (spec.reloadCommand.length === 0) throw new Error("hostFiles: the reload command is empty");
  const words = spec.reloadCommand.filter((w) => !SAFE_WORD.test(w));
  if (words.length > 0) throw new Error(`hostFiles: reload command words with shell syntax: ${words.map((w) => JSON.stringify(w)).join(", ")}`);
}

/** sha256 hex of the chain as installed: it names the switch on the command line. */
export function certHash(chainPem: string): string {
  return createHash("sha256").update(chainPem).digest("hex");
}

/**
 * The command line: the shell that reads the script from stdin, as root or through `sudo -n`. The hash
 * makes a new certificate a visible change of the command in `pulumi preview`.
 */
export function hostFilesCommandLine(user: string, chainPem: string): string {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) throw new Error(`hostFiles: "${user}" is not a Unix user name`);
  return `${user === "root" ? "sh -s" : "sudo -n sh -s"} # registry-trust serving certificate sha256:${certHash(chainPem)}`;
}

/**
 * Writes chain and key next to their targets under temporary names (same directory, so the renames are
 * atomic and a reader never sees a half-written file), syncs, renames them over the old files and runs the
 * reload command, which is when the registry reads the pair. A failure before the renames leaves the old
 * pair in place; any failure exits non-zero and a rerun writes everything again.
 */
export function hostFilesScript(spec: HostFilesSpec, chainPem: string, keyPem: string): string {
  checkHostFilesSpec(spec);
  if (!/-----BEGIN CERTIFICATE-----/.test(chainPem)) throw new Error("hostFiles: the serving chain is not PEM");
  if (!/-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----/.test(keyPem)) throw new Error("hostFiles: the serving key is not a PEM private key");
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  return [
    "#!/bin/sh",
    "set -eu",
    "umask 077",
    `cert=${quote(spec.certPath)}`,
    `key=${quote(spec.keyPath)}`,
    'tmp_cert=""; tmp_key=""',
    'cleanup() { rm -f "$tmp_cert" "$tmp_key"; }',
    "trap cleanup EXIT",
    // umask 077 keeps the temporary key private from its first byte, but directories made under it would be
    // 0700 and a registry that does not run as root could not reach its certificate: make them 0755.
    '(umask 022 && mkdir -p "$(dirname "$cert")" "$(dirname "$key")")',
    'tmp_cert=$(mktemp "$cert.registry-trust.XXXXXX")',
    'tmp_key=$(mktemp "$key.registry-trust.XXXXXX")',
    `printf '%s' ${quote(b64(chainPem))} | base64 -d > "$tmp_cert"`,
    `printf '%s' ${quote(b64(keyPem))} | base64 -d > "$tmp_key"`,
    'chmod 0644 "$tmp_cert"',
    'chmod 0600 "$tmp_key"',
    // Keep the owner the registry already reads its files as (it may not run as root).
    'if [ -e "$key" ]; then chown --reference="$key" "$tmp_key" 2>/dev/null || true; fi',
    'if [ -e "$cert" ]; then chown --reference="$cert" "$tmp_cert" 2>/dev/null || true; fi',
    'sync "$tmp_cert" "$tmp_key" 2>/dev/null || sync',
    'mv -f "$tmp_key" "$key"',
    'mv -f "$tmp_cert" "$cert"',
    'tmp_cert=""; tmp_key=""',
    spec.reloadCommand.map(quote).join(" "),
    `echo "registry-trust: serving certificate installed at $cert and reloaded"`,
    "",
  ].join("\n");
}
