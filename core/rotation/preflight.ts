import type * as K8s from "@kubernetes/client-node";
import { Endpoint, endpointKey } from "../endpoint";
import { KcpApi, KcpObject, KcpVersion, LeaseObject, ObjectRef, clientNodeKcpApi, pickVersion } from "../kcp/api";
import { apiMessage, httpStatus } from "../kcp/errors";
import { LeaseTargetKind, leaseLiveness, leaseRef } from "../kcp/lease";
import { FileEntry, pemHash, readOwnership } from "../kcp/plan";
import { rolloutState } from "../kcp/rollout";
import { containerdCaPath } from "../node/containerd-hosts";
import { MD_GROUP, WorkerApi, clientNodeWorkerApi } from "../workers/api";
import { machineDeploymentRolloutState } from "../workers/rollout";
import { configRefName } from "../workers/template";
import { CertInfo } from "../x509/cert";
import { parsePemCertificates } from "../x509/pem";
import { ProblemCode } from "../x509/problems";
import { verifyServing } from "../x509/verify";
import { FetchChain, chainFromDer, describeCert, issuingGeneration } from "./served";
import { RECORD_KEY, recordName, recordNamespaces } from "./record";
import { BUNDLE_ANNOTATION, STACK_ANNOTATION } from "./serving-secret";

/*
 * Before a rotation starts: read what is live and refuse, naming what is unfinished, when the previous
 * rotation has not completed or when the certificate served now would lose its CA. Two passes share one
 * read of the live state:
 *  1. before any resource is registered (preview too), without the new bundle: Leases, missing objects,
 *     KCP entries changed by someone else, and, in generate mode, the generation the served certificate
 *     comes from against the generations the bundle will hold;
 *  2. once the bundle is known (RegistryPki resolves it before anything consumes it): the served chains
 *     verified against it, and KCP rollouts / recorded bundles judged against its hash, which tells a
 *     rerun of the same rotation (allowed: it converges) from a new one started on top of an unfinished one.
 * Pass 1 in generate mode cannot know the new bundle, so what only pass 2 can decide comes back as
 * "deferred" findings.
 */

export interface PreflightCluster {
  readonly name: string;
  readonly controlPlanes: readonly ObjectRef[];
  readonly machineDeployments: readonly ObjectRef[];
}

export interface PreflightPlan {
  readonly registries: readonly Endpoint[];
  /** Generate mode: the generations the new bundle holds and the CA name prefix; import mode: nothing more. */
  readonly ca: { readonly mode: "generate"; readonly commonName: string; readonly generations: readonly number[] } | { readonly mode: "import" };
  /** The TLS Secret the serving switch writes (servingTarget kubernetesSecret). */
  readonly servingSecret?: { readonly cluster: string } & ObjectRef;
  readonly clusters: readonly PreflightCluster[];
  /** project/stack: whose rotation record (core/rotation/record.ts) is read. @default none read */
  readonly stack?: string;
}

/** The reads the preflight makes in one cluster (KcpApi and WorkerApi over @kubernetes/client-node in the program). */
export type ClusterReader = Pick<KcpApi, "servedKcpVersions" | "getKcp" | "getLease" | "getSecret" | "getConfigMap"> &
  Pick<WorkerApi, "servedVersions" | "getMachineDeployment" | "getTemplate">;

/** The ClusterReader over @kubernetes/client-node 1.x; `k8s` is the module, passed in rather than imported. */
export function clientNodeClusterReader(k8s: typeof K8s, kubeConfig: K8s.KubeConfig): ClusterReader {
  return { ...clientNodeKcpApi(k8s, kubeConfig), ...clientNodeWorkerApi(k8s, kubeConfig) };
}

export interface LiveReaders {
  readonly fetchChain: FetchChain;
  /** The reader of a cluster by name; throws when its kubeconfig cannot be loaded. */
  readonly cluster: (name: string) => ClusterReader;
  /** Per TLS handshake and per API read. @default 10000 */
  readonly timeoutMs?: number;
  /** Pause between reads of a held Lease while judging whether its holder is alive. @default 1000 */
  readonly leasePollMs?: number;
}

export interface ControlPlaneLive {
  readonly cluster: string;
  readonly ref: ObjectRef;
  readonly kcp: KcpObject;
  readonly version: KcpVersion;
}

