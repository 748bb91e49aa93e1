import { posix } from "node:path";
import { parse as parseToml } from "smol-toml";
import { parse as parseYaml } from "yaml";
import { Endpoint, endpointKey, parseEndpoint } from "../endpoint";
import { CertInfo } from "../x509/cert";
import { parsePemCertificates } from "../x509/pem";
import { DumpFile, DumpProcess, NodeDump } from "./dump";
import { CERTS_DIRS, GO_CERT_DIRS, GO_CERT_FILES, OS_ANCHOR_DIRS } from "./probe-script";

/*
 * Trust as each part of the node sees it, rebuilt from the probe's dump: Go's system pool (what
 * containerd, dockerd, CRI-O and k3s load once at start), the OS update tool's anchors, and per runtime
 * the CAs it adds for this registry and where it turned verification off. Semantics follow containerd's
 * docs/hosts.md, Docker's and containers-certs.d(5), and k3s's registries.yaml (design.md §4).
 */

export type RuntimeName = "containerd" | "docker" | "crio" | "k3s" | "rke2";

/** Certificates read from one file on the node. */
export interface CertFile {
  readonly path: string;
  readonly mtime: number;
  readonly certs: readonly CertInfo[];
}

/** A certs.d/<name> directory and the CAs it would contribute. */
export interface DirTrust {
  readonly dir: string;
  readonly cas: readonly CertFile[];
}

/** A place verification is turned off. */
export interface Insecure {
  /** File and setting, e.g. '/etc/containerd/certs.d/r:5000/hosts.toml: skip_verify = true'. */
  readonly where: string;
  /** It applies to the registry being diagnosed (so pulls work whatever the certificate). */
  readonly appliesToRegistry: boolean;
}

export interface RuntimeView {
  readonly runtime: RuntimeName;
  readonly binary?: string;
  readonly version?: string;
  readonly processes: readonly DumpProcess[];
  /** Files the runtime reads CAs for this registry from, on top of the system pool. */
  readonly caFiles: readonly CertFile[];
  readonly insecure: readonly Insecure[];
  /** certs.d directories named after the host without the port (ignored for a registry not on 443). */
  readonly portless: readonly DirTrust[];
  /** Trust for the registry in a certs.d directory the runtime does not read (containerd without config_path). */
  readonly ignored: readonly DirTrust[];
  /** Where the runtime looks (certs.d roots, config files), for the report. */
  readonly locations: readonly string[];
  /** containerd's config_path, as configured ("" = not set). */
  readonly configPath?: string;
  /** Why containerd reads no certs.d although config_path names one (containerd 2.x), for the report. */
  readonly configPathEffect?: string;
  /** Settings read only at start, changed after the runtime started (k3s/RKE2 registries.yaml). */
  readonly changedSinceStart: readonly string[];
  readonly notes: readonly string[];
}

export interface OsView {
  /** Go's system pool: the bundle file it loads and the files directly in its directories. */
  readonly pool: readonly CertFile[];
  /** The OS update tool's input: CAs waiting there are in the pool only after the tool ran. */
  readonly anchors: readonly CertFile[];
  readonly skipped: number;
}

export interface TrustViews {
  readonly os: OsView;
  readonly runtimes: readonly RuntimeView[];
}

// The OS bundle alone holds ~150 certificates and is looked at from several views: parse each file once.
const parsed = new WeakMap<DumpFile, CertFile | undefined>();

function certFile(f: DumpFile): CertFile | undefined {
  if (!f.content) return undefined;
  if (!parsed.has(f)) {
    const certs = parsePemCertificates(f.content.toString("utf8"), f.path).certs;
    parsed.set(f, certs.length ? { path: f.path, mtime: f.mtime, certs } : undefined);
  }
  return parsed.get(f);
}

const under = (dir: string, path: string, depth = Infinity) => path.startsWith(`${dir}/`) && path.slice(dir.length + 1).split("/").length <= depth;

function filesUnder(dump: NodeDump, dir: string, depth = Infinity): DumpFile[] {
  return [...dump.files.values()].filter((f) => under(dir, f.path, depth));
}

function exists(dump: NodeDump, path: string): boolean {
  return dump.dirs.has(path) || dump.files.has(path) || [...dump.files.keys()].some((p) => under(path, p));
}

function text(dump: NodeDump, path: string): string | undefined {
  return dump.files.get(path)?.content?.toString("utf8");
}

