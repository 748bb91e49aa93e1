/*
 * The real Cluster API v1.14 managers on the lab's apiserver: core (Cluster, Machine, MachineSet,
 * MachineDeployment), KubeadmControlPlane, kubeadm bootstrap and CAPD with its in-memory backend (fake
 * machines, fake workload apiservers and etcd inside the CAPD process, as Cluster API runs its own scale
 * tests). Binaries from scripts/capi-binaries.sh; CRDs, their conversion-webhook patches and the admission
 * webhook manifests come from the same release's Go module source, so nothing here is a copy of upstream.
 *
 * Wiring that a cluster gets from kustomize + cert-manager, done here by hand:
 *  - one throwaway CA and a serving certificate for 127.0.0.1 shared by the four webhook servers;
 *  - every CRD a provider's config/crd/kustomization.yaml patches for conversion gets
 *    `conversion.webhook.clientConfig.url: https://127.0.0.1:<that manager's webhook port>/convert` and the
 *    CA as caBundle; the kustomization's labels (cluster.x-k8s.io/<contract>: <version>) are applied, since
 *    core reads them to resolve an `apiGroup`+`kind` reference to a served version;
 *  - each provider's config/webhook/manifests.yaml is installed with `url` instead of `service`, renamed
 *    with the provider as prefix (kustomize's namePrefix does the same upstream).
 * Each manager gets its own health, diagnostics (plain HTTP, --insecure-diagnostics) and webhook ports.
 * The health and diagnostics servers bind 127.0.0.1; the webhook server has no host flag upstream and
 * listens on every interface at its port.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import YAML from "yaml";
import { ApiServer, cacheDir, Daemon, installCrds, pinnedVersions, startApiServer, startDaemon, stopDaemon, tail, waitFor } from "./apiserver";
import { freePort } from "./daemon";
import { createCa, issueServerCert } from "./pki";

export type ManagerName = "core" | "kubeadm-control-plane" | "kubeadm-bootstrap" | "capd";

interface Provider {
  name: ManagerName;
  /** Binary name in the cache (scripts/capi-binaries.sh). */
  bin: string;
  /** Directory holding crd/kustomization.yaml and webhook/manifests.yaml, inside the module source. */
  config: (src: Sources) => string;
  featureGates: string;
  env?: Record<string, string>;
}

interface Sources {
  root: string;
  test: string;
}

// Feature gates as upstream's config/manager/manager.yaml sets them by default, except MachinePool: the
// lab has no MachinePools, and leaving the gate on only adds watches on their CRDs.
const PROVIDERS: Provider[] = [
  { name: "core", bin: "capi-manager", config: (s) => path.join(s.root, "core", "config"), featureGates: "MachinePool=false,ClusterTopology=false,RuntimeSDK=false" },
  { name: "kubeadm-control-plane", bin: "kcp-manager", config: (s) => path.join(s.root, "controlplane", "kubeadm", "config"), featureGates: "MachinePool=false,ClusterTopology=false" },
  { name: "kubeadm-bootstrap", bin: "cabpk-manager", config: (s) => path.join(s.root, "bootstrap", "kubeadm", "config"), featureGates: "MachinePool=false" },
  // The in-memory backend serves each fake workload cluster's apiserver on POD_IP:20000-24000.
  { name: "capd", bin: "capd-manager", config: (s) => path.join(s.test, "infrastructure", "docker", "config"), featureGates: "MachinePool=false,ClusterTopology=false", env: { POD_IP: "127.0.0.1" } },
];

export interface CapiAssets {
  version: string;
  binDir: string;
  sources: Sources;
}

const howToFix = "run `bash scripts/capi-binaries.sh` once (builds the four Cluster API managers from Go modules into the cache; part of `npm test`'s prerequisites)";

function goModCache(): string {
  if (process.env.GOMODCACHE) return process.env.GOMODCACHE;
  try {
    return execFileSync("go", ["env", "GOMODCACHE"], { encoding: "utf8" }).trim();
  } catch {
    return path.join(os.homedir(), "go", "pkg", "mod");
  }
}

