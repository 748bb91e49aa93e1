import { OsFamily } from "../config/model";

/*
 * Where each OS family keeps its CA trust store: the one table the node script renderer and the
 * KubeadmControlPlane commands both use. Sources: design.md §4 and each distribution's ca-certificates.
 */

export type StoreFamily = "debian" | "rhel" | "suse" | "alpine" | "flatcar" | "photon";

export interface OsStore {
  /** Directory of local anchors the update tool reads. */
  readonly anchorsDir: string;
  /** Extension the update tool picks up in anchorsDir. */
  readonly ext: "crt" | "pem";
  /** The bundle the tool produces, which curl and OpenSSL read by default. */
  readonly bundle: string;
  /** Everything the tool rewrites (restored byte for byte on rollback). */
  readonly generated: readonly string[];
  /** The update command. */
  readonly update: string;
}

export const OS_STORES: Readonly<Record<StoreFamily, OsStore>> = {
  debian: { anchorsDir: "/usr/local/share/ca-certificates", ext: "crt", bundle: "/etc/ssl/certs/ca-certificates.crt", generated: ["/etc/ssl/certs"], update: "update-ca-certificates" },
  alpine: { anchorsDir: "/usr/local/share/ca-certificates", ext: "crt", bundle: "/etc/ssl/certs/ca-certificates.crt", generated: ["/etc/ssl/certs"], update: "update-ca-certificates" },
  rhel: { anchorsDir: "/etc/pki/ca-trust/source/anchors", ext: "crt", bundle: "/etc/pki/tls/certs/ca-bundle.crt", generated: ["/etc/pki/ca-trust/extracted"], update: "update-ca-trust extract" },
  suse: { anchorsDir: "/etc/pki/trust/anchors", ext: "crt", bundle: "/etc/ssl/ca-bundle.pem", generated: ["/var/lib/ca-certificates"], update: "update-ca-certificates" },
  flatcar: { anchorsDir: "/etc/ssl/certs", ext: "pem", bundle: "/etc/ssl/certs/ca-certificates.crt", generated: ["/etc/ssl/certs"], update: "update-ca-certificates" },
  photon: { anchorsDir: "/etc/ssl/certs", ext: "pem", bundle: "/etc/pki/tls/certs/ca-bundle.crt", generated: ["/etc/ssl/certs", "/etc/pki/tls/certs"], update: "rehash_ca_certificates.sh" },
};

/** The store family of a configured OS; "auto" stays undecided until the node is looked at. */
export function storeFamily(os: OsFamily): StoreFamily | "auto" {
  switch (os) {
    case "ubuntu": return "debian";
    case "fedora": case "rocky": case "amazon": return "rhel";
    default: return os;
  }
}

/** Shell function rt_store_layout: sets RT_STORE_DIR/EXT/BUNDLE/OUT/UPDATE for $RT_OS from the table. */
export function storeLayoutShell(): string {
  const cases = Object.entries(OS_STORES).map(([family, s]) =>
    `    ${family}) RT_STORE_DIR='${s.anchorsDir}' RT_STORE_EXT='${s.ext}' RT_STORE_BUNDLE='${s.bundle}' RT_STORE_OUT='${s.generated.join(" ")}' RT_STORE_UPDATE='${s.update}' ;;`);
  return [
    "# shellcheck disable=SC2034 # RT_STORE_BUNDLE is read by install bodies only",
    "rt_store_layout() { # generated from core/node/os-stores.ts",
    '  case "$RT_OS" in',
    ...cases,
    '    *) rt_die "no trust store layout for OS family $RT_OS" ;;',
    "  esac",
    "}",
  ].join("\n");
}
