// The rotation preflight's judgement (core/rotation/preflight.ts) on real certificates and live-state
// snapshots shaped as the apiserver returns them; reading them from a real apiserver and a real TLS
// endpoint is test/k8s/rotation-preflight.test.ts.
import { KcpObject, LeaseObject } from "../../core/kcp/api";
import { OWNERSHIP_ANNOTATION, desiredEntries, pemHash } from "../../core/kcp/plan";
import { microTime } from "../../core/kcp/lease";
import { LiveState, PreflightPlan, evaluatePreflight, preflightVerdict, readLiveState } from "../../core/rotation/preflight";
import { issuingGeneration } from "../../core/rotation/served";
import { assembleBundle, bundleHash } from "../../core/x509/bundle";
import { parsePemCertificates } from "../../core/x509/pem";
import { Issued, TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
afterAll(() => pki.cleanup());

const registry = { host: "registry.test", port: 5000, mirrorOf: [] as string[] };
const g1 = pki.root("Lab CA G1");
const g2 = pki.root("Lab CA G2");
const servedBy = (ca: Issued) => parsePemCertificates(pki.leaf(ca).certPem, "served").certs;
const bundleOf = (...cas: Issued[]) => {
  const pem = assembleBundle(cas.map((c) => c.certPem)).pem;
  return { pem, hash: bundleHash(pem) };
};
const generate = (generations: number[], extra: Partial<PreflightPlan> = {}): PreflightPlan =>
  ({ registries: [registry], ca: { mode: "generate", commonName: "Lab CA", generations }, clusters: [], ...extra });
const live = (extra: Partial<LiveState> = {}): LiveState =>
  ({ readAt: new Date(), served: [], controlPlanes: [], machineDeployments: [], records: [], leases: [], missing: [], unreachable: [], ...extra });
const kinds = (f: { kind: string }[]) => f.map((x) => x.kind);

describe("the served certificate's CA must stay in the bundle", () => {
  test("its generation is read from the issuer's name", () => {
    expect(issuingGeneration(servedBy(g1)[0], "Lab CA")).toBe(1);
    expect(issuingGeneration(servedBy(g2)[0], "Other CA")).toBeUndefined();
  });

  test("caRetainGenerations 0 while generation 1's certificate is served is refused before the bundle is known", () => {
    const findings = evaluatePreflight(generate([2]), live({ served: [{ source: "https://registry.test:5000", chain: servedBy(g1) }] }));
    expect(kinds(findings)).toEqual(["overlap"]);
    expect(findings[0].message).toContain("serves a certificate from CA generation 1, which would leave the bundle (generations 2)");
    expect(findings[0].message).toContain("pulumi config set registry-trust:caRetainGenerations 1");
    expect(preflightVerdict(findings, true).error).toMatch(/^Rotation preflight refused; nothing was changed:\n {2}- overlap: https:\/\/registry.test:5000 serves/);
  });

  test("a generation still in the bundle passes, and the bundle's CAs must really have issued it", () => {
    const state = live({ served: [{ source: "https://registry.test:5000", chain: servedBy(g1) }] });
    expect(evaluatePreflight(generate([2, 1]), state)).toEqual([]);
    expect(evaluatePreflight(generate([2, 1]), state, bundleOf(g2, g1))).toEqual([]);
    // A CA that carries generation 1's name but not its key: only the signature check can tell.
    const impostor = pki.root("Lab CA G1");
    const findings = evaluatePreflight(generate([2, 1]), state, bundleOf(g2, impostor));
    expect(kinds(findings)).toEqual(["overlap"]);
    expect(findings[0].message).toMatch(/which the new bundle does not trust \((UNKNOWN_AUTHORITY|BAD_SIGNATURE)\)/);
  });

  test("import mode: an enterprise bundle that drops the root of the served chain is refused", () => {
    const r1 = pki.root("Enterprise R1");
    const r2 = pki.root("Enterprise R2");
    const state = live({ served: [{ source: "https://registry.test:5000", chain: servedBy(r1) }] });
    const plan: PreflightPlan = { registries: [registry], ca: { mode: "import" }, clusters: [] };
    expect(evaluatePreflight(plan, state, bundleOf(r2, r1))).toEqual([]);
    expect(kinds(evaluatePreflight(plan, state, bundleOf(r2)))).toEqual(["overlap"]);
  });

  test("a certificate from a CA that is not this stack's is a note, not a refusal (first switch)", () => {
    const foreign = pki.root("Somebody Else");
    const findings = evaluatePreflight(generate([1]), live({ served: [{ source: "https://registry.test:5000", chain: servedBy(foreign) }] }), bundleOf(g1));
    expect(kinds(findings)).toEqual(["note"]);
    expect(preflightVerdict(findings, false)).toEqual({ warnings: [expect.stringContaining("not issued by a CA of this stack")] });
  });
});

describe("the previous rotation must be finished", () => {
  const kcpRef = { namespace: "clusters", name: "cp" };
  const leaseOf = (holder: string, renewedMsAgo: number, duration = 30): LeaseObject => ({
    metadata: { namespace: "clusters", name: "registry-trust-kcp-cp" },
    spec: { holderIdentity: holder, leaseDurationSeconds: duration, renewTime: microTime(Date.now() - renewedMsAgo) },
  });

  test("a live Lease means a rotation is running: refused, naming the holder and when its Lease would count as expired", () => {
    const findings = evaluatePreflight(generate([1]), live({ leases: [{ cluster: "mgmt", kind: "KubeadmControlPlane", target: kcpRef, lease: leaseOf("registry-trust/prod/run-7", 5_000), liveness: "live" }] }));
    expect(kinds(findings)).toEqual(["unfinished"]);
    expect(findings[0].message).toMatch(/KubeadmControlPlane clusters\/cp in cluster mgmt is being changed right now: Lease clusters\/registry-trust-kcp-cp is held by "registry-trust\/prod\/run-7".* nobody renews it for 30 s/);
  });

  test("an expired Lease (a run that died) does not block", () => {
    expect(evaluatePreflight(generate([1]), live({ leases: [{ cluster: "mgmt", kind: "MachineDeployment", target: kcpRef, lease: leaseOf("x", 120_000), liveness: "expired" }] }))).toEqual([]);
  });

  /** A KCP carrying `bundlePem` as registry-trust writes it, at `generation`, with its rollout done or not. */
  function kcpWith(bundlePem: string, rolledOut: boolean, editContent?: string): KcpObject {
    const d = desiredEntries("cp", { endpoints: [registry], bundlePem });
    const files = d.files.map((f) => (editContent && f.content === bundlePem ? { ...f, content: editContent } : f));
    return {
      metadata: { namespace: "clusters", name: "cp", generation: 4, annotations: { [OWNERSHIP_ANNOTATION]: JSON.stringify(d.ownership) } },
      spec: { replicas: 3, kubeadmConfigSpec: { files } },
      status: {
        observedGeneration: 4, replicas: 3, readyReplicas: 3, upToDateReplicas: rolledOut ? 3 : 1,
        conditions: [{ type: "RollingOut", status: rolledOut ? "False" : "True", observedGeneration: 4 }],
      },
    };
  }
  const cp = (kcp: KcpObject) => ({ cluster: "mgmt", ref: kcpRef, kcp, version: "v1beta2" as const });
  const old = bundleOf(g1);
  const next = bundleOf(g2, g1);

  test("a rollout still running: deferred without the bundle, refused for a new bundle, allowed for a rerun of the same one", () => {
    const state = live({ controlPlanes: [cp(kcpWith(old.pem, false))] });
    expect(kinds(evaluatePreflight(generate([2, 1]), state))).toEqual(["deferred"]);
    const refused = evaluatePreflight(generate([2, 1]), state, next);
    expect(kinds(refused)).toEqual(["unfinished"]);
    expect(refused[0].message).toMatch(/KubeadmControlPlane clusters\/cp in cluster mgmt has not finished rolling out its current spec \(bundle [0-9a-f]{12}…\): generation 4: 1\/3 up to date/);
    expect(evaluatePreflight(generate([1]), state, old)).toEqual([]);
    expect(preflightVerdict(evaluatePreflight(generate([2, 1]), state), false).error).toBeUndefined();
  });

  test("a KCP whose bundle another writer replaced is refused", () => {
    const findings = evaluatePreflight(generate([1]), live({ controlPlanes: [cp(kcpWith(old.pem, true, g2.certPem))] }), old);
    expect(kinds(findings)).toEqual(["unfinished"]);
    expect(findings[0].message).toContain(`carries at /etc/containerd/certs.d/registry.test:5000/ca.crt a bundle (sha256 ${pemHash(g2.certPem).slice(0, 12)}…) other than the one registry-trust last wrote there`);
  });

  test("a KCP carrying a bundle other than the last switch recorded: refused unless this run distributes that very bundle", () => {
    const state = live({ controlPlanes: [cp(kcpWith(next.pem, true))], servingRecord: { bundleHash: old.hash } });
    const third = bundleOf(pki.root("Lab CA G3"), g2);
    const refused = evaluatePreflight(generate([3, 2]), state, third);
    expect(kinds(refused)).toEqual(["unfinished"]);
    expect(refused[0].message).toContain(`carries bundle ${next.hash.slice(0, 12)}…, but the last completed rotation recorded ${old.hash.slice(0, 12)}… and this run distributes ${third.hash.slice(0, 12)}…`);
    expect(evaluatePreflight(generate([2, 1]), state, next)).toEqual([]);
  });

  test("the stack's record in the object's namespace decides, over the Secret's", () => {
    const recorded = (hash: string) => live({ controlPlanes: [cp(kcpWith(next.pem, true))], servingRecord: { bundleHash: old.hash }, records: [{ cluster: "mgmt", namespace: "clusters", bundleHash: hash }] });
    expect(evaluatePreflight(generate([3, 2]), recorded(next.hash), bundleOf(pki.root("Lab CA G3"), g2))).toEqual([]);
    expect(kinds(evaluatePreflight(generate([3, 2]), recorded(old.hash), bundleOf(pki.root("Lab CA G3"), g2)))).toEqual(["unfinished"]);
  });
});

describe("a MachineDeployment still rolling out", () => {
  const b = bundleOf(g2, g1);
  const md = (upToDate: number) => ({
    cluster: "mgmt", ref: { namespace: "clusters", name: "md-0" }, version: "v1beta2" as const,
    md: { metadata: { name: "md-0", generation: 3 }, spec: { replicas: 2 }, status: { observedGeneration: 3, replicas: 2, readyReplicas: 2, upToDateReplicas: upToDate } },
    template: { metadata: { name: "md-0-rt-abc", annotations: { [OWNERSHIP_ANNOTATION]: JSON.stringify({ paths: [], commands: [], bundleHash: b.hash }) } } },
  });

  test("deferred without the bundle, allowed for a rerun of its own bundle, refused for a new one", () => {
    expect(evaluatePreflight(generate([2, 1]), live({ machineDeployments: [md(2)] }), bundleOf(g1))).toEqual([]);
    const state = live({ machineDeployments: [md(1)] });
    expect(kinds(evaluatePreflight(generate([2, 1]), state))).toEqual(["deferred"]);
    expect(evaluatePreflight(generate([2, 1]), state, b)).toEqual([]);
    const refused = evaluatePreflight(generate([2, 1]), state, bundleOf(g1));
    expect(kinds(refused)).toEqual(["unfinished"]);
    expect(refused[0].message).toContain(`MachineDeployment clusters/md-0 in cluster mgmt has not finished rolling out its current template (md-0-rt-abc, bundle ${b.hash.slice(0, 12)}…): generation 3: 1/2 up to date`);
  });
});

describe("live state that cannot be read", () => {
  test("is an error naming what and how to override, or a warning with the override", () => {
    const findings = evaluatePreflight(generate([1]), live({ unreachable: ["registry registry.test:5000: connect ECONNREFUSED 127.0.0.1:5000"] }));
    const strict = preflightVerdict(findings, false);
    expect(strict.error).toContain("- unreachable: registry registry.test:5000: connect ECONNREFUSED");
    expect(strict.error).toContain("set registry-trust:preflightAllowUnreachable true");
    expect(preflightVerdict(findings, true)).toEqual({ warnings: [expect.stringContaining("(going on: preflightAllowUnreachable is true)")] });
  });

  test("readLiveState turns failed reads into unreachable entries and a missing KCP into a refusal", async () => {
    const plan = generate([1], { clusters: [{ name: "gone", controlPlanes: [{ namespace: "a", name: "b" }], machineDeployments: [] }, { name: "here", controlPlanes: [{ namespace: "a", name: "b" }], machineDeployments: [{ namespace: "a", name: "md-0" }] }] });
    const notFound = Object.assign(new Error("not found"), { code: 404 });
    const state = await readLiveState(plan, {
      fetchChain: async () => { throw new Error("connect ECONNREFUSED 127.0.0.1:5000"); },
      cluster: (name) => {
        if (name === "gone") throw new Error("ENOENT: no such file or directory, open '/nope/kubeconfig'");
        return {
          servedKcpVersions: async () => ["v1beta1", "v1beta2"],
          getKcp: async () => { throw notFound; },
          getLease: async () => undefined,
          getSecret: async () => undefined,
          servedVersions: async () => ["v1beta2"],
          getMachineDeployment: async () => { throw notFound; },
          getTemplate: async () => undefined,
          getConfigMap: async () => undefined,
        };
      },
    });
    expect(state.unreachable).toEqual([
      "registry registry.test:5000: connect ECONNREFUSED 127.0.0.1:5000",
      "cluster gone: ENOENT: no such file or directory, open '/nope/kubeconfig'",
    ]);
    expect(kinds(evaluatePreflight(plan, state))).toEqual(["unreachable", "unreachable", "missing", "missing"]);
    expect(state.missing[0]).toMatch(/^KubeadmControlPlane a\/b does not exist in cluster here/);
    expect(state.missing[1]).toMatch(/^MachineDeployment a\/md-0 does not exist in cluster here: fix clusters\[\].machineDeployments/);
  });

  test("an apiserver that never answers is unreachable after the timeout, not a hung preview", async () => {
    const plan = generate([1], { clusters: [{ name: "blackhole", controlPlanes: [], machineDeployments: [{ namespace: "a", name: "md" }] }] });
    const never = new Promise<never>(() => undefined);
    const state = await readLiveState(plan, {
      fetchChain: async () => [],
      cluster: () => ({ servedKcpVersions: () => never, getKcp: () => never, getLease: () => never, getSecret: () => never, servedVersions: () => never, getMachineDeployment: () => never, getTemplate: () => never, getConfigMap: () => never }),
      timeoutMs: 200,
    });
    expect(state.unreachable).toEqual(["MachineDeployment a/md in cluster blackhole: listing API versions in cluster blackhole: no answer within 200 ms"]);
  });
});

describe("Lease liveness is judged as the sequencer judges it (core/kcp/lease.ts), never by renewTime against our clock", () => {
  const target = { namespace: "a", name: "b" };
  const plan = generate([1], { clusters: [{ name: "mgmt", controlPlanes: [target], machineDeployments: [] }] });
  const kcp: KcpObject = { metadata: { namespace: "a", name: "b", generation: 1 }, spec: { replicas: 1 }, status: { observedGeneration: 1, replicas: 1, readyReplicas: 1, upToDateReplicas: 1, conditions: [{ type: "RollingOut", status: "False" }] } };
  /** A reader whose Lease reads come from `leases`, one per call, the last one repeated. */
  const reader = (leases: (LeaseObject | undefined)[]) => {
    let reads = 0;
    return {
      reads: () => reads,
      readers: {
        fetchChain: async () => [],
        leasePollMs: 50,
        cluster: () => ({
          servedKcpVersions: async () => ["v1beta2"],
          getKcp: async () => kcp,
          getLease: async () => leases[Math.min(reads++, leases.length - 1)],
          getSecret: async () => undefined,
          servedVersions: async () => ["v1beta2"],
          getMachineDeployment: async () => kcp,
          getTemplate: async () => undefined,
          getConfigMap: async () => undefined,
        }),
      },
    };
  };
  const lease = (renewTime: string, rv: string, duration = 1): LeaseObject => ({
    metadata: { namespace: "a", name: "registry-trust-kcp-b", resourceVersion: rv },
    spec: { holderIdentity: "registry-trust/prod/run-9", leaseDurationSeconds: duration, renewTime },
  });

  test("a writer whose clock is two minutes behind and who renews while we watch is live: refused", async () => {
    const behind = (s: number) => microTime(Date.now() - 120_000 + s * 1000);
    const r = reader([lease(behind(0), "10"), lease(behind(0), "10"), lease(behind(0.3), "11")]);
    const findings = evaluatePreflight(plan, await readLiveState(plan, r.readers));
    expect(kinds(findings)).toEqual(["unfinished"]);
    expect(findings[0].message).toMatch(/KubeadmControlPlane a\/b in cluster mgmt is being changed right now: Lease a\/registry-trust-kcp-b is held by "registry-trust\/prod\/run-9"/);
  });

  test("a Lease left by a dead run whose clock was ahead (renewTime in our future) is expired once unchanged for its duration: not refused", async () => {
    const r = reader([lease(microTime(Date.now() + 600_000), "10")]);
    const started = Date.now();
    const state = await readLiveState(plan, r.readers);
    expect(evaluatePreflight(plan, state)).toEqual([]);
    // Judged by our own observation: it took the Lease's whole duration (1 s) of watching.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    expect(r.reads()).toBeGreaterThan(1);
  });
});

describe("one failed read does not hide the others", () => {
  test("each object is read and reported on its own", async () => {
    const plan = generate([1], { clusters: [{ name: "mgmt", controlPlanes: [{ namespace: "a", name: "broken" }, { namespace: "a", name: "fine" }], machineDeployments: [{ namespace: "a", name: "md-0" }] }] });
    const failing = Object.assign(new Error("etcdserver: request timed out"), { code: 500 });
    const kcp = (name: string): KcpObject => ({ metadata: { namespace: "a", name, generation: 1 }, spec: { replicas: 1 }, status: { observedGeneration: 1, replicas: 1, readyReplicas: 1, upToDateReplicas: 1, conditions: [{ type: "RollingOut", status: "False" }] } });
    const md: KcpObject = { metadata: { namespace: "a", name: "md-0", generation: 1 }, spec: { replicas: 1, template: { spec: { bootstrap: { configRef: { apiGroup: "bootstrap.cluster.x-k8s.io", kind: "KubeadmConfigTemplate", name: "md-0-base" } } } } }, status: { observedGeneration: 1, replicas: 1, readyReplicas: 1, upToDateReplicas: 1 } };
    const state = await readLiveState(plan, {
      fetchChain: async () => [],
      cluster: () => ({
        servedKcpVersions: async () => ["v1beta2"],
        getKcp: async (ref) => { if (ref.name === "broken") throw failing; return kcp(ref.name); },
        getLease: async () => undefined,
        getSecret: async () => undefined,
        servedVersions: async () => ["v1beta2"],
        getMachineDeployment: async () => md,
        getTemplate: async (ref) => ({ metadata: { namespace: "a", name: ref.name } }),
        getConfigMap: async () => undefined,
      }),
    });
    expect(state.unreachable).toEqual(["KubeadmControlPlane a/broken in cluster mgmt: etcdserver: request timed out"]);
    expect(state.controlPlanes.map((c) => c.ref.name)).toEqual(["fine"]);
    expect(state.machineDeployments.map((m) => m.ref.name)).toEqual(["md-0"]);
  });
});