export interface MachineDeploymentLive {
  readonly cluster: string;
  readonly ref: ObjectRef;
  readonly md: KcpObject;
  readonly version: KcpVersion;
  /** The KubeadmConfigTemplate it boots from, when it exists. */
  readonly template?: KcpObject;
}

export interface LeaseLive {
  readonly cluster: string;
  readonly kind: LeaseTargetKind;
  readonly target: ObjectRef;
  readonly lease: LeaseObject;
  /** Judged by core/kcp/lease.ts leaseLiveness: renewed while we watched, or unrenewed for its duration. */
  readonly liveness: "live" | "expired";
}

export interface LiveState {
  readonly readAt: Date;
  /** Chains served (or about to be served, from the Secret), leaf first, by where they were read. */
  readonly served: readonly { readonly source: string; readonly chain: readonly CertInfo[] }[];
  /** What the last completed serving switch recorded on the Secret. */
  readonly servingRecord?: { readonly bundleHash?: string; readonly stack?: string };
  /** The stack's rotation records (ConfigMaps) by cluster and namespace. */
  readonly records: readonly { readonly cluster: string; readonly namespace: string; readonly bundleHash: string }[];
  readonly controlPlanes: readonly ControlPlaneLive[];
  readonly machineDeployments: readonly MachineDeploymentLive[];
  /** Leases held now (released ones are deleted), with whether their holder is alive. */
  readonly leases: readonly LeaseLive[];
  /** Configured objects that do not exist. */
  readonly missing: readonly string[];
  /** What could not be read, and why. */
  readonly unreachable: readonly string[];
}

export type FindingKind = "unfinished" | "overlap" | "missing" | "unreachable" | "deferred" | "note";

export interface Finding {
  readonly kind: FindingKind;
  readonly message: string;
}

