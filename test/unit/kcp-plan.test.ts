// Pure planning of our entries in a KubeadmControlPlane (core/kcp/plan.ts); the sequencer's behaviour on a
// real apiserver is tested in test/k8s/kcp-sequencer.test.ts.
import { KcpObject } from "../../core/kcp/api";
import { isKcpError } from "../../core/kcp/errors";
import { bundleHash } from "../../core/x509/bundle";
import {
  canonicalJson, desiredEntries, pemHash, FileEntry, KCP_CONTENT_LIMIT, NOTHING, OWNERSHIP_ANNOTATION, planMerge, readOwnership,
  secretName, trustStoreCommand, verifyEntries,
} from "../../core/kcp/plan";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const endpoints = [{ host: "registry.test", port: 5000, mirrorOf: ["docker.io"] }];
const others: FileEntry[] = [
  { path: "/etc/a", content: "a\n", owner: "root:root", zzz: "unknown field kept" },
  { path: "/etc/b", contentFrom: { secret: { name: "s", key: "k" } } },
];

function kcp(files: FileEntry[] | undefined, annotations?: Record<string, string>, commands?: string[]): KcpObject {
  return {
    metadata: { name: "cp", namespace: "ns", generation: 4, resourceVersion: "77", ...(annotations ? { annotations } : {}) },
    spec: { replicas: 3, kubeadmConfigSpec: { ...(files ? { files } : {}), ...(commands ? { preKubeadmCommands: commands } : {}) } },
  };
}

test("our files: the bundle per endpoint and hosts.toml per certs.d directory, mirrored upstream included", () => {
  const d = desiredEntries("cp", { endpoints, bundlePem: PEM });
  expect(d.files.map((f) => f.path)).toEqual([
    "/etc/containerd/certs.d/registry.test:5000/ca.crt",
    "/etc/containerd/certs.d/registry.test:5000/hosts.toml",
    "/etc/containerd/certs.d/docker.io/hosts.toml",
  ]);
  expect(d.files[0]).toEqual({ path: d.files[0].path, owner: "root:root", permissions: "0644", content: PEM });
  expect(d.files[1].content).toContain('ca = "/etc/containerd/certs.d/registry.test:5000/ca.crt"');
  expect(d.secret).toBeUndefined();
  expect(d.ownership.paths).toEqual(d.files.map((f) => f.path));
  expect(d.ownership.bundleHash).toBe(bundleHash(PEM));
  expect(pemHash(PEM)).toBe(bundleHash(PEM));
});

test("a bundle above the threshold, and always above CAPI's 10,240 characters, goes to a content-addressed Secret", () => {
  const small = desiredEntries("cp", { endpoints, bundlePem: PEM, inlineMaxChars: 10 });
  expect(small.secret).toEqual({ name: small.ownership.secret, key: "ca.crt", data: PEM });
  expect(small.files[0]).toMatchObject({ contentFrom: { secret: { name: small.secret!.name, key: "ca.crt" } } });
  expect(small.files[0].content).toBeUndefined();

  const big = "x".repeat(KCP_CONTENT_LIMIT + 1);
  expect(desiredEntries("cp", { endpoints, bundlePem: big, inlineMaxChars: 1_000_000 }).secret).toBeDefined();
  expect(desiredEntries("cp", { endpoints, bundlePem: "x".repeat(KCP_CONTENT_LIMIT) }).secret).toBeUndefined();
  expect(secretName("cp", "ab".repeat(32))).toBe("cp-registry-trust-ca-abababababab");
  expect(secretName("a".repeat(253), "ab".repeat(32)).length).toBeLessThanOrEqual(253);
});

test("merge replaces ours in place, keeps every other entry untouched and appends new ones", () => {
  const d = desiredEntries("cp", { endpoints, bundlePem: PEM });
  const first = planMerge(kcp(others), d, { version: "v1beta2" });
  const files = first.update!.spec!.kubeadmConfigSpec!.files as FileEntry[];
  expect(files.slice(0, 2)).toEqual(others);
  expect(files.slice(2)).toEqual(d.files);
  expect(JSON.parse(first.update!.metadata.annotations![OWNERSHIP_ANNOTATION])).toEqual(d.ownership);
  expect(first.update!.metadata.resourceVersion).toBe("77");

  // A rotation: same paths, new content, at the same positions even if other writers appended after us.
  const rotated = desiredEntries("cp", { endpoints, bundlePem: PEM.replace("MIIB", "MIIC") });
  const later = [...files, { path: "/etc/c", content: "c" }];
  const second = planMerge(kcp(later, first.update!.metadata.annotations), rotated, { version: "v1beta2" });
  const after = second.update!.spec!.kubeadmConfigSpec!.files as FileEntry[];
  expect(after.map((f) => f.path)).toEqual(later.map((f) => f.path));
  expect(after[2].content).toContain("MIIC");
  expect(after[5]).toBe(later[5]);
});

