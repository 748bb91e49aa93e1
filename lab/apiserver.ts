// A real etcd + kube-apiserver on loopback for tests, with the real Cluster API CRDs installed.
// The binaries and CRDs come from `npm run k8s:binaries` (scripts/k8s-binaries.sh); building them is far
// too slow for a test, so a missing cache is an error telling how to fill it.
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import YAML from "yaml";
import { freePort } from "./daemon";

const repoRoot = path.resolve(__dirname, "..");

export interface K8sAssets {
  kubeApiserver: string;
  etcd: string;
  /** Directory holding the four Cluster API CRD YAML files. */
  capiCrdDir: string;
  k8sVersion: string;
  capiVersion: string;
}

/** Versions pinned in scripts/k8s-binaries.env; K8S_VERSION / CAPI_VERSION in the environment win, as in the script. */
export function pinnedVersions(): { k8sVersion: string; capiVersion: string } {
  const text = fs.readFileSync(path.join(repoRoot, "scripts", "k8s-binaries.env"), "utf8");
  const pinned = (key: string): string => {
    const m = new RegExp(`^${key}=(.+)$`, "m").exec(text);
    if (!m) throw new Error(`scripts/k8s-binaries.env has no ${key}`);
    return m[1].trim();
  };
  return {
    k8sVersion: process.env.K8S_VERSION || pinned("K8S_VERSION"),
    capiVersion: process.env.CAPI_VERSION || pinned("CAPI_VERSION"),
  };
}

export function cacheDir(): string {
  return process.env.REGISTRY_TRUST_CACHE || path.join(os.homedir(), ".cache", "registry-trust");
}

const howToFix =
  "run `npm run k8s:binaries` once (builds kube-apiserver and etcd from Go modules into the cache, " +
  "~15 min cold on 2 cores, and fetches the Cluster API CRDs), or point KUBEBUILDER_ASSETS or " +
  "KUBE_APISERVER_BIN + ETCD_BIN at binaries you have";

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Finds the binaries and CRDs the same way scripts/k8s-binaries.sh provides them. */
export function findAssets(): K8sAssets {
  const { k8sVersion, capiVersion } = pinnedVersions();
  let kubeApiserver: string;
  let etcd: string;
  if (process.env.KUBE_APISERVER_BIN || process.env.ETCD_BIN) {
    kubeApiserver = process.env.KUBE_APISERVER_BIN ?? "";
    etcd = process.env.ETCD_BIN ?? "";
  } else {
    const dir = process.env.KUBEBUILDER_ASSETS || path.join(cacheDir(), "k8s", k8sVersion);
    kubeApiserver = path.join(dir, "kube-apiserver");
    etcd = path.join(dir, "etcd");
  }
  const missing = [kubeApiserver, etcd].filter((f) => !isExecutable(f));
  if (missing.length > 0) {
    throw new Error(`no executable kube-apiserver/etcd at ${missing.map((m) => `'${m}'`).join(", ")}: ${howToFix}`);
  }
  const capiCrdDir = path.join(cacheDir(), "capi", capiVersion);
  const crds = fs.existsSync(capiCrdDir) ? fs.readdirSync(capiCrdDir).filter((f) => f.endsWith(".yaml")) : [];
  if (crds.length !== 4) {
    throw new Error(`Cluster API ${capiVersion} CRDs missing in ${capiCrdDir}: ${howToFix}`);
  }
  return { kubeApiserver, etcd, capiCrdDir, k8sVersion, capiVersion };
}

export interface StartOptions {
  /** Install the Cluster API CRDs and wait until they are Established (default true). */
  installCapiCrds?: boolean;
  /**
   * The version etcd stores the CAPI objects in. CAPI ships v1beta2 as storage and converts with a webhook,
   * which a bare apiserver lacks: it converts by relabelling only and prunes on read with the stored
   * version's schema, so a v1beta1 write loses every field whose path differs in v1beta2 (e.g.
   * spec.machineTemplate.infrastructureRef). Tests of the v1beta1 shape therefore need storage "v1beta1".
   * Default: whatever the real CRDs declare (v1beta2).
   */
  storageVersion?: string;
  /** Extra kube-apiserver flags (a later flag wins), e.g. feature gates or --v=4 to debug. */
  apiServerArgs?: string[];
  /** Overall start-up deadline (default 90 s: the first start on a cold page cache is slow on 2 cores). */
  timeoutMs?: number;
}

export interface ApiServer {
  kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  server: string;
  /** Loaded from kubeconfigPath: the cluster-admin user (group system:masters). */
  kubeConfig: k8s.KubeConfig;
  /** The temp dir holding etcd data, credentials and daemon logs; removed by stop(). */
  dir: string;
  /** The CRD objects as installed, keyed by CRD name. */
  crds: Map<string, k8s.V1CustomResourceDefinition>;
  pids: { etcd: number; kubeApiserver: number };
  stop(): Promise<void>;
}


function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"], env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
}