/** `p`, or a rejection naming `what` after `ms`: an apiserver behind a black hole must not hang the preview. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export async function readLiveState(plan: PreflightPlan, readers: LiveReaders, now = new Date()): Promise<LiveState> {
  const served: { source: string; chain: CertInfo[] }[] = [];
  const unreachable: string[] = [];
  const missing: string[] = [];
  const controlPlanes: ControlPlaneLive[] = [];
  const machineDeployments: MachineDeploymentLive[] = [];
  const leases: LeaseLive[] = [];
  const records: { cluster: string; namespace: string; bundleHash: string }[] = [];
  let servingRecord: LiveState["servingRecord"];
  const timeoutMs = readers.timeoutMs ?? 10_000;

  await Promise.all(plan.registries.map(async (e) => {
    try {
      served.push({ source: `https://${endpointKey(e)}`, chain: chainFromDer(await readers.fetchChain(e, timeoutMs), endpointKey(e)) });
    } catch (err) {
      unreachable.push(`registry ${endpointKey(e)}: ${(err as Error).message}`);
    }
  }));

  const names = new Set([...plan.clusters.map((c) => c.name), ...(plan.servingSecret ? [plan.servingSecret.cluster] : [])]);
  const readCluster = async (name: string) => {
    let api: ClusterReader;
    try {
      api = readers.cluster(name);
    } catch (err) {
      unreachable.push(`cluster ${name}: ${(err as Error).message}`);
      return;
    }
    const cluster = plan.clusters.find((c) => c.name === name);
    const at = (what: string) => `${what} in cluster ${name}`;
    /** Runs one object's reads; a failure is reported for that object alone and the others are still read. */
    const each = async (what: string, read: () => Promise<void>) => {
      try {
        await read();
      } catch (err) {
        unreachable.push(`${at(what)}: ${apiMessage(err)}`);
      }
    };
    const secretRef = plan.servingSecret?.cluster === name ? plan.servingSecret : undefined;
    if (secretRef) {
      await each(`Secret ${secretRef.namespace}/${secretRef.name}`, async () => {
        const secret = await within(api.getSecret(secretRef), timeoutMs, at(`reading Secret ${secretRef.namespace}/${secretRef.name}`));
        const pem = secret?.data?.["tls.crt"];
        if (pem) served.push({ source: `Secret ${secretRef.namespace}/${secretRef.name} in cluster ${name}`, chain: parsePemCertificates(Buffer.from(pem, "base64").toString(), "tls.crt").certs });
        const a = secret?.metadata.annotations ?? {};
        if (secret) servingRecord = { bundleHash: a[BUNDLE_ANNOTATION], stack: a[STACK_ANNOTATION] };
      });
    }
    if (!cluster) return;
    for (const namespace of plan.stack ? recordNamespaces(cluster) : []) {
      const ref = { namespace, name: recordName(plan.stack!) };
      await each(`ConfigMap ${namespace}/${ref.name}`, async () => {
        const cm = await within(api.getConfigMap(ref), timeoutMs, at(`reading ConfigMap ${namespace}/${ref.name}`));
        const hash = cm?.data?.[RECORD_KEY];
        if (hash) records.push({ cluster: name, namespace, bundleHash: hash });
      });
    }
    const lease = async (kind: LeaseTargetKind, target: ObjectRef) => {
      const ref = leaseRef(target, kind);
      await each(`Lease ${ref.namespace}/${ref.name}`, async () => {
        const read = () => within(api.getLease(ref), timeoutMs, at(`reading Lease ${ref.namespace}/${ref.name}`));
        const { liveness, lease: l } = await leaseLiveness(read, { retryMs: readers.leasePollMs });
        if (l && liveness !== "free") leases.push({ cluster: name, kind, target, lease: l, liveness });
      });
    };
    /** The API version of a kind, or undefined (each object of that kind reported unreadable) when it cannot be discovered. */
    const discover = async (served: () => Promise<string[]>, what: string, refs: readonly ObjectRef[]): Promise<KcpVersion | undefined> => {
      try {
        return pickVersion(await within(served(), timeoutMs, at("listing API versions")), undefined, what);
      } catch (err) {
        for (const ref of refs) unreachable.push(`${at(`${what.split(" ")[0]} ${ref.namespace}/${ref.name}`)}: ${apiMessage(err)}`);
        return undefined;
      }
    };
    const kcpVersion = cluster.controlPlanes.length > 0
      ? await discover(() => api.servedKcpVersions(), "KubeadmControlPlane (controlplane.cluster.x-k8s.io)", cluster.controlPlanes) : undefined;
    for (const ref of kcpVersion ? cluster.controlPlanes : []) {
      await lease("KubeadmControlPlane", ref);
      await each(`KubeadmControlPlane ${ref.namespace}/${ref.name}`, async () => {
        try {
          controlPlanes.push({ cluster: name, ref, version: kcpVersion!, kcp: await within(api.getKcp(ref, kcpVersion!), timeoutMs, at(`reading KubeadmControlPlane ${ref.namespace}/${ref.name}`)) });
        } catch (err) {
          if (httpStatus(err) !== 404) throw err;
          missing.push(`KubeadmControlPlane ${ref.namespace}/${ref.name} does not exist in cluster ${name}: fix clusters[].controlPlanes (kubectl get kcp -A)`);
        }
      });
    }
    const mdVersion = cluster.machineDeployments.length > 0
      ? await discover(() => api.servedVersions(MD_GROUP), `MachineDeployment (${MD_GROUP})`, cluster.machineDeployments) : undefined;
    for (const ref of mdVersion ? cluster.machineDeployments : []) {
      await lease("MachineDeployment", ref);
      await each(`MachineDeployment ${ref.namespace}/${ref.name}`, async () => {
        let md: KcpObject;
        try {
          md = await within(api.getMachineDeployment(ref, mdVersion!), timeoutMs, at(`reading MachineDeployment ${ref.namespace}/${ref.name}`));
        } catch (err) {
          if (httpStatus(err) !== 404) throw err;
          missing.push(`MachineDeployment ${ref.namespace}/${ref.name} does not exist in cluster ${name}: fix clusters[].machineDeployments (kubectl get machinedeployments -A)`);
          return;
        }
        const templateRef = { namespace: ref.namespace, name: configRefName(md) };
        const template = await within(api.getTemplate(templateRef, mdVersion!), timeoutMs, at(`reading KubeadmConfigTemplate ${templateRef.namespace}/${templateRef.name}`));
        machineDeployments.push({ cluster: name, ref, md, version: mdVersion!, template });
      });
    }
  };
  // Clusters are read in parallel, each one's reads in order; the TLS handshakes above ran in parallel too.
  await Promise.all([...names].map(readCluster));
  return { readAt: now, served, servingRecord, records, controlPlanes, machineDeployments, leases, missing, unreachable };
}