type Table = Record<string, unknown>;
const isTable = (v: unknown): v is Table => typeof v === "object" && v !== null && !Array.isArray(v);
const get = (t: unknown, ...keys: string[]): unknown => keys.reduce<unknown>((o, k) => (isTable(o) ? o[k] : undefined), t);

function hostOfUrl(url: string): string | undefined {
  try {
    const u = new URL(url.includes("://") ? url : `https://${url}`);
    return endpointKey(parseEndpoint(u.host, u.protocol === "http:" ? 80 : 443));
  } catch {
    return undefined;
  }
}

function caList(v: unknown): string[] {
  if (typeof v === "string") return [v];
  if (Array.isArray(v)) return v.flatMap(caList);
  return [];
}

export function osView(dump: NodeDump): OsView {
  const pool: CertFile[] = [];
  const goFile = GO_CERT_FILES.find((f) => f === dump.goFile);
  const add = (f: DumpFile | undefined) => {
    const c = f && certFile(f);
    if (c) pool.push(c);
  };
  if (goFile) add(dump.files.get(goFile));
  for (const d of GO_CERT_DIRS) for (const f of filesUnder(dump, d, 1)) if (f.path !== goFile) add(f);
  const anchors = OS_ANCHOR_DIRS.flatMap((d) => filesUnder(dump, d)).map(certFile).filter((c): c is CertFile => !!c);
  return { pool, anchors, skipped: GO_CERT_DIRS.reduce((n, d) => n + (dump.skipped.get(d) ?? 0), 0) };
}

function readCas(dump: NodeDump, paths: readonly string[], notes: string[]): CertFile[] {
  const out: CertFile[] = [];
  for (const p of paths) {
    const f = dump.files.get(p);
    const c = f && certFile(f);
    if (c) out.push(c);
    else notes.push(f ? `${p} holds no readable certificate` : dump.unreadable.includes(p) ? `${p} is not readable by the doctor's ssh user` : `${p} is named as a CA file but does not exist`);
  }
  return out;
}

/** A certs.d/<dir> directory in the Docker/CRI-O layout (and containerd's fallback without hosts.toml): *.crt are CAs. */
function legacyDirCas(dump: NodeDump, dir: string): CertFile[] {
  return filesUnder(dump, dir, 1).filter((f) => /\.crt$/.test(f.path)).map(certFile).filter((c): c is CertFile => !!c);
}

interface HostDir {
  readonly cas: CertFile[];
  readonly insecure: Insecure[];
}

/** containerd's certs.d/<dir>: hosts.toml when present, else the Docker layout. */
function containerdHostDir(dump: NodeDump, dir: string, key: string, notes: string[]): HostDir {
  const hostsPath = `${dir}/hosts.toml`;
  const raw = text(dump, hostsPath);
  if (raw === undefined) return { cas: legacyDirCas(dump, dir), insecure: [] };
  let doc: Table;
  try {
    doc = parseToml(raw) as Table;
  } catch (e) {
    notes.push(`${hostsPath} is not valid TOML (${(e as Error).message.split("\n")[0]}): containerd fails every pull from ${key}`);
    return { cas: [], insecure: [] };
  }
  const resolve = (p: string) => (posix.isAbsolute(p) ? p : posix.join(dir, p));
  const caPaths: string[] = [];
  const insecure: Insecure[] = [];
  const server = typeof doc.server === "string" ? hostOfUrl(doc.server) : key;
  if (server === key) caPaths.push(...caList(doc.ca).map(resolve));
  if (doc.skip_verify === true) insecure.push({ where: `${hostsPath}: skip_verify = true (server ${doc.server ?? key})`, appliesToRegistry: server === key });
  for (const [url, entry] of Object.entries(isTable(doc.host) ? doc.host : {})) {
    const mine = hostOfUrl(url) === key;
    if (mine) caPaths.push(...caList(get(entry, "ca")).map(resolve));
    if (get(entry, "skip_verify") === true) insecure.push({ where: `${hostsPath}: [host."${url}"] skip_verify = true`, appliesToRegistry: mine });
  }
  return { cas: readCas(dump, caPaths, notes), insecure };
}

/** containerd 2.x's built-in config_path (plugins/cri/images/plugin.go, Linux), used when the configured one is empty. */
export const CONTAINERD2_DEFAULT_CONFIG_PATH = "/etc/containerd/certs.d:/etc/docker/certs.d";