/** The managers' binaries and the release's module source, as scripts/capi-binaries.sh leaves them. */
export function findCapiAssets(): CapiAssets {
  const { capiVersion: version } = pinnedVersions();
  const binDir = path.join(cacheDir(), "capi", version, "bin");
  const missing = PROVIDERS.map((p) => path.join(binDir, p.bin)).filter((f) => !fs.existsSync(f));
  if (missing.length > 0) throw new Error(`Cluster API ${version} managers missing (${missing.join(", ")}): ${howToFix}`);
  const mod = goModCache();
  const sources = { root: path.join(mod, "sigs.k8s.io", `cluster-api@${version}`), test: path.join(mod, "sigs.k8s.io", "cluster-api", `test@${version}`) };
  for (const dir of Object.values(sources)) {
    if (!fs.existsSync(dir)) throw new Error(`Cluster API ${version} module source missing at ${dir}: ${howToFix}`);
  }
  return { version, binDir, sources };
}

interface Kustomization {
  resources?: string[];
  labels?: Array<{ pairs?: Record<string, string> }>;
  patches?: Array<{ path?: string }>;
}

/** The provider's CRDs as its kustomization would render them, the conversion webhook pointed at `url`. */
function providerCrds(configDir: string, convertUrl: string, caBundle: string): k8s.V1CustomResourceDefinition[] {
  const crdDir = path.join(configDir, "crd");
  const kustomization = YAML.parse(fs.readFileSync(path.join(crdDir, "kustomization.yaml"), "utf8")) as Kustomization;
  const labels = Object.assign({}, ...(kustomization.labels ?? []).map((l) => l.pairs ?? {})) as Record<string, string>;
  const converted = new Set(
    (kustomization.patches ?? []).flatMap((p) => (p.path ? [YAML.parse(fs.readFileSync(path.join(crdDir, p.path), "utf8")) as { metadata: { name: string }; spec?: { conversion?: { strategy?: string } } }] : []))
      .filter((patch) => patch.spec?.conversion?.strategy === "Webhook")
      .map((patch) => patch.metadata.name),
  );
  return (kustomization.resources ?? []).map((file) => {
    const crd = k8s.loadYaml<k8s.V1CustomResourceDefinition>(fs.readFileSync(path.join(crdDir, file), "utf8"));
    crd.metadata = { ...crd.metadata, labels: { ...crd.metadata?.labels, ...labels } };
    if (converted.has(crd.metadata.name!)) {
      crd.spec.conversion = { strategy: "Webhook", webhook: { conversionReviewVersions: ["v1"], clientConfig: { url: convertUrl, caBundle } } };
    }
    return crd;
  });
}

type WebhookConfig = { kind: string; metadata: { name: string }; webhooks: Array<{ clientConfig: { service?: { path?: string }; url?: string; caBundle?: string } }> };

/** config/webhook/manifests.yaml with every `service` reference turned into a URL on 127.0.0.1:`port`. */
function providerWebhooks(configDir: string, prefix: string, port: number, caBundle: string): WebhookConfig[] {
  const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(configDir, "webhook", "manifests.yaml"), "utf8"))
    .map((d) => d.toJS() as WebhookConfig).filter((d) => d && d.kind);
  return docs.map((d) => ({
    ...d,
    metadata: { ...d.metadata, name: `${prefix}-${d.metadata.name}` },
    webhooks: d.webhooks.map((w) => {
      const p = w.clientConfig.service?.path;
      if (!p) throw new Error(`a webhook of ${d.metadata.name} in ${configDir} has no service path`);
      return { ...w, clientConfig: { url: `https://127.0.0.1:${port}${p}`, caBundle } };
    }),
  }));
}

export interface ManagerPorts {
  webhook: number;
  health: number;
  diagnostics: number;
}

export interface CapiManagers {
  version: string;
  ports: Record<ManagerName, ManagerPorts>;
  /** Log file of each manager (klog text). */
  logs: Record<ManagerName, string>;
  stop(): Promise<void>;
}

export interface CapiOptions {
  /** Extra flags per manager (a later flag wins), e.g. { core: ["--v=4"] }. */
  extraArgs?: Partial<Record<ManagerName, string[]>>;
  /** Start-up deadline for all four (default 180 s: four Go managers syncing caches on 2 busy cores). */
  timeoutMs?: number;
  /** How long to wait for another management cluster on this machine to release CAPD's ports (default 20 min). */
  lockTimeoutMs?: number;
  /** Turn the ClusterTopology feature gate on (ClusterClass, the topology controller in core). @default false */
  clusterTopology?: boolean;
}