/** sha256 of the bundle a KCP's CA file carries at `path`, or the 12-digit prefix named by its Secret. */
function carriedHash(file: FileEntry): string | undefined {
  if (typeof file.content === "string") return pemHash(file.content);
  return /-registry-trust-ca-([0-9a-f]{12})$/.exec(file.contentFrom?.secret?.name ?? "")?.[1];
}

function kcpFiles(kcp: KcpObject): FileEntry[] {
  const files = (kcp.spec?.kubeadmConfigSpec as { files?: unknown } | undefined)?.files;
  return Array.isArray(files) ? (files as FileEntry[]) : [];
}

const short = (h: string | undefined) => (h ? `${h.slice(0, 12)}…` : "none");

/** Everything that stands in the way of this rotation; `bundle` when known (pass 2). */
export function evaluatePreflight(plan: PreflightPlan, live: LiveState, bundle?: { readonly pem: string; readonly hash: string }): Finding[] {
  const out: Finding[] = [];
  const add = (kind: FindingKind, message: string) => out.push({ kind, message });
  for (const u of live.unreachable) add("unreachable", u);
  for (const m of live.missing) add("missing", m);

  // An expired Lease (its run died) blocks nothing: the next run takes it over (core/kcp/lease.ts).
  for (const { cluster, kind, target, lease } of live.leases.filter((l) => l.liveness === "live")) {
    add("unfinished", `${kind} ${target.namespace}/${target.name} in cluster ${cluster} is being changed right now: Lease ${lease.metadata.namespace}/${lease.metadata.name} ` +
      `is held by "${lease.spec.holderIdentity}", who renewed it while the preflight watched (last renewTime ${lease.spec.renewTime ?? "never"}, by the holder's clock). ` +
      `Let that run finish; if it dies, its Lease counts as expired once nobody renews it for ${lease.spec.leaseDurationSeconds ?? 30} s, then run again.`);
  }

  /** A bundle on a KCP or worker template that neither the last completed rotation nor this run wrote. */
  const unrecorded = (what: string, cluster: string, namespace: string, carried: string, continuing: boolean) => {
    const last = live.records.find((r) => r.cluster === cluster && r.namespace === namespace)?.bundleHash ?? live.servingRecord?.bundleHash;
    if (!carried || !last || carried === last || continuing) return;
    add(bundle ? "unfinished" : "deferred", `${what} carries bundle ${short(carried)}, but the last completed rotation recorded ${short(last)}` +
      `${bundle ? ` and this run distributes ${short(bundle.hash)}` : ""}: a rotation started after it has not completed. ` +
      "Run that rotation (its stack config) to completion first, or revert to it.");
  };

  for (const { cluster, ref, kcp, version } of live.controlPlanes) {
    const what = `KubeadmControlPlane ${ref.namespace}/${ref.name} in cluster ${cluster}`;
    let recorded: string;
    try {
      recorded = readOwnership(kcp, plan.stack).bundleHash;
    } catch (err) {
      add("unfinished", `${what}: ${(err as Error).message}`);
      continue;
    }
    const caPaths = new Set(plan.registries.map((e) => containerdCaPath({ ...e, mirrorOf: [] })));
    for (const f of kcpFiles(kcp).filter((x) => caPaths.has(x.path))) {
      const carried = carriedHash(f);
      if (recorded && carried !== undefined && !recorded.startsWith(carried)) {
        add("unfinished", `${what} carries at ${f.path} a bundle (sha256 ${short(carried)}) other than the one registry-trust last wrote there (${short(recorded)}): ` +
          "another writer changed it, so the state of the previous rotation is unknown. Find out who (kubectl get kcp -o yaml, managedFields); then remove that entry's change or run the rotation that wrote it to completion.");
      }
    }
    const continuing = bundle !== undefined && recorded === bundle.hash;
    const rollout = rolloutState(kcp, version, kcp.metadata.generation ?? 0);
    if (!rollout.done && !continuing) {
      add(bundle ? "unfinished" : "deferred", `${what} has not finished rolling out its current spec (bundle ${short(recorded)}): ${rollout.summary}. ` +
        "A new rotation must wait until its control-plane machines are replaced (kubectl get kcp, kubectl get machines); run again once the rollout is done.");
    }
    unrecorded(what, cluster, ref.namespace, recorded, continuing);
  }

  for (const { cluster, ref, md, version, template } of live.machineDeployments) {
    const recorded = template ? readOwnership(template, plan.stack).bundleHash : "";
    const continuing = bundle !== undefined && recorded === bundle.hash;
    const rollout = machineDeploymentRolloutState(md, version, md.metadata.generation ?? 0);
    const what = `MachineDeployment ${ref.namespace}/${ref.name} in cluster ${cluster}`;
    if (!rollout.done && !continuing) {
      add(bundle ? "unfinished" : "deferred", `${what} has not finished rolling out its current template ` +
        `(${template?.metadata.name ?? "unknown"}, bundle ${short(recorded || undefined)}): ${rollout.summary}. A new rotation must wait until its machines are replaced; run again once the rollout is done.`);
    }
    unrecorded(what, cluster, ref.namespace, recorded, continuing);
  }

  for (const { source, chain } of live.served) {
    const leaf = chain[0];
    if (!leaf) continue;
    if (plan.ca.mode === "generate") {
      const g = issuingGeneration(leaf, plan.ca.commonName);
      if (g === undefined) {
        // A first adoption: refusing would leave no way in, so this is said loudly instead (docs/rotation.md).
        add("note", `${source} serves ${describeCert(leaf)}, not issued by a CA of this stack: the bundle does not hold its CA, so nodes given it ` +
          "distrust what is served until the serving switch installs this stack's certificate, and their TLS probe fails meanwhile. See docs/rotation.md, \"Adopting a registry\".");
        continue;
      }
      if (!plan.ca.generations.includes(g)) {
        const current = Math.max(...plan.ca.generations);
        add("overlap", `${source} serves a certificate from CA generation ${g}, which would leave the bundle (generations ${plan.ca.generations.join(", ")}): ` +
          `nodes would stop trusting the registry mid-rotation. Either the previous rotation has not switched the serving certificate yet (finish it: run with caGeneration ${g + 1}), ` +
          `or keep generation ${g}: pulumi config set registry-trust:caRetainGenerations ${current - g}.`);
        continue;
      }
    }
    if (!bundle) continue;
    const anchors = parsePemCertificates(bundle.pem, "bundle").certs;
    const verdict = verifyServing({ bundle: anchors, chain, now: live.readAt });
    const untrusted = verdict.problems.find((p) => NO_CHAIN_TO_BUNDLE.has(p.code));
    if (untrusted) {
      add("overlap", `${source} serves ${describeCert(leaf)}, which the new bundle does not trust (${untrusted.code}): distributing it would break every pull. ` +
        "Keep that certificate's CA in the bundle until the registry serves a certificate from the new CA.");
    }
  }
  return out;
}