test("planning the same entries again changes nothing", () => {
  const d = desiredEntries("cp", { endpoints, bundlePem: PEM, osTrustStore: "debian" });
  const once = planMerge(kcp(others, undefined, ["echo x"]), d, { version: "v1beta1" }).update!;
  expect(planMerge(once, d, { version: "v1beta1" }).update).toBeUndefined();
  expect(verifyEntries(once, d)).toBeUndefined();
});

test("a file at our path that we do not own is refused unless adopted", () => {
  const d = desiredEntries("cp", { endpoints, bundlePem: PEM });
  const theirs = [...others, { path: d.files[0].path, content: "someone else's CA" }];
  let err: unknown;
  try {
    planMerge(kcp(theirs), d, { version: "v1beta2" });
  } catch (e) {
    err = e;
  }
  expect(isKcpError(err, "FOREIGN_FILE")).toBe(true);
  expect((err as Error).message).toContain(d.files[0].path);
  expect((err as Error).message).toContain("adopt");
  const adopted = planMerge(kcp(theirs), d, { version: "v1beta2", adopt: true }).update!;
  expect((adopted.spec!.kubeadmConfigSpec!.files as FileEntry[]).filter((f) => f.path === d.files[0].path)).toEqual([d.files[0]]);
});

test("preKubeadmCommands: one idempotent entry per OS family, replaced on change and removed with us", () => {
  expect(trustStoreCommand("rhel", "/x/ca.crt")).toBe("mkdir -p /etc/pki/ca-trust/source/anchors && cp '/x/ca.crt' /etc/pki/ca-trust/source/anchors/registry-trust.crt && update-ca-trust extract");
  expect(trustStoreCommand("auto", "/x/ca.crt")).toMatch(/^if \[ -d \/etc\/pki\/ca-trust\/source\/anchors \]; then .*; fi$/);
  const deb = desiredEntries("cp", { endpoints, bundlePem: PEM, osTrustStore: "debian" });
  const first = planMerge(kcp(others, undefined, ["echo platform"]), deb, { version: "v1beta2" }).update!;
  expect(first.spec!.kubeadmConfigSpec!.preKubeadmCommands).toEqual(["echo platform", deb.commands[0]]);
  const suse = desiredEntries("cp", { endpoints, bundlePem: PEM, osTrustStore: "suse" });
  const second = planMerge(first, suse, { version: "v1beta2" }).update!;
  expect(second.spec!.kubeadmConfigSpec!.preKubeadmCommands).toEqual(["echo platform", suse.commands[0]]);
  const removed = planMerge(second, NOTHING, { version: "v1beta2" }).update!;
  expect(removed.spec!.kubeadmConfigSpec!.preKubeadmCommands).toEqual(["echo platform"]);
  expect(removed.spec!.kubeadmConfigSpec!.files).toEqual(others);
  expect(removed.metadata.annotations?.[OWNERSHIP_ANNOTATION]).toBeUndefined();
});

test("removing our only entries drops the lists (v1beta2 refuses empty ones)", () => {
  const d = desiredEntries("cp", { endpoints, bundlePem: PEM });
  const ours = planMerge(kcp(undefined), d, { version: "v1beta2" }).update!;
  const removed = planMerge(ours, NOTHING, { version: "v1beta2" }).update!;
  expect(removed.spec!.kubeadmConfigSpec).toEqual({});
  expect(planMerge(kcp(others), NOTHING, { version: "v1beta2" }).update).toBeUndefined();
});

test("forced rollout goes to spec.rolloutAfter in v1beta1 and spec.rollout.after in v1beta2", () => {
  const d = desiredEntries("cp", { endpoints, bundlePem: PEM });
  const at = "2030-01-01T00:00:00Z";
  expect(planMerge(kcp(others), d, { version: "v1beta1", rolloutAfter: at }).update!.spec!.rolloutAfter).toBe(at);
  const v2 = planMerge(kcp(others), d, { version: "v1beta2", rolloutAfter: at }).update!;
  expect(v2.spec!.rollout).toEqual({ after: at });
  expect(planMerge(v2, d, { version: "v1beta2", rolloutAfter: at }).update).toBeUndefined();
});

test("read-back verification names what differs", () => {
  const d = desiredEntries("cp", { endpoints, bundlePem: PEM });
  const ours = planMerge(kcp(others), d, { version: "v1beta2" }).update!;
  const tampered = JSON.parse(JSON.stringify(ours)) as KcpObject;
  (tampered.spec!.kubeadmConfigSpec!.files as FileEntry[])[2].content = "other";
  expect(verifyEntries(tampered, d)).toBe(`files differ from what was written: ${d.files[0].path}`);
  const removedThenBack = verifyEntries(ours, NOTHING, d.ownership);
  expect(removedThenBack).toContain("files we removed are back");
});

test("an ownership annotation edited by hand is refused, not guessed at", () => {
  expect(() => readOwnership(kcp(others, { [OWNERSHIP_ANNOTATION]: "{not json" }))).toThrow(/edited by hand/);
  expect(canonicalJson({ b: 1, a: { d: 1, c: 2 } })).toBe('{"a":{"c":2,"d":1},"b":1}');
});

