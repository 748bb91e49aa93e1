import { posix } from "node:path";
import { endpointKey } from "../endpoint";
import { CertInfo, CertSummary, summarizeCert } from "../x509/cert";
import { parsePemCertificates } from "../x509/pem";
import { Problem } from "../x509/problems";
import { Verdict, verifyServing } from "../x509/verify";
import { NodeDump } from "./dump";
import { Finding, FindingCode, FindingSeverity, pullConfirms, rankFindings } from "./findings";
import { CERTS_DIRS } from "./probe-script";
import { CertFile, RuntimeName, RuntimeView, TrustViews, trustViews } from "./stores";
import { DoctorTarget, nodeLabel } from "./target";

/*
 * The judgement half of doctor: from the probe's dump and the served chain, which trust each part of the
 * node has, whether it verifies the chain (core/x509, Go-faithful, at the node's clock), and which cause
 * explains a failure, most likely first, each with its fix.
 */

export interface ServedChain {
  readonly certs: readonly CertInfo[];
  /** "node": openssl on the node; "doctor-host": fetched from where doctor runs (the node had no openssl). */
  readonly from: "node" | "doctor-host";
}

export interface DoctorInput {
  readonly target: DoctorTarget;
  readonly dump: NodeDump;
  readonly served?: ServedChain;
  /** Why no chain could be fetched. */
  readonly servedError?: string;
  /** The doctor host's clock when the probe returned, to spot a node clock that is off. */
  readonly localNow: Date;
}


export interface TrustLocation {
  /**
   * os-pool: what Go loads at start; os-anchor: the OS update tool's input; runtime: a CA file a detected
   * runtime reads for this registry; runtime-ignored / runtime-portless: trust for it the runtime does not
   * read; certs.d: anything else in a containerd, Docker or CRI-O certs.d tree; registries.yaml: k3s/RKE2.
   */
  readonly kind: "os-pool" | "os-anchor" | "runtime" | "runtime-ignored" | "runtime-portless" | "certs.d" | "registries.yaml";
  /** The runtime whose layout it is. */
  readonly runtime?: RuntimeName;
  readonly path: string;
  readonly modified: string;
  /** Certificates in it (0 for configuration files). */
  readonly count: number;
  /** It holds a private key, which doctor never reads. */
  readonly privateKey?: boolean;
  /** Listed when the file holds at most 20 (a distribution bundle is only counted). */
  readonly certificates?: readonly CertSummary[];
}

export interface StoreVerdict {
  /** "os" (Go's system pool) or a runtime name (system pool + what it adds for this registry). */
  readonly store: string;
  readonly trusted: boolean;
  readonly problems: readonly string[];
}

export interface RuntimeSummary {
  readonly name: RuntimeName;
  readonly binary?: string;
  readonly version?: string;
  readonly pids: readonly number[];
  readonly startedAt?: string;
  readonly configPath?: string;
  readonly looksAt: readonly string[];
  readonly notes: readonly string[];
}

/** The --json document; fields are only ever added. */
export interface DoctorReport {
  readonly version: 1;
  readonly node: string;
  readonly registry: string;
  readonly image?: string;
  readonly healthy: boolean;
  readonly nodeTime: string;
  readonly os: { readonly id?: string; readonly name?: string };
  readonly runtimes: readonly RuntimeSummary[];
  readonly chain: { readonly from?: string; readonly error?: string; readonly certificates: readonly CertSummary[] };
  readonly stores: readonly StoreVerdict[];
  readonly trustLocations: readonly TrustLocation[];
  readonly pull?: { readonly image: string; readonly ok: boolean; readonly output: string };
  readonly findings: readonly Finding[];
}

/** Runtimes crictl talks to (its default endpoints), in the order a CRI node would have them. */
const CRI_RUNTIMES: readonly RuntimeName[] = ["containerd", "crio", "k3s", "rke2"];
const CLOCK_SKEW_SECONDS = 300;
/** Causes that are about which CA a runtime has (as opposed to the served chain itself). */
const TRUST_CAUSES: readonly FindingCode[] = ["UNKNOWN_AUTHORITY", "CERTS_DIR_WITHOUT_PORT", "CONFIG_PATH_NOT_SET", "OS_STORE_NOT_REBUILT"];


/** The certificates in `openssl s_client -showcerts` output, in the order served. */
export function chainFromSClient(output: string): CertInfo[] {
  return parsePemCertificates(output, "served").certs.map((c, i) => ({ ...c, source: `served#${i}` }));
}

