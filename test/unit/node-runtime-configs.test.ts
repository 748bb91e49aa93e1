/**
 * The corpus of runtime configurations (test/fixtures/runtime-configs) through the real node library
 * functions under sh: containerd files judged by the real containerd 1.6 parser on this machine
 * (`containerd config dump`), k3s/RKE2 registries.yaml edited in block style. Each result is checked
 * with a real parser (smol-toml, yaml, containerd itself): it loads, it differs from the input only in
 * what we own, and the undo gives back the input byte for byte. End to end on a lab node:
 * test/lab/runtime-configs.test.ts.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseToml } from "smol-toml";
import { parse as parseYaml } from "yaml";
import { rancherRegistries } from "../../core/node/render";
import { nodeBinaries } from "../../lab/runtime";
import { CONTAINERD2_CASES, CONTAINERD_CASES, ContainerdCase, corpusPath, RANCHER_CASES } from "../fixtures/runtime-configs/corpus";

const LIB = path.join(__dirname, "..", "..", "core", "node", "lib.sh");
const CERTS = "/etc/containerd/certs.d";
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-corpus-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function lib(body: string, env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync("sh", ["-c", `set -eu; RT_OWNER=default; RT_OS=debian; . '${LIB}'\n${body}\nRT_FINISHED=1`], {
    encoding: "utf8",
    env: { PATH: process.env.PATH!, TMPDIR: dir, ...env },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Leaf paths where two parsed documents differ. */