const live = new Set<Map<ManagerName, Daemon>>();
process.once("exit", () => {
  for (const m of live) for (const d of m.values()) d.child.kill("SIGKILL");
  if (lockHeld) fs.rmSync(capdLockPath(), { force: true });
});

/*
 * One CAPD per machine: its in-memory backend binds a fixed debug port (:19000, every interface) and
 * numbers the workload clusters' listeners from :20000 up (inmemory/pkg/server/mux.go), with no flag for
 * either; a second CAPD exits with "bind: address already in use". So a management cluster takes this
 * machine-wide lock (a file naming its holder's PID) and waits while a live process holds it.
 */
let lockHeld = false;
// Ports are per network namespace, so is the lock: a management cluster in another namespace (e.g. a CI
// run under `unshare --net`) does not wait for this one.
const capdLockPath = () => path.join(cacheDir(), `capd-in-memory.${fs.readlinkSync("/proc/self/ns/net").replace(/\D/g, "")}.lock`);

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

/** CAPD's in-memory debug port: bound on every interface with no flag to move it (see above). */
const CAPD_DEBUG_PORT = 19000;

/** Whether something on this machine listens on `port` (every interface), i.e. a bind would fail. */
function portBound(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", (e: NodeJS.ErrnoException) => (e.code === "EADDRINUSE" ? resolve(true) : reject(e)));
    server.listen({ port, exclusive: true }, () => server.close(() => resolve(false)));
  });
}