function osRelease(dump: NodeDump): { id?: string; name?: string } {
  const raw = dump.files.get("/etc/os-release")?.content?.toString("utf8") ?? "";
  const field = (k: string) => /^(\w+)=("?)(.*)\2$/m.exec(raw.split("\n").find((l) => l.startsWith(`${k}=`)) ?? "")?.[3];
  return { id: field("ID"), name: field("PRETTY_NAME") };
}

const certsOf = (files: readonly CertFile[]) => files.flatMap((f) => f.certs);
const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

/** Diagnoses one node for one registry. */
export function diagnose(input: DoctorInput): DoctorReport {
  const { target, dump } = input;
  const reg = target.registry;
  const key = endpointKey(reg);
  const views = trustViews(dump, reg);
  const findings: Finding[] = [];
  const add = (code: FindingCode, severity: FindingSeverity, scope: string, message: string, fix: string, evidence: string[] = []) =>
    findings.push({ code, severity, scope, message, fix, evidence, confirmedByPull: false });

  const skew = (dump.now.getTime() - input.localNow.getTime()) / 1000;
  if (Math.abs(skew) > CLOCK_SKEW_SECONDS) {
    add("NODE_CLOCK_SKEW", "warning", "os", `the node's clock is ${Math.round(Math.abs(skew))} s ${skew > 0 ? "ahead of" : "behind"} this machine's; certificates are checked against the node's clock.`, "Run NTP/chrony on the node (timedatectl set-ntp true).", [`node time ${dump.now.toISOString()}`]);
  }

  const stores: StoreVerdict[] = [];
  const chain = input.served?.certs ?? [];
  if (chain.length === 0) {
    add("REGISTRY_UNREACHABLE", "error", "registry", `no TLS certificate chain could be fetched from ${key}: ${input.servedError ?? "the node's openssl printed none"}.`, `Check from the node that ${reg.host} resolves and ${key} accepts TLS (e.g. openssl s_client -connect ${key}); fix DNS, routing or the registry first.`, input.dump.chain ? [`openssl s_client exit ${input.dump.chain.rc}`] : []);
  } else {
    diagnoseTrust(input, views, chain, stores, add);
  }
  const pull = judgePull(input, views, findings, add);
  const ranked = rankFindings(findings);
  return {
    version: 1,
    node: nodeLabel(target.node),
    registry: key,
    image: target.image,
    healthy: !ranked.some((f) => f.severity === "error" || f.severity === "risk"),
    nodeTime: dump.now.toISOString(),
    os: osRelease(dump),
    runtimes: views.runtimes.map((r) => ({
      name: r.runtime,
      binary: r.binary,
      version: r.version,
      pids: r.processes.map((p) => p.pid),
      startedAt: r.processes.length ? new Date(Math.min(...r.processes.map((p) => p.startedAt.getTime()))).toISOString() : undefined,
      configPath: r.configPath,
      looksAt: r.locations,
      notes: r.notes,
    })),
    chain: { from: input.served?.from, error: chain.length ? undefined : input.servedError, certificates: chain.map(summarizeCert) },
    stores,
    trustLocations: locations(views, dump),
    pull,
    findings: ranked,
  };
}

/** A runtime's view, or the OS store alone when the node has no runtime. */
type Judged = Omit<RuntimeView, "runtime"> & { readonly runtime: RuntimeName | "os" };

type Add = (code: FindingCode, severity: FindingSeverity, scope: string, message: string, fix: string, evidence?: string[]) => void;

function diagnoseTrust(input: DoctorInput, views: TrustViews, chain: readonly CertInfo[], stores: StoreVerdict[], add: Add): void {
  const reg = input.target.registry;
  const key = endpointKey(reg);
  const now = input.dump.now;
  const verify = (bundle: readonly CertInfo[]): Verdict => verifyServing({ bundle, chain, host: reg.host, now });
  const osCerts = certsOf(views.os.pool);
  const osVerdict = verify(osCerts);
  stores.push({ store: "os", trusted: osVerdict.trusted, problems: osVerdict.problems.filter((p) => p.severity === "error").map((p) => p.code) });

  // Problems of the chain itself (validity, names, signatures…) do not depend on the store: reported once.
  const seen = new Set<string>();
  const chainProblem = (p: Problem, store: string) => {
    if (p.code === "UNKNOWN_AUTHORITY") return;
    const id = `${p.code}|${p.cert?.fingerprint256}`;
    if (seen.has(id)) return;
    seen.add(id);
    const served = !p.cert || p.cert.source.startsWith("served");
    const severity: FindingSeverity = p.severity === "error" && p.runtimeRefuses ? "error" : "warning";
    const who = p.cert ? `${served ? "the served certificate" : `the CA in ${p.cert.source}`} "${p.cert.subject}" ` : "";
    add(p.code, severity, served ? "registry" : store, `${who}${p.message}`, p.fix, p.cert ? [`SHA256 ${p.cert.fingerprint256}`] : []);
  };
  osVerdict.problems.forEach((p) => chainProblem(p, "os"));

  // Without a runtime, the OS store alone is judged, as a runtime with nothing of its own would see it.
  const runtimes: Judged[] = views.runtimes.length
    ? [...views.runtimes]
    : [{ runtime: "os", processes: [], caFiles: [], insecure: [], portless: [], ignored: [], locations: [], changedSinceStart: [], notes: [] }];
  if (!views.runtimes.length) {
    add("NO_RUNTIME", "warning", "os", "no container runtime was found (containerd, dockerd, crio, k3s, rke2: neither a binary on PATH nor a running process); only the OS store was judged.", "Run doctor on a Kubernetes node, or check the ssh user's PATH.");
  }

  for (const r of runtimes) {
    const scope = r.runtime;
    const eff = verify([...osCerts, ...certsOf(r.caFiles)]);
    if (views.runtimes.length) stores.push({ store: scope, trusted: eff.trusted, problems: eff.problems.filter((p) => p.severity === "error").map((p) => p.code) });
    eff.problems.forEach((p) => chainProblem(p, scope));

    for (const i of r.insecure) {
      const refuses = eff.problems.filter((p) => p.severity === "error" && p.runtimeRefuses).map((p) => p.code);
      add(
        "INSECURE_SKIP_VERIFY",
        "risk",
        scope,
        i.appliesToRegistry
          ? `${scope} does not verify ${key}'s certificate (${i.where}): pulls work whatever certificate is presented, so anyone on the path can serve images (MITM).${refuses.length ? ` With verification on, pulls would fail: ${refuses.join(", ")}.` : " Verification would succeed: the setting is not even needed."}`
          : `${scope} has certificate verification turned off for another registry (${i.where}): a MITM hole for that registry.`,
        `Remove the setting and install the registry's CA instead (registry-trust render … | ssh NODE sudo sh, or the NodeTrust component).`,
        [i.where],
      );
    }
    const masked = r.insecure.some((i) => i.appliesToRegistry);
    if (masked) continue;
    for (const c of r.changedSinceStart) {
      add("RUNTIME_RESTART_NEEDED", "error", scope, `${scope} reads its registry configuration only at start and ${c}.`, `Restart ${scope} (systemctl restart ${scope}) so that it picks the change up.`, [c]);
    }
    if (eff.problems.some((p) => p.code === "UNKNOWN_AUTHORITY")) {
      explainUnknown(r, views, chain, osCerts, verify, key, add);
    } else if (eff.trusted && r.processes.length > 0 && !verify(certsOf(r.caFiles)).trusted) {
      restartCheck(r, views, chain, osCerts, add);
    }
  }
}

function explainUnknown(r: Judged, views: TrustViews, chain: readonly CertInfo[], osCerts: readonly CertInfo[], verify: (b: readonly CertInfo[]) => Verdict, key: string, add: Add): void {
  const scope = r.runtime;
  let explained = false;
  for (const p of r.portless) {
    const works = p.cas.length > 0 && verify([...osCerts, ...certsOf(p.cas)]).trusted;
    explained ||= works;
    add(
      "CERTS_DIR_WITHOUT_PORT",
      "error",
      scope,
      `${p.dir} is named after the host without the port: ${scope} looks for the directory "${key}" (the registry part of the image reference, port included), so it ignores this one${works ? "; its CA would verify the registry" : ""}.`,
      `Rename it: mv ${p.dir} ${posix.dirname(p.dir)}/${key} (read per pull, no restart; fix a ca path inside hosts.toml that names the old directory).`,
      [p.dir, ...p.cas.map((c) => c.path)],
    );
  }
  for (const g of r.ignored) {
    const works = g.cas.length > 0 && verify([...osCerts, ...certsOf(g.cas)]).trusted;
    explained ||= works;
    add(
      "CONFIG_PATH_NOT_SET",
      "error",
      scope,
      r.configPathEffect
        ? `trust for ${key} is in ${g.dir}, but ${r.configPathEffect}${works ? "; that CA would verify the registry" : ""}.`
        : `trust for ${key} is in ${g.dir}, but containerd's config_path is ${r.configPath ? `"${r.configPath}"` : "not set"} in /etc/containerd/config.toml, so containerd never reads it${works ? "; that CA would verify the registry" : ""}.`,
      `Set config_path = "/etc/containerd/certs.d" (one directory) under [plugins."io.containerd.grpc.v1.cri".registry] (containerd 2.x: [plugins.'io.containerd.cri.v1.images'.registry]) and restart containerd once; hosts.toml is then read per pull.`,
      [g.dir, "/etc/containerd/config.toml"],
    );
  }
  const anchors = certsOf(views.os.anchors);
  if (!explained && anchors.length && verify([...osCerts, ...certsOf(r.caFiles), ...anchors]).trusted) {
    explained = true;
    const which = views.os.anchors.filter((a) => verify([...osCerts, ...a.certs]).trusted).map((a) => a.path);
    add(
      "OS_STORE_NOT_REBUILT",
      "error",
      "os",
      `the registry's CA is waiting in ${which.join(", ")} but is not in the bundle Go loads (${views.os.pool[0]?.path ?? "none"}): the OS update tool has not run since it was added.`,
      `Run update-ca-certificates (Debian/Ubuntu/SUSE/Alpine) or update-ca-trust extract (RHEL family), then restart ${scope === "os" ? "the container runtime" : scope} (it loads the OS store only at start) — or install the CA in ${scope}'s per-registry trust, which needs no restart.`,
      which,
    );
  }
  if (explained) return;
  const looked = [views.os.pool.length ? `the OS store (${views.os.pool.map((f) => f.path).join(", ")})` : "an empty OS store", ...(r.caFiles.length ? r.caFiles.map((f) => f.path) : r.locations.filter((l) => l.endsWith("/")).map((l) => `${l} (absent)`))];
  add(
    "UNKNOWN_AUTHORITY",
    "error",
    scope,
    `${scope === "os" ? "the OS store" : scope} has no CA that issued ${key}'s certificate (issuer "${chain[chain.length - 1].issuer}") in the places it reads (see evidence): x509: certificate signed by unknown authority.`,
    `Install the registry's CA for ${scope === "os" ? "the node" : scope}: \`registry-trust render --os auto --runtime ${scope === "os" ? "containerd" : scope} --registry ${key} --ca-bundle CA.pem | ssh NODE sudo sh\` (or the NodeTrust component); ${scope === "containerd" ? `it writes certs.d/${key}/hosts.toml, read per pull without a restart` : "see docs/doctor.md"}. If the issuer is an intermediate, the registry must serve it too.`,
    looked,
  );
}

/**
 * The runtime trusts the registry only through the OS store, which Go loads once per process: if the
 * file holding the CA is newer than the runtime process, the running runtime has never seen it.
 */
function restartCheck(r: Judged, views: TrustViews, chain: readonly CertInfo[], osCerts: readonly CertInfo[], add: Add): void {
  const anchorFps = new Set(osCerts.filter((c) => chain.some((x) => x.rawIssuer.equals(c.rawSubject) || x.der.equals(c.der))).map((c) => c.fingerprint256));
  const holders = views.os.pool.filter((f) => f.certs.some((c) => anchorFps.has(c.fingerprint256)));
  if (!holders.length) return;
  const since = Math.min(...holders.map((h) => h.mtime));
  const started = Math.min(...r.processes.map((p) => p.startedAt.getTime() / 1000));
  if (since <= started) return;
  add(
    "RUNTIME_RESTART_NEEDED",
    "error",
    r.runtime,
    `the registry's CA is only in the OS store, where it appeared at ${iso(since)} (${holders.map((h) => h.path).join(", ")}), after ${r.runtime} started at ${iso(started)} (PID ${r.processes.map((p) => p.pid).join(", ")}). Go loads the OS store once per process, at its first certificate verification: if ${r.runtime} verified any registry before the CA arrived, it will not trust it until restarted.`,
    `Restart ${r.runtime} (systemctl restart ${r.runtime}); better, install the CA in ${r.runtime}'s per-registry trust${r.runtime === "containerd" ? " (certs.d/<host:port>/hosts.toml, read per pull)" : ""}, so the next CA change needs no restart.`,
    [...holders.map((h) => `${h.path} modified ${iso(h.mtime)}`), ...r.processes.map((p) => `${p.name} PID ${p.pid} started ${p.startedAt.toISOString()}`)],
  );
}

function judgePull(input: DoctorInput, views: TrustViews, findings: Finding[], add: Add): DoctorReport["pull"] {
  const image = input.target.image;
  if (image === undefined) return undefined;
  const pull = input.dump.pull;
  if (!pull) {
    add("NO_CRICTL", "info", "os", "crictl is not installed on the node (or not on the ssh user's PATH): no CRI pull was tried, so the conclusions rest on the files and processes alone.", "Install crictl (cri-tools) to let doctor pull through CRI, the kubelet's path.");
    return undefined;
  }
  const ok = pull.rc === 0;
  const cri = CRI_RUNTIMES.find((r) => views.runtimes.some((v) => v.runtime === r)) ?? "os";
  const concerns = (f: Finding) => f.scope === cri || f.scope === "registry" || f.scope === "os";
  if (ok) {
    // The pull proves the running runtime trusts the registry: the start-time heuristic was wrong, and a
    // missing-trust finding for it describes files, not what the runtime does (trust doctor does not model).
    for (let i = findings.length - 1; i >= 0; i--) {
      const f = findings[i];
      if (f.scope !== cri) continue;
      if (f.code === "RUNTIME_RESTART_NEEDED") findings.splice(i, 1);
      else if (f.severity === "error" && TRUST_CAUSES.includes(f.code)) {
        findings[i] = { ...f, severity: "warning", message: `${f.message} Yet the CRI pull succeeded, so ${cri} trusts the registry through something doctor does not read; fix this before relying on it.` };
      }
    }
  } else {
    let confirmed = 0;
    for (let i = 0; i < findings.length; i++) {
      if (concerns(findings[i]) && pullConfirms(findings[i].code, pull.output)) {
        findings[i] = { ...findings[i], confirmedByPull: true, evidence: [...findings[i].evidence, `crictl pull: ${lastLine(pull.output)}`] };
        confirmed++;
      }
    }
    if (confirmed === 0) {
      add("PULL_FAILED", "error", cri, `crictl pull ${image} failed for a reason not explained above: ${lastLine(pull.output)}`, /x509|certificate|tls/i.test(pull.output) ? "A TLS problem the files do not show: check for a proxy or a different address the runtime resolves, and the runtime's own logs." : "Not a trust problem: check the image name, registry credentials and the runtime's logs.", [lastLine(pull.output)]);
    }
  }
  return { image, ok, output: pull.output.trim() };
}

function lastLine(s: string): string {
  return s.trim().split("\n").pop() ?? "";
}

function locations(views: TrustViews, dump: NodeDump): TrustLocation[] {
  const loc = (kind: TrustLocation["kind"], f: CertFile, runtime?: RuntimeName): TrustLocation => ({
    kind,
    runtime,
    path: f.path,
    modified: iso(f.mtime),
    count: f.certs.length,
    certificates: f.certs.length <= 20 ? f.certs.map(summarizeCert) : undefined,
  });
  const out = [
    ...views.os.pool.map((f) => loc("os-pool", f)),
    ...views.os.anchors.map((f) => loc("os-anchor", f)),
    ...views.runtimes.flatMap((r) => [
      ...r.caFiles.map((f) => loc("runtime", f, r.runtime)),
      ...r.portless.flatMap((d) => d.cas.map((f) => loc("runtime-portless", f, r.runtime))),
      ...r.ignored.flatMap((d) => d.cas.map((f) => loc("runtime-ignored", f, r.runtime))),
    ]),
  ];
  // Every other file in a certs.d tree (whatever the registry, whether or not that runtime is installed) and registries.yaml.
  const listed = new Set(out.map((l) => l.path));
  const configRoots = views.runtimes.flatMap((r) => (r.configPath ? r.configPath.split(":").filter(Boolean) : []));
  const roots: [string, RuntimeName][] = [
    ...Object.entries(CERTS_DIRS).map(([rt, d]) => [d, rt] as [string, RuntimeName]),
    ...configRoots.map((d) => [d, "containerd"] as [string, RuntimeName]),
  ];
  for (const f of dump.files.values()) {
    if (listed.has(f.path)) continue;
    const root = roots.find(([d]) => f.path.startsWith(`${d}/`) && f.path.slice(d.length + 1).split("/").length === 2);
    const rancher = /^\/etc\/rancher\/(k3s|rke2)\/registries\.yaml$/.exec(f.path);
    if (!root && !rancher) continue;
    listed.add(f.path);
    const certs = f.content ? parsePemCertificates(f.content.toString("utf8"), f.path).certs : [];
    out.push({
      ...loc(root ? "certs.d" : "registries.yaml", { path: f.path, mtime: f.mtime, certs }, root ? root[1] : (rancher![1] as RuntimeName)),
      ...(f.withheld ? { privateKey: true } : {}),
    });
  }
  return out;
}