function diffPaths(a: unknown, b: unknown, at: string[] = []): string[][] {
  const isMap = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === "object" && !Array.isArray(x);
  // A table or section present on one side only (or null there) is compared key by key against nothing.
  if ((isMap(a) || a == null) && (isMap(b) || b == null) && (isMap(a) || isMap(b))) {
    const am = isMap(a) ? a : {};
    const bm = isMap(b) ? b : {};
    const keys = new Set([...Object.keys(am), ...Object.keys(bm)]);
    return [...keys].flatMap((k) => diffPaths(am[k], bm[k], [...at, k]));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [at];
}

/** containerd 2.x, built from Go modules by scripts/node-binaries.sh (CONTAINERD2_BIN overrides). */
function containerd2(): string {
  return process.env.CONTAINERD2_BIN ?? nodeBinaries().containerd;
}

describe.each([
  ["containerd 1.6 (Debian)", "containerd", CONTAINERD_CASES],
  ["containerd 2.x (Go-module build)", "containerd2", CONTAINERD2_CASES],
] as const)("containerd config.toml, judged by %s's own parser", (_name, which, cases) => {
  // The library runs the first `containerd` on PATH: a directory holding just the one under test.
  let bin: string;
  let binary: string;
  beforeAll(() => {
    binary = which === "containerd" ? "containerd" : containerd2();
    bin = fs.mkdtempSync(path.join(os.tmpdir(), "rt-ctrd-bin-"));
    fs.symlinkSync(which === "containerd" ? spawnSync("sh", ["-c", "command -v containerd"], { encoding: "utf8" }).stdout.trim() : binary, path.join(bin, "containerd"));
  });
  afterAll(() => fs.rmSync(bin, { recursive: true, force: true }));
  const dump = (file: string) => spawnSync(path.join(bin, "containerd"), ["-c", file, "config", "dump"], { encoding: "utf8", cwd: "/" });
  // The registry table containerd reads: version 2 (1.x) or the images plugin's (2.x), either quote style.
  const dumpConfigPath = (text: string) => /\[plugins\.["'](?:io\.containerd\.grpc\.v1\.cri|io\.containerd\.cri\.v1\.images)["']\.registry\]\n\s+config_path = ["']([^"']*)["']/.exec(text)?.[1];

  test.each(cases.map((c: ContainerdCase) => [c.file, c] as const))("%s", (_f, c) => {
    // Drop-ins live under /etc/containerd on a node; here under the temp dir (the one rewrite of the input).
    const etc = path.join(dir, "etc-containerd");
    fs.mkdirSync(etc);
    for (const d of c.dropIns ?? []) fs.cpSync(corpusPath(path.join("containerd-shapes", d)), path.join(etc, d), { recursive: true });
    const input = fs.readFileSync(corpusPath(c.file), "utf8").split("/etc/containerd/conf.d").join(`${etc}/conf.d`);
    const cfg = path.join(etc, "config.toml");
    fs.writeFileSync(cfg, input);
    const r = lib(`rt_plan_containerd_config '${CERTS}' 1
cat "$RT_WORK/plan"; echo "restart=$RT_CONTAINERD_RESTART"`, { RT_CONTAINERD_CONFIG: cfg, PATH: `${bin}:${process.env.PATH}` });
    // Nothing is ever written at plan time, whatever the outcome.
    expect(fs.readFileSync(cfg, "utf8")).toBe(input);
    expect(fs.readdirSync(etc).sort()).toEqual(["config.toml", ...(c.dropIns ?? [])].sort());

    if (c.outcome.kind === "refused") {
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(c.outcome.message);
      expect(r.stderr).toContain("then run again");
      return;
    }
    expect(r.code).toBe(0);
    const plan = r.stdout.split("\n").filter((l) => /^(merge|write) /.test(l));
    if (c.outcome.kind === "unchanged") {
      expect(plan).toEqual([]);
      expect(r.stdout).toContain("restart=0");
      return;
    }
    expect(plan).toHaveLength(1);
    expect(r.stdout).toContain("restart=1");
    const [op, target, , b64] = plan[0].split(" ");
    expect([op, target]).toEqual(["merge", cfg]);
    const edited = Buffer.from(b64, "base64").toString("utf8");

    // containerd loads the result and reads our config_path, with every other setting as before.
    fs.writeFileSync(path.join(dir, "edited.toml"), edited);
    const before = dump(cfg);
    const after = dump(path.join(dir, "edited.toml"));
    expect(after.status).toBe(0);
    expect(dumpConfigPath(after.stdout)).toBe(CERTS);
    const lines = (t: string) => t.split("\n").filter((l) => !l.startsWith("imports = "));
    const changed = lines(after.stdout).filter((l, i) => l !== lines(before.stdout)[i]);
    expect(changed.map((l) => l.trim().replace(/'/g, '"'))).toEqual([`config_path = "${CERTS}"`]);
    // smol-toml agrees: the only difference is config_path in the CRI registry table.
    const diff = diffPaths(parseToml(input), parseToml(edited));
    expect(diff).toHaveLength(1);
    expect(diff[0].slice(-2)).toEqual(["registry", "config_path"]);
    expect(["io.containerd.grpc.v1.cri", "cri", "io.containerd.cri.v1.images"]).toContain(diff[0][1]);
    // The undo (remove) gives back the input byte for byte.
    fs.writeFileSync(cfg, edited);
    expect(lib(`rt_toml_unedit '${cfg}'`).stdout).toBe(input);
  });

  test("no config file: a file of ours with only config_path, which containerd loads", () => {
    const cfg = path.join(dir, "absent", "config.toml");
    const r = lib(`rt_plan_containerd_config '${CERTS}' 1; cat "$RT_WORK/plan"`, { RT_CONTAINERD_CONFIG: cfg, PATH: `${bin}:${process.env.PATH}` });
    expect(r.code).toBe(0);
    const [op, target, mode, b64] = r.stdout.trim().split(" ");
    expect([op, target, mode]).toEqual(["write", cfg, "0644"]);
    const text = Buffer.from(b64, "base64").toString("utf8");
    expect(text.split("\n")[0]).toMatch(/^# Managed by registry-trust \(owner default\)/);
    const parsed = parseToml(text);
    // The version of containerd's own defaults: 2 for 1.x, 4 for 2.4 (nothing to migrate on load).
    const version = Number(/^version = (\d+)/m.exec(spawnSync(path.join(bin, "containerd"), ["config", "default"], { encoding: "utf8" }).stdout)![1]);
    const plugin = version >= 3 ? "io.containerd.cri.v1.images" : "io.containerd.grpc.v1.cri";
    expect(parsed).toEqual({ version, plugins: { [plugin]: { registry: { config_path: CERTS } } } });
    fs.mkdirSync(path.dirname(cfg));
    fs.writeFileSync(cfg, text);
    expect(dumpConfigPath(dump(cfg).stdout)).toBe(CERTS);
  });

  test("restarts not allowed: refused before anything is touched, naming the setting", () => {
    const cfg = path.join(dir, "config.toml");
    fs.copyFileSync(corpusPath("containerd/1.6-default.toml"), cfg);
    const r = lib(`rt_plan_containerd_config '${CERTS}' 0`, { RT_CONTAINERD_CONFIG: cfg });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("allowRuntimeRestart=false");
  });

  test("a file containerd cannot load is refused with containerd's own error", () => {
    const cfg = path.join(dir, "config.toml");
    fs.writeFileSync(cfg, 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n[plugins."io.containerd.grpc.v1.cri".registry]\n');
    const r = lib(`rt_plan_containerd_config '${CERTS}' 1`, { RT_CONTAINERD_CONFIG: cfg });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`containerd cannot load ${cfg}`);
    expect(r.stderr).toContain("duplicated tables");
  });
});

describe("k3s/RKE2 registries.yaml: minimal block-style edit (no YAML parser on a node)", () => {
  const CA = "/etc/rancher/k3s/registry-trust-default-ca.crt";
  test.each(RANCHER_CASES.map((c) => [`${c.file} mirroring ${c.mirrorOf.join(",")}`, c] as const))("%s", (_n, c) => {
    const registries = [{ host: "registry.test", port: 5000, mirrorOf: [...c.mirrorOf] }, { host: "fd00::1", port: 5000, mirrorOf: [] }];
    const { yaml: ours, keys } = rancherRegistries(registries, CA);
    const input = fs.readFileSync(corpusPath(c.file), "utf8");
    const file = path.join(dir, "registries.yaml");
    fs.writeFileSync(file, input);
    fs.writeFileSync(path.join(dir, "ours.yaml"), ours);
    fs.writeFileSync(path.join(dir, "none.yaml"), "");
    const edit = (from: string, with_: string) => lib(`rt_yaml_edit '${from}' '${path.join(dir, with_)}' '${keys.join(" ")}'`);
    // Through the planning function, as the node script calls it: refusals come with the fix.
    const planned = lib(`rt_plan_registries_yaml '${file}' '${Buffer.from(ours).toString("base64")}' '${keys.join(" ")}'; cat "$RT_WORK/plan"`);
    expect(fs.readFileSync(file, "utf8")).toBe(input);
    if (c.outcome.kind === "refused") {
      expect(planned.code).toBe(1);
      expect(planned.stderr).toContain(c.outcome.message);
      expect(planned.stderr).toContain("then run again");
      return;
    }
    expect(planned.stderr).toBe("");
    const r = edit(file, "ours.yaml");
    expect(r.code).toBe(0);
    const edited = r.stdout;
    expect(planned.stdout).toContain(`merge ${file} - ${Buffer.from(edited).toString("base64")}`);

    // Parses, and differs from the input only under our keys, which hold exactly our entries.
    const before = (parseYaml(input) ?? {}) as Record<string, Record<string, unknown> | null>;
    const after = parseYaml(edited) as Record<string, Record<string, unknown>>;
    const oursDoc = parseYaml(ours) as Record<string, Record<string, unknown>>;
    for (const p of diffPaths(before, after)) {
      expect(["mirrors", "configs"]).toContain(p[0]);
      expect(keys).toContain(p[1]);
    }
    for (const section of ["mirrors", "configs"]) {
      for (const [k, v] of Object.entries(oursDoc[section] ?? {})) expect(after[section][k]).toEqual(v);
      for (const [k, v] of Object.entries(before[section] ?? {})) expect(after[section][k]).toEqual(v);
    }
    // Idempotent: editing the result again changes nothing.
    fs.writeFileSync(path.join(dir, "edited.yaml"), edited);
    expect(edit(path.join(dir, "edited.yaml"), "ours.yaml").stdout).toBe(edited);
    // Remove: back to the input byte for byte.
    const removed = edit(path.join(dir, "edited.yaml"), "none.yaml");
    expect(removed.code).toBe(0);
    expect(removed.stdout).toBe(input);
  });
});
