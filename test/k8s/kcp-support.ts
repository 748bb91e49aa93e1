// Shared by the KCP sequencer tests and the tests on the real Cluster API controllers: objects on the real
// apiserver, real certificates, and writers other than us. Nothing here stands in for Kubernetes itself.
import { createHash } from "node:crypto";
import { parse as parseToml } from "smol-toml";
import * as k8s from "@kubernetes/client-node";
import { KcpApi } from "../../core/kcp/api";
import { FileEntry } from "../../core/kcp/plan";
import { TestPki } from "../../lab/openssl-pki";



/**
 * Checks `ours` (our entries as they came back from the apiserver) against what containerd needs for
 * registry.test:5000, written from containerd's hosts.toml contract (docs/hosts.md) rather than from
 * core/kcp/plan, so a planning bug cannot agree with itself: the bundle as ca.crt in the endpoint's own
 * certs.d directory, a hosts.toml there naming it, and for each mirrored upstream a hosts.toml sending
 * pulls to the endpoint. Returns the ownership annotation those entries imply.
 */
export function expectTrustEntries(ours: FileEntry[], bundlePem: string, mirrorOf: string[] = []): { paths: string[]; commands: string[]; bundleHash: string } {
  const dir = "/etc/containerd/certs.d/registry.test:5000";
  const ca = `${dir}/ca.crt`;
  const host = { "https://registry.test:5000": { capabilities: ["pull", "resolve"], ca } };
  const upstreamServer: Record<string, string> = { "docker.io": "https://registry-1.docker.io" };
  const hosts = [
    { path: `${dir}/hosts.toml`, server: "https://registry.test:5000" },
    ...mirrorOf.map((u) => ({ path: `/etc/containerd/certs.d/${u}/hosts.toml`, server: upstreamServer[u] ?? `https://${u}` })),
  ];
  expect(ours.map((f) => f.path)).toEqual([ca, ...hosts.map((h) => h.path)]);
  expect(ours[0]).toEqual({ path: ca, owner: "root:root", permissions: "0644", content: bundlePem });
  hosts.forEach((h, i) => {
    const entry = ours[i + 1];
    expect(entry).toMatchObject({ path: h.path, owner: "root:root", permissions: "0644" });
    expect(parseToml(String(entry.content))).toEqual({ server: h.server, host });
  });
  return { paths: ours.map((f) => f.path), commands: [], bundleHash: createHash("sha256").update(bundlePem).digest("hex") };
}




/**
 * The real API with a pause between our read and our write, as a slow client would have: the simulated
 * controller writes within 50 ms, so a pause longer than that makes the real apiserver answer 409.
 */
export function slowWriter(api: KcpApi, pauseMs: number, times = Infinity): KcpApi & { paused: number } {
  const wrapped = {
    ...api,
    paused: 0,
    async replaceKcp(...args: Parameters<KcpApi["replaceKcp"]>) {
      if (wrapped.paused < times) {
        wrapped.paused++;
        await new Promise((r) => setTimeout(r, pauseMs));
      }
      return api.replaceKcp(...args);
    },
  };
  return wrapped;
}


/** `n` distinct real CA bundles of one self-signed P-256 root each. */
export function caBundles(pki: TestPki, n: number): string[] {
  return Array.from({ length: n }, (_, i) => pki.root(`KCP Test CA ${i}`).certPem);
}

/**
 * Lease, conflict and rollout timings short enough for tests (2 s leases, 10–200 ms backoff, 25 ms rollout
 * polls), shared by the KCP and worker sequencer tests; `events` collects the timeline.
 */
export function fastOptions<E>(holder: string, events: E[] = []) {
  return {
    holder,
    lease: { durationSeconds: 2, retryMs: 50, waitTimeoutMs: 20_000 },
    conflict: { deadlineMs: 20_000, baseDelayMs: 10, maxDelayMs: 200 },
    rollout: { timeoutMs: 20_000, pollMs: 25 },
    onEvent: (e: E) => events.push(e),
  };
}

let otherProductUpdates = 0;

/** The platform's file another product rewrites in `anotherProductInBetween`. */
export const OTHER_PRODUCT_PATH = "/etc/kubernetes/admission.yaml";

/**
 * The real API with another product updating its own file in the KCP between our read and our first write
 * (a read-modify-write of the whole object, as any client of the atomic `files` list must do): our write
 * then carries a stale resourceVersion and the apiserver answers the incident's 409. The real KCP
 * controller writes the object only while it reconciles, so this is the concurrent writer that makes the
 * conflict certain in every run; `updates` holds the contents the other product wrote.
 */
export function anotherProductInBetween(api: KcpApi, times = 1): KcpApi & { updates: string[] } {
  const wrapped = {
    ...api,
    updates: [] as string[],
    async replaceKcp(...args: Parameters<KcpApi["replaceKcp"]>) {
      if (wrapped.updates.length < times) {
        const [ref, version] = args;
        const kcp = await api.getKcp(ref, version);
        // Distinct every time: an update that changes nothing is not stored and would not move the resourceVersion.
        const content = `apiVersion: v1\nkind: Config\n# rewritten by another product, update ${++otherProductUpdates}\n`;
        const spec = kcp.spec!.kubeadmConfigSpec!;
        const files = (spec.files as FileEntry[]).map((f) => (f.path === OTHER_PRODUCT_PATH ? { ...f, content } : f));
        await api.replaceKcp(ref, version, { ...kcp, spec: { ...kcp.spec, kubeadmConfigSpec: { ...spec, files } } });
        wrapped.updates.push(content);
      }
      return api.replaceKcp(...args);
    },
  };
  return wrapped;
}

/**
 * Another writer's full update (kubectl edit, a GitOps sync) under its own field manager: read, change,
 * replace with the resourceVersion read, and on a 409 read again, as a sync loop does; returns what the
 * apiserver stored. The controllers write the same objects meanwhile, so a single replace would fail on
 * their writes, not on ours.
 */
export async function replaceAsAnotherWriter<T extends { metadata?: object }>(
  custom: k8s.CustomObjectsApi, ref: { group: string; version: string; namespace: string; plural: string; name: string }, change: (live: T) => T, fieldManager = "platform-gitops",
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const live = (await custom.getNamespacedCustomObject(ref)) as T;
    try {
      return (await custom.replaceNamespacedCustomObject({ ...ref, body: change(live), fieldManager })) as T;
    } catch (e) {
      if ((e as { code?: number }).code !== 409 || attempt >= 50) throw e;
    }
  }
}