describe("ownership per stack: two stacks writing one object keep each other's entries", () => {
  const regA = [{ host: "registry-a.test", port: 5000, mirrorOf: [] as string[] }];
  const regB = [{ host: "registry-b.test", port: 5443, mirrorOf: [] as string[] }];
  const PEM2 = PEM.replace("MIIB", "MIIC");
  const filesOf = (o: KcpObject): FileEntry[] => {
    const spec = o.kind === "KubeadmConfigTemplate" ? (o.spec!.template as { spec: { files?: FileEntry[] } }).spec : o.spec!.kubeadmConfigSpec!;
    return (spec.files ?? []) as FileEntry[];
  };
  const template = (files: FileEntry[]): KcpObject => ({ kind: "KubeadmConfigTemplate", metadata: { name: "md-0-base", namespace: "ns" }, spec: { template: { spec: { files } } } });

  for (const [kind, make] of [["KubeadmControlPlane", (f: FileEntry[]) => kcp(f)], ["KubeadmConfigTemplate", template]] as const) {
    test(`${kind}: B's write, A's rotation and B's removal each leave the other stack's entries as they were`, () => {
      const a1 = desiredEntries("cp", { endpoints: regA, bundlePem: PEM });
      const b1 = desiredEntries("cp", { endpoints: regB, bundlePem: PEM });
      const a2 = desiredEntries("cp", { endpoints: regA, bundlePem: PEM2 });
      let o = planMerge(make(others), a1, { version: "v1beta2", owner: "proj/a" }).update!;
      o = planMerge(o, b1, { version: "v1beta2", owner: "proj/b" }).update!;
      expect(filesOf(o)).toEqual([...others, ...a1.files, ...b1.files]);
      expect(verifyEntries(o, a1, NOTHING.ownership, "proj/a")).toBeUndefined();
      o = planMerge(o, a2, { version: "v1beta2", owner: "proj/a" }).update!;
      expect(filesOf(o)).toEqual([...others, ...a2.files, ...b1.files]);
      expect(verifyEntries(o, b1, NOTHING.ownership, "proj/b")).toBeUndefined();
      o = planMerge(o, NOTHING, { version: "v1beta2", owner: "proj/b" }).update!;
      expect(filesOf(o)).toEqual([...others, ...a2.files]);
      expect(readOwnership(o, "proj/a").bundleHash).toBe(pemHash(PEM2));
      expect(readOwnership(o, "proj/b")).toEqual(NOTHING.ownership);
      o = planMerge(o, NOTHING, { version: "v1beta2", owner: "proj/a" }).update!;
      expect(filesOf(o)).toEqual(others);
      expect(Object.keys(o.metadata.annotations ?? {}).filter((k) => k.startsWith(OWNERSHIP_ANNOTATION))).toEqual([]);
    });
  }

  test("a path another stack owns is refused naming that stack, and adopt takes it over from it", () => {
    const a = desiredEntries("cp", { endpoints: regA, bundlePem: PEM });
    const o = planMerge(kcp(others), a, { version: "v1beta2", owner: "proj/a" }).update!;
    let err: unknown;
    try {
      planMerge(o, desiredEntries("cp", { endpoints: regA, bundlePem: PEM2 }), { version: "v1beta2", owner: "proj/b" });
    } catch (e) {
      err = e;
    }
    expect(isKcpError(err, "FOREIGN_FILE")).toBe(true);
    expect((err as Error).message).toContain('registry-trust stack "proj/a"');
    const taken = planMerge(o, desiredEntries("cp", { endpoints: regA, bundlePem: PEM2 }), { version: "v1beta2", owner: "proj/b", adopt: true }).update!;
    expect(readOwnership(taken, "proj/a").paths).toEqual([]);
    expect(readOwnership(taken, "proj/b").bundleHash).toBe(pemHash(PEM2));
  });

  test("entries recorded before ownership per stack (one unnamed annotation): a stack takes over the paths it writes, the rest stays recorded", () => {
    const legacyA = desiredEntries("cp", { endpoints: regA, bundlePem: PEM });
    const legacyB = desiredEntries("cp", { endpoints: regB, bundlePem: PEM });
    const legacy = { ...legacyA.ownership, paths: [...legacyA.ownership.paths, ...legacyB.ownership.paths] };
    const o = kcp([...others, ...legacyA.files, ...legacyB.files], { [OWNERSHIP_ANNOTATION]: JSON.stringify(legacy) });
    const a2 = desiredEntries("cp", { endpoints: regA, bundlePem: PEM2 });
    const after = planMerge(o, a2, { version: "v1beta2", owner: "proj/a" }).update!;
    expect(filesOf(after)).toEqual([...others, ...a2.files, ...legacyB.files]);
    expect(readOwnership(after).paths).toEqual(legacyB.ownership.paths);
    expect(readOwnership(after, "proj/a").paths).toEqual(a2.ownership.paths);
  });
});