/** "containerd github.com/containerd/containerd v1.7.2 …" or a distribution's "… 1.6.20~ds1 …" → [1, 7]. */
function containerdVersion(version: string | undefined): [number, number] | undefined {
  const m = /\sv?(\d+)\.(\d+)/.exec(version ?? "");
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/**
 * The CRI image plugin's settings as containerd 2.x sees them: its own table, or what it migrates from a
 * version 2 file's `io.containerd.grpc.v1.cri` (migrateConfig in plugins/cri/images/plugin.go, v2.4.2: a
 * few top-level keys, and snapshotter/disable_snapshot_annotations/discard_unpacked_layers from its
 * `containerd` table only when that table has `runtimes`).
 */
function criImageSettings(cfg: Table): Table {
  const own = get(cfg, "plugins", "io.containerd.cri.v1.images");
  const v2 = get(cfg, "plugins", "io.containerd.grpc.v1.cri");
  const out: Table = {};
  if (isTable(v2)) {
    for (const k of ["registry", "max_concurrent_downloads", "image_pull_with_sync_fs"]) if (k in v2) out[k] = v2[k];
    const ctd = v2.containerd;
    if (isTable(ctd) && "runtimes" in ctd) for (const k of ["disable_snapshot_annotations", "discard_unpacked_layers"]) if (k in ctd) out[k] = ctd[k];
  }
  return isTable(own) ? { ...out, ...own } : out;
}

/**
 * Whether containerd ≥ 2.1's CRI pulls through its transfer service rather than the local client: the
 * default, unless use_local_image_pull is set or a setting the transfer service lacks forces the local
 * client (CheckLocalImagePullConfigs in internal/cri/config/config.go, v2.4.2). `images` is
 * criImageSettings; absent keys take DefaultImageConfig's values (the ones `containerd config default` prints).
 */
function pullsThroughTransfer(images: unknown, registry: unknown): boolean {
  const nonEmpty = (k: string) => {
    const t = get(registry, k);
    return isTable(t) && Object.keys(t).length > 0;
  };
  const v = (k: string) => get(images, k);
  const local =
    v("use_local_image_pull") === true ||
    v("disable_snapshot_annotations") === false ||
    v("discard_unpacked_layers") === true ||
    nonEmpty("mirrors") ||
    nonEmpty("configs") ||
    nonEmpty("auths") ||
    (v("max_concurrent_downloads") !== undefined && v("max_concurrent_downloads") !== 3) ||
    v("image_pull_with_sync_fs") === true;
  return !local;
}

function containerdView(dump: NodeDump, reg: Endpoint, base: Pick<RuntimeView, "binary" | "processes">): RuntimeView {
  const key = endpointKey(reg);
  const notes: string[] = [];
  const version = dump.versions.get("containerd");
  const [major, minor] = containerdVersion(version) ?? [1, 0];
  const cfgPath = "/etc/containerd/config.toml";
  const raw = text(dump, cfgPath);
  let cfg: Table = {};
  if (raw !== undefined) {
    try {
      cfg = parseToml(raw) as Table;
    } catch (e) {
      notes.push(`${cfgPath} is not valid TOML (${(e as Error).message.split("\n")[0]}): containerd would not start with it`);
    }
  } else {
    notes.push(`${cfgPath} does not exist: containerd runs on its defaults`);
  }
  // containerd 2.x's layout (config version 3 and 4) first; a version 2 file is migrated into it on load.
  const images = get(cfg, "plugins", "io.containerd.cri.v1.images") ?? get(cfg, "plugins", "io.containerd.grpc.v1.cri") ?? get(cfg, "plugins", "cri");
  const section = get(images, "registry");
  const configured = get(section, "config_path");
  // containerd 2.x (plugins/cri/images/plugin.go) falls back to its Docker-compatible default when
  // config_path is empty — absent or the `config_path = ''` its own `config default` writes — and no
  // legacy mirrors are set; 1.x reads no certs.d at all then.
  const mirrors = get(section, "mirrors");
  const hasMirrors = isTable(mirrors) && Object.keys(mirrors).length > 0;
  const defaulted = major >= 2 && !configured && !hasMirrors;
  const configPath = typeof configured === "string" && configured ? configured : defaulted ? CONTAINERD2_DEFAULT_CONFIG_PATH : "";
  if (defaulted) notes.push(`config_path is ${configured === "" ? "empty" : "not set"}: containerd ${major}.x reads ${configPath} by default`);
  // containerd 2.1+ hands config_path to its transfer service, which joins it with the host as ONE
  // directory (core/transfer/registry: HostDirFromRoot), so a list — the built-in default included — makes
  // it look in "<a>:<b>/<host:port>" and read no certs.d at all (containerd/containerd#12808, open for 2.4.2).
  const listIgnored = (major > 2 || (major === 2 && minor >= 1)) && configPath.includes(":") && pullsThroughTransfer(criImageSettings(cfg), section);
  const roots = listIgnored ? [configPath] : configPath.split(":").filter(Boolean);
  const configPathEffect = listIgnored
    ? `containerd ${major}.${minor} pulls through its transfer service, which takes config_path "${configPath}"${defaulted ? " (its built-in default)" : ""} as one directory, not a list (containerd/containerd#12808), so it reads no certs.d directory`
    : undefined;
  if (configPathEffect) notes.push(configPathEffect);
  const caFiles: CertFile[] = [];
  const insecure: Insecure[] = [];
  const portless: DirTrust[] = [];
  const ignored: DirTrust[] = [];

  // Every hosts.toml on the node is looked at for skip_verify: a MITM hole whichever registry it serves.
  for (const root of new Set([...roots, CERTS_DIRS.containerd])) {
    for (const f of filesUnder(dump, root, 2).filter((x) => x.path.endsWith("/hosts.toml"))) {
      const dir = posix.dirname(f.path);
      if (posix.basename(dir) !== key) insecure.push(...containerdHostDir(dump, dir, posix.basename(dir), notes).insecure.map((i) => ({ ...i, appliesToRegistry: false })));
    }
  }
  const found = roots.find((r) => exists(dump, `${r}/${key}`));
  if (found) {
    const h = containerdHostDir(dump, `${found}/${key}`, key, notes);
    caFiles.push(...h.cas);
    insecure.push(...h.insecure);
  } else {
    if (reg.port !== 443) {
      for (const r of roots) if (exists(dump, `${r}/${reg.host}`)) portless.push({ dir: `${r}/${reg.host}`, cas: containerdHostDir(dump, `${r}/${reg.host}`, key, notes).cas });
    }
    const unreadRoots = new Set([CERTS_DIRS.containerd, ...(listIgnored ? configPath.split(":").filter(Boolean) : [])]);
    for (const r of unreadRoots) {
      const unread = `${r}/${key}`;
      if (!roots.includes(r) && exists(dump, unread)) ignored.push({ dir: unread, cas: containerdHostDir(dump, unread, key, notes).cas });
    }
    if (!configPath) {
      // config_path unset: containerd 1.x's deprecated registry.configs."<host>".tls still applies.
      const tls = get(section, "configs", key, "tls");
      const ca = get(tls, "ca_file");
      if (typeof ca === "string") caFiles.push(...readCas(dump, [ca], notes));
      if (get(tls, "insecure_skip_verify") === true) insecure.push({ where: `${cfgPath}: registry.configs."${key}".tls.insecure_skip_verify = true`, appliesToRegistry: true });
    }
  }
  return {
    runtime: "containerd",
    ...base,
    version,
    caFiles,
    insecure,
    portless,
    ignored,
    locations: [cfgPath, ...roots.map((r) => `${r}/${key}/`)],
    configPath: typeof configured === "string" ? configured : "",
    configPathEffect,
    changedSinceStart: [],
    notes,
  };
}

function certsDirView(runtime: "docker" | "crio", dump: NodeDump, reg: Endpoint, base: Pick<RuntimeView, "binary" | "processes">): RuntimeView {
  const key = endpointKey(reg);
  const root = CERTS_DIRS[runtime];
  const notes: string[] = [];
  const dir = `${root}/${key}`;
  const portless = reg.port !== 443 && !exists(dump, dir) && exists(dump, `${root}/${reg.host}`) ? [{ dir: `${root}/${reg.host}`, cas: legacyDirCas(dump, `${root}/${reg.host}`) }] : [];
  const insecure: Insecure[] = [];
  if (runtime === "docker") {
    const raw = text(dump, "/etc/docker/daemon.json");
    if (raw !== undefined) {
      try {
        const regs = (JSON.parse(raw) as Table)["insecure-registries"];
        for (const r of Array.isArray(regs) ? regs : []) insecure.push({ where: `/etc/docker/daemon.json: insecure-registries contains "${String(r)}"`, appliesToRegistry: String(r) === key });
      } catch (e) {
        notes.push(`/etc/docker/daemon.json is not valid JSON (${(e as Error).message}): dockerd would not start with it`);
      }
    }
  } else {
    for (const f of [...dump.files.values()].filter((x) => x.path === "/etc/containers/registries.conf" || /^\/etc\/containers\/registries\.conf\.d\/.*\.conf$/.test(x.path))) {
      try {
        const doc = parseToml(f.content?.toString("utf8") ?? "") as Table;
        for (const r of Array.isArray(doc.registry) ? doc.registry : []) {
          if (get(r, "insecure") === true) {
            const loc = String(get(r, "location") ?? get(r, "prefix") ?? "?");
            insecure.push({ where: `${f.path}: [[registry]] location "${loc}" insecure = true`, appliesToRegistry: loc === key });
          }
        }
      } catch (e) {
        notes.push(`${f.path} is not valid TOML (${(e as Error).message.split("\n")[0]})`);
      }
    }
  }
  return {
    runtime,
    ...base,
    caFiles: legacyDirCas(dump, dir),
    insecure,
    portless,
    ignored: [],
    locations: [`${dir}/`],
    changedSinceStart: [],
    notes,
  };
}

function rancherView(runtime: "k3s" | "rke2", dump: NodeDump, reg: Endpoint, base: Pick<RuntimeView, "binary" | "processes">): RuntimeView {
  const key = endpointKey(reg);
  const path = `/etc/rancher/${runtime}/registries.yaml`;
  const notes: string[] = [];
  const caFiles: CertFile[] = [];
  const insecure: Insecure[] = [];
  const changedSinceStart: string[] = [];
  const f = dump.files.get(path);
  if (f?.content) {
    try {
      const doc = parseYaml(f.content.toString("utf8")) as unknown;
      for (const [name, entry] of Object.entries(isTable(get(doc, "configs")) ? (get(doc, "configs") as Table) : {})) {
        const mine = name === key;
        const ca = get(entry, "tls", "ca_file");
        if (mine && typeof ca === "string") caFiles.push(...readCas(dump, [ca], notes));
        if (get(entry, "tls", "insecure_skip_verify") === true) insecure.push({ where: `${path}: configs."${name}".tls.insecure_skip_verify: true`, appliesToRegistry: mine });
      }
    } catch (e) {
      notes.push(`${path} is not valid YAML (${(e as Error).message.split("\n")[0]}): ${runtime} would not start with it`);
    }
    const started = base.processes.map((p) => p.startedAt.getTime() / 1000);
    if (started.length && f.mtime > Math.max(...started)) changedSinceStart.push(`${path} (modified ${new Date(f.mtime * 1000).toISOString()}, ${runtime} started ${new Date(Math.max(...started) * 1000).toISOString()})`);
  }
  return { runtime, ...base, caFiles, insecure, portless: [], ignored: [], locations: [path], changedSinceStart, notes };
}

const PROCESS_OF: Record<RuntimeName, readonly string[]> = {
  containerd: ["containerd"],
  docker: ["dockerd"],
  crio: ["crio"],
  k3s: ["k3s", "k3s-server", "k3s-agent"],
  rke2: ["rke2"],
};
const BINARY_OF: Record<RuntimeName, string> = { containerd: "containerd", docker: "dockerd", crio: "crio", k3s: "k3s", rke2: "rke2" };

/** Rebuilds every trust view of the node for one registry. */
export function trustViews(dump: NodeDump, registry: Endpoint): TrustViews {
  const runtimes: RuntimeView[] = [];
  for (const runtime of Object.keys(PROCESS_OF) as RuntimeName[]) {
    const base = { binary: dump.commands.get(BINARY_OF[runtime]), processes: dump.processes.filter((p) => PROCESS_OF[runtime].includes(p.name)) };
    if (!base.binary && base.processes.length === 0) continue;
    switch (runtime) {
      case "containerd":
        runtimes.push(containerdView(dump, registry, base));
        break;
      case "docker":
      case "crio":
        runtimes.push(certsDirView(runtime, dump, registry, base));
        break;
      case "k3s":
      case "rke2":
        runtimes.push(rancherView(runtime, dump, registry, base));
        break;
    }
  }
  return { os: osView(dump), runtimes };
}