/** A throwaway CA, a serving cert for 127.0.0.1 and a system:masters client cert (P-256, valid one day). */
function makeCredentials(dir: string): void {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"];
  openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=registry-trust-test-ca",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir);
  openssl(["req", "-x509", ...ec, "-CA", "ca.crt", "-CAkey", "ca.key", "-keyout", "server.key", "-out", "server.crt",
    "-subj", "/CN=kube-apiserver", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"], dir);
  openssl(["req", "-x509", ...ec, "-CA", "ca.crt", "-CAkey", "ca.key", "-keyout", "admin.key", "-out", "admin.crt",
    "-subj", "/O=system:masters/CN=registry-trust-test-admin",
    "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=clientAuth"], dir);
  openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key"], dir);
  openssl(["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
}

function writeKubeconfig(dir: string, server: string): string {
  const b64 = (f: string) => fs.readFileSync(path.join(dir, f)).toString("base64");
  const kubeconfig = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "test", cluster: { server, "certificate-authority-data": b64("ca.crt") } }],
    users: [{ name: "admin", user: { "client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key") } }],
    contexts: [{ name: "test", context: { cluster: "test", user: "admin" } }],
    "current-context": "test",
  };
  const file = path.join(dir, "kubeconfig");
  fs.writeFileSync(file, YAML.stringify(kubeconfig), { mode: 0o600 });
  return file;
}

export interface Daemon {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<void>;
}

/** Starts `bin` with its output appended to `dir`/`name`.log; `extraEnv` joins a PATH-only environment. */
export function startDaemon(name: string, bin: string, args: string[], dir: string, extraEnv: Record<string, string> = {}): Daemon {
  const log = path.join(dir, `${name}.log`);
  const fd = fs.openSync(log, "a");
  // A clean environment, like a systemd unit: CA/proxy variables of the test process must not leak in.
  const child = spawn(bin, args, { cwd: dir, env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ...extraEnv }, stdio: ["ignore", fd, fd] });
  fs.closeSync(fd);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  child.on("error", () => undefined);
  return { name, child, log, exited };
}