async function acquireCapdLock(timeoutMs: number): Promise<void> {
  const file = capdLockPath();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let holder: string | undefined;
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: "wx" });
      lockHeld = true;
      // The lock file is advisory: a CAPD whose owner was killed (SIGKILL skips the exit hook) outlives
      // its lock and still holds the port; wait for it like for a live holder rather than fail at start-up.
      if (!(await portBound(CAPD_DEBUG_PORT))) return;
      releaseCapdLock();
      holder = `a process outside the lock (port ${CAPD_DEBUG_PORT} is bound; \`ss -ltnp sport = :${CAPD_DEBUG_PORT}\` names it)`;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(fs.readFileSync(file, "utf8").trim());
      if (!Number.isInteger(pid) || pid === process.pid || !pidAlive(pid)) {
        fs.rmSync(file, { force: true });
        continue;
      }
      holder = `PID ${pid}`;
    }
    if (Date.now() > deadline) {
      throw new Error(`another management cluster (${holder}) runs CAPD's in-memory backend on this machine (lock ${file}); ` +
        "its fixed ports allow one at a time: stop it (e.g. `npm run lab:stop`) or wait for it to finish");
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function releaseCapdLock(): void {
  if (!lockHeld) return;
  lockHeld = false;
  fs.rmSync(capdLockPath(), { force: true });
}

/**
 * Installs the CRDs and webhooks of the four managers on `api` (started with installCapiCrds: false) and
 * runs them until stop(). Resolves once every manager reports ready (its webhook server serves).
 */
export async function startCapiManagers(api: ApiServer, opts: CapiOptions = {}): Promise<CapiManagers> {
  const assets = findCapiAssets();
  await acquireCapdLock(opts.lockTimeoutMs ?? 1_200_000);
  try {
    return await runManagers(api, assets, opts);
  } catch (e) {
    releaseCapdLock();
    throw e;
  }
}

async function runManagers(api: ApiServer, assets: CapiAssets, opts: CapiOptions): Promise<CapiManagers> {
  const deadline = () => Date.now() + (opts.timeoutMs ?? 180_000);
  const dir = path.join(api.dir, "capi");
  fs.mkdirSync(dir, { recursive: true });
  const ca = await createCa(path.join(dir, "webhook-ca"), "registry-trust lab Cluster API webhook CA");
  const cert = await issueServerCert(ca, path.join(dir, "webhook-cert"), ["localhost"], ["127.0.0.1"]);
  const caBundle = Buffer.from(ca.pem).toString("base64");

  const ports = {} as Record<ManagerName, ManagerPorts>;
  for (const p of PROVIDERS) ports[p.name] = { webhook: await freePort("127.0.0.1"), health: await freePort("127.0.0.1"), diagnostics: await freePort("127.0.0.1") };

  const crds = PROVIDERS.flatMap((p) => providerCrds(p.config(assets.sources), `https://127.0.0.1:${ports[p.name].webhook}/convert`, caBundle));
  await installCrds(api.kubeConfig, crds, deadline());

  const daemons = new Map<ManagerName, Daemon>();
  live.add(daemons);
  const argsOf = (p: Provider): string[] => [
    `--kubeconfig=${api.kubeconfigPath}`,
    "--leader-elect=false",
    `--health-addr=127.0.0.1:${ports[p.name].health}`,
    `--diagnostics-address=127.0.0.1:${ports[p.name].diagnostics}`, "--insecure-diagnostics",
    `--webhook-port=${ports[p.name].webhook}`, `--webhook-cert-dir=${path.dirname(cert.certPath)}`,
    `--webhook-cert-name=${path.basename(cert.certPath)}`, `--webhook-key-name=${path.basename(cert.keyPath)}`,
    `--feature-gates=${opts.clusterTopology ? p.featureGates.replace("ClusterTopology=false", "ClusterTopology=true") : p.featureGates}`,
    ...(opts.extraArgs?.[p.name] ?? []),
  ];
  const logs = Object.fromEntries(PROVIDERS.map((p) => [p.name, path.join(dir, `${p.name}.log`)])) as Record<ManagerName, string>;
  const ready = (name: ManagerName) => waitFor(`Cluster API manager ${name} /readyz`, deadline(), [...daemons.values()], async () => {
    try {
      return (await fetch(`http://127.0.0.1:${ports[name].health}/readyz`)).ok;
    } catch {
      return false;
    }
  });
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= (async () => {
    for (const d of [...daemons.values()].reverse()) await stopDaemon(d);
    live.delete(daemons);
    releaseCapdLock();
  })());

  try {
    for (const p of PROVIDERS) daemons.set(p.name, startDaemon(`capi/${p.name}`, path.join(assets.binDir, p.bin), argsOf(p), api.dir, p.env ?? {}));
    for (const p of PROVIDERS) await ready(p.name);
    // Admission webhooks only once their servers answer: with failurePolicy Fail an earlier install would
    // refuse every write of those kinds meanwhile.
    const admission = api.kubeConfig.makeApiClient(k8s.AdmissionregistrationV1Api);
    for (const p of PROVIDERS) {
      for (const w of providerWebhooks(p.config(assets.sources), `capi-${p.name}`, ports[p.name].webhook, caBundle)) {
        if (w.kind === "MutatingWebhookConfiguration") await admission.createMutatingWebhookConfiguration({ body: w as k8s.V1MutatingWebhookConfiguration });
        else if (w.kind === "ValidatingWebhookConfiguration") await admission.createValidatingWebhookConfiguration({ body: w as k8s.V1ValidatingWebhookConfiguration });
        else throw new Error(`unexpected ${w.kind} in ${p.name}'s webhook manifests`);
      }
    }
  } catch (e) {
    const detail = PROVIDERS.map((p) => `--- ${p.name}:\n${tail(logs[p.name], 15)}`).join("\n");
    await stop();
    (e as Error).message += `\n${detail}`;
    throw e;
  }
  return { version: assets.version, ports, logs, stop };
}

export interface ManagementCluster {
  api: ApiServer;
  capi: CapiManagers;
  /** `cluster-api-<version>`: what reconciles the objects, for reports. */
  controllers: string;
  stop(): Promise<void>;
}

/** A real etcd + kube-apiserver with the four Cluster API managers wired to it (no workload cluster yet). */
export async function startManagementCluster(opts: CapiOptions & { apiServerArgs?: string[] } = {}): Promise<ManagementCluster> {
  const api = await startApiServer({ installCapiCrds: false, apiServerArgs: opts.apiServerArgs, timeoutMs: 180_000 });
  try {
    const capi = await startCapiManagers(api, opts);
    return {
      api, capi, controllers: `cluster-api-${capi.version}`,
      stop: async () => {
        await capi.stop();
        await api.stop();
      },
    };
  } catch (e) {
    await api.stop();
    throw e;
  }
}