/** Refusals meaning no chain from the served leaf to the bundle could be built (rather than, say, expiry). */
const NO_CHAIN_TO_BUNDLE: ReadonlySet<ProblemCode> = new Set(["UNKNOWN_AUTHORITY", "MISSING_INTERMEDIATE", "BAD_SIGNATURE", "CHAIN_BUILD_BUDGET_EXCEEDED", "POLICY_INVALID"]);

export interface Verdict {
  /** The refusal, when there is one: every blocking finding, with what to do. */
  readonly error?: string;
  readonly warnings: string[];
}

/**
 * Blocking: unfinished, overlap, missing, and unreachable unless `allowUnreachable`. Deferred findings
 * are warnings (pass 2 decides them); notes are warnings too.
 */
export function preflightVerdict(findings: readonly Finding[], allowUnreachable: boolean): Verdict {
  const blocking = findings.filter((f) => f.kind === "unfinished" || f.kind === "overlap" || f.kind === "missing" || (f.kind === "unreachable" && !allowUnreachable));
  const warnings = findings.filter((f) => !blocking.includes(f)).map((f) =>
    f.kind === "unreachable" ? `rotation preflight could not read ${f.message} (going on: preflightAllowUnreachable is true)`
      : f.kind === "deferred" ? `rotation preflight: ${f.message} (decided once the new bundle is known, before it is distributed)`
        : `rotation preflight: ${f.message}`);
  if (blocking.length === 0) return { warnings };
  const lines = blocking.map((f) => `  - ${f.kind}: ${f.message}`);
  const unreachableHint = blocking.some((f) => f.kind === "unreachable")
    ? "\nLive state that cannot be read is not assumed to be fine. Fix access, or set registry-trust:preflightAllowUnreachable true to go on without it." : "";
  return { error: `Rotation preflight refused; nothing was changed:\n${lines.join("\n")}${unreachableHint}`, warnings };
}