export function tail(file: string, lines = 25): string {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

export async function stopDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  d.child.kill("SIGTERM");
  const timer = setTimeout(() => d.child.kill("SIGKILL"), 10_000);
  await d.exited;
  clearTimeout(timer);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what: string, deadline: number, daemons: Daemon[], probe: () => Promise<boolean>): Promise<void> {
  let lastError = "";
  while (Date.now() < deadline) {
    const dead = daemons.find((d) => d.child.exitCode !== null || d.child.signalCode !== null);
    if (dead) {
      throw new Error(`${dead.name} exited (${dead.child.exitCode ?? dead.child.signalCode}) while waiting for ${what}:\n${tail(dead.log)}`);
    }
    try {
      if (await probe()) return;
    } catch (e) {
      lastError = (e as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${lastError ? ` (last error: ${lastError})` : ""}\n` +
    daemons.map((d) => `--- ${d.name}:\n${tail(d.log)}`).join("\n"));
}

async function httpOk(url: string): Promise<boolean> {
  try {
    return (await fetch(url)).ok;
  } catch {
    return false;
  }
}

/** Status code of a GET as the admin user, or 0 when the server does not answer. */
function adminGet(dir: string, url: string): Promise<number> {
  const read = (f: string) => fs.readFileSync(path.join(dir, f));
  return new Promise((resolve) => {
    const req = https.get(url, { ca: read("ca.crt"), cert: read("admin.crt"), key: read("admin.key"), timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(0));
  });
}

// Daemons of an env whose test process dies without calling stop() are still killed.
const live = new Set<{ daemons: Daemon[]; dir: string }>();
process.once("exit", () => {
  for (const env of live) {
    for (const d of env.daemons) d.child.kill("SIGKILL");
    fs.rmSync(env.dir, { recursive: true, force: true });
  }
});

/**
 * Creates the CRDs and returns once each is Established and every served version lists (the lab's Cluster
 * API managers install theirs with this too). `daemons` are checked for early exits while waiting.
 */
export async function installCrds(kubeConfig: k8s.KubeConfig, bodies: k8s.V1CustomResourceDefinition[], deadline: number,
  daemons: Daemon[] = []): Promise<Map<string, k8s.V1CustomResourceDefinition>> {
  const crds = new Map<string, k8s.V1CustomResourceDefinition>();
  const ext = kubeConfig.makeApiClient(k8s.ApiextensionsV1Api);
  const names: string[] = [];
  for (const body of bodies) {
    await ext.createCustomResourceDefinition({ body });
    names.push(body.metadata!.name!);
  }
  for (const name of names) {
    await waitFor(`CRD ${name} Established`, deadline, daemons, async () => {
      const crd = await ext.readCustomResourceDefinition({ name });
      const established = crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True");
      if (established) crds.set(name, crd);
      return established ?? false;
    });
  }
  // The apiserver holds every create of a custom resource for 2 s while its CRD was Established less
  // than 2 s ago (an HA safeguard in apiextensions' crdHandler). Waiting it out here keeps that one-off
  // stall out of the tests' timings.
  await sleep(2_000);
  // Controllers keep updating a new CRD's status for a moment, and each update re-creates its storage,
  // which answers 429 "storage is (re)initializing" meanwhile. Ready = every served version lists and
  // no CRD changed while we checked.
  const custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  await waitFor("CRDs settled", deadline, daemons, async () => {
    const before = await Promise.all(names.map((name) => ext.readCustomResourceDefinition({ name })));
    for (const crd of before) {
      for (const v of crd.spec.versions.filter((v) => v.served)) {
        await custom.listClusterCustomObject({ group: crd.spec.group, version: v.name, plural: crd.spec.names.plural, limit: 1 });
      }
    }
    const after = await Promise.all(names.map((name) => ext.readCustomResourceDefinition({ name })));
    after.forEach((crd) => crds.set(crd.metadata!.name!, crd));
    return before.every((crd, i) => crd.metadata?.resourceVersion === after[i].metadata?.resourceVersion);
  });
  return crds;
}

export async function startApiServer(opts: StartOptions = {}): Promise<ApiServer> {
  const assets = findAssets();
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "registry-trust-k8s-"));
  const env = { daemons: [] as Daemon[], dir };
  live.add(env);
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      // apiserver first: it would otherwise log etcd errors while shutting down.
      for (const d of [...env.daemons].reverse()) await stopDaemon(d);
      fs.rmSync(dir, { recursive: true, force: true });
      live.delete(env);
    })());

  try {
    makeCredentials(dir);
    const [etcdClient, etcdPeer, apiPort] = [await freePort("127.0.0.1"), await freePort("127.0.0.1"), await freePort("127.0.0.1")];
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    const etcd = startDaemon("etcd", assets.etcd, [
      `--data-dir=${path.join(dir, "etcd")}`,
      `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      // Test data is throwaway; fsync per write would make etcd the bottleneck of conflict-heavy tests.
      "--unsafe-no-fsync", "--log-level=warn",
    ], dir);
    env.daemons.push(etcd);
    await waitFor("etcd /health", deadline, env.daemons, () => httpOk(`${etcdUrl}/health`));

    const server = `https://127.0.0.1:${apiPort}`;
    const apiserver = startDaemon("kube-apiserver", assets.kubeApiserver, [
      `--etcd-servers=${etcdUrl}`,
      "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", `--secure-port=${apiPort}`,
      `--cert-dir=${path.join(dir, "apiserver-certs")}`,
      `--tls-cert-file=${path.join(dir, "server.crt")}`, `--tls-private-key-file=${path.join(dir, "server.key")}`,
      `--client-ca-file=${path.join(dir, "ca.crt")}`,
      // RBAC rather than AlwaysAllow, so that forbidden paths can be tested with a less privileged user.
      "--authorization-mode=RBAC",
      `--service-account-issuer=${server}`,
      `--service-account-key-file=${path.join(dir, "sa.pub")}`,
      `--service-account-signing-key-file=${path.join(dir, "sa.key")}`,
      // Only allocated in etcd, never routed: no controller-manager or kube-proxy runs.
      "--service-cluster-ip-range=10.0.0.0/24",
      // The default reconciler refuses a loopback advertise address; nothing here needs the kubernetes Service endpoints.
      "--endpoint-reconciler-type=none",
      "--profiling=false",
      ...(opts.apiServerArgs ?? []),
    ], dir);
    env.daemons.push(apiserver);

    const kubeconfigPath = writeKubeconfig(dir, server);
    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);
    // /readyz covers the post-start hooks too (RBAC bootstrap roles, CRD informers), unlike /healthz.
    await waitFor("kube-apiserver /readyz", deadline, env.daemons, async () => (await adminGet(dir, `${server}/readyz`)) === 200);

    let crds = new Map<string, k8s.V1CustomResourceDefinition>();
    if (opts.installCapiCrds ?? true) {
      const bodies = fs.readdirSync(assets.capiCrdDir).filter((f) => f.endsWith(".yaml")).sort()
        // Typed client-node APIs re-serialize their body from model property names (xKubernetesIntOrString):
        // a plain parse keeps wire names (x-kubernetes-int-or-string) that would be silently dropped.
        .map((file) => k8s.loadYaml<k8s.V1CustomResourceDefinition>(fs.readFileSync(path.join(assets.capiCrdDir, file), "utf8")));
      const storage = opts.storageVersion;
      if (storage) {
        for (const body of bodies) {
          if (!body.spec.versions.some((v) => v.name === storage)) {
            throw new Error(`CRD ${body.metadata?.name} has no version ${storage} to store in`);
          }
          for (const v of body.spec.versions) v.storage = v.name === storage;
        }
      }
      crds = await installCrds(kubeConfig, bodies, deadline, env.daemons);
    }
    return { kubeconfigPath, server, kubeConfig, dir, crds, pids: { etcd: etcd.child.pid!, kubeApiserver: apiserver.child.pid! }, stop };
  } catch (e) {
    const logs = env.daemons.map((d) => `--- ${d.name} log:\n${tail(d.log)}`).join("\n");
    await stop();
    const err = e as Error;
    if (logs && !err.message.includes("--- ")) err.message += `\n${logs}`;
    throw err;
  }
}
