/**
 * The node library's promise, "a failure leaves the node as it was, or says it could not", checked with
 * the real core/node/lib.sh under the system sh on files in a temp dir. Snapshots compare the whole tree:
 * files with their content, directories, symlinks, and every mode.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { TestPki } from "../../lab/openssl-pki";

const LIB = path.join(__dirname, "..", "..", "core", "node", "lib.sh");
const MARK = "# Managed by registry-trust (owner t)";
const b64 = (s: string) => Buffer.from(s).toString("base64");
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-integrity-"));
  fs.mkdirSync(path.join(dir, "tmp"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
const pki = new TestPki();
afterAll(() => pki.cleanup());

/** Every entry below `root`: type, mode, path and (files) content hash or (links) target. */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = fs.lstatSync(p);
    const rel = path.relative(root, p) || ".";
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) {
      out.push(`d ${mode} ${rel}`);
      for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
    } else if (st.isSymbolicLink()) out.push(`l ${rel} -> ${fs.readlinkSync(p)}`);
    else out.push(`f ${mode} ${rel} ${createHash("sha256").update(fs.readFileSync(p)).digest("hex")}`);
  };
  walk(root);
  return out;
}

interface Result { code: number; stdout: string; stderr: string }
/** Runs `body` after sourcing the library (owner t, TMPDIR inside the test dir). */
function lib(body: string, env: Record<string, string> = {}): Result {
  const work = path.join(dir, "tmp");
  const r = spawnSync("sh", ["-c", `set -eu; RT_OWNER=t; RT_OS=debian; . '${LIB}'\n${body}`], {
    encoding: "utf8",
    env: { PATH: process.env.PATH!, TMPDIR: work, ...env },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A directory holding links to only the named tools, for a PATH without openssl, curl or crictl. */
function toolDir(...tools: string[]): string {
  const bin = fs.mkdtempSync(path.join(dir, "bin-"));
  const base = ["sh", "cat", "cp", "mv", "rm", "rmdir", "mkdir", "mktemp", "grep", "sed", "awk", "sort", "head", "base64", "tr", "cmp", "chmod", "dirname", "find", "sleep", "printf", "test"];
  for (const t of [...base, ...tools]) {
    const r = spawnSync("sh", ["-c", `command -v ${t}`], { encoding: "utf8" });
    const p = r.stdout.trim();
    if (p.startsWith("/")) fs.symlinkSync(p, path.join(bin, t));
  }
  return bin;
}

describe("rollback puts directories back", () => {
  test("a pruned file's directory, removed by the prune, is recreated with its mode; a directory the run created is removed", () => {
    const old = path.join(dir, "certs.d", "registry.test:5443");
    fs.mkdirSync(old, { recursive: true, mode: 0o750 });
    fs.chmodSync(old, 0o750);
    fs.writeFileSync(path.join(old, "ca.crt"), `${MARK}\nold\n`);
    fs.chmodSync(path.join(old, "ca.crt"), 0o644);
    const before = tree(dir);
    const newFile = path.join(dir, "certs.d", "registry.test:5499", "deep", "ca.crt");
    const r = lib(`rt_plan_file '${newFile}' 0644 ${b64(`${MARK}\nnew\n`)}
rt_plan_prune '${dir}/certs.d/'*/ca.crt
rt_preflight; rt_apply
test ! -e '${old}' || { echo "the prune did not remove the directory" >&2; exit 7; }
rt_die "the TLS probe failed"`);
    expect(r.stderr).toContain("the TLS probe failed");
    expect(r.code).toBe(1);
    expect(tree(dir)).toEqual(before);
  });

  test("a restore that cannot be done is reported as a failure, never as 'nothing was changed'", () => {
    const sub = path.join(dir, "certs.d", "a");
    fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, "ca.crt"), `${MARK}\nold\n`);
    // Something else replaces the directory by a file between the apply and the rollback.
    const r = lib(`rt_plan_file '${sub}/ca.crt' 0644 ${b64(`${MARK}\nnew\n`)}
rt_preflight; rt_apply
rm -rf '${sub}'; : > '${sub}'
rt_die "check failed"`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toContain("nothing was changed");
    expect(r.stderr).toContain(`${sub}/ca.crt`);
    expect(r.stderr).toMatch(/rollback (was )?incomplete/i);
  });
});

describe("paths are matched as fixed strings (IPv6 endpoints have brackets)", () => {
  test("a planned write under certs.d/[fd00::1]:5000 is not pruned right after being written", () => {
    const ca = path.join(dir, "certs.d", "[fd00::1]:5000", "ca.crt");
    const r = lib(`rt_plan_file '${ca}' 0644 ${b64(`${MARK}\nv6\n`)}
rt_plan_prune '${dir}/certs.d/'*/ca.crt
rt_preflight; rt_apply; rt_finish install x`);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(fs.readFileSync(ca, "utf8")).toBe(`${MARK}\nv6\n`);
    // And on the second run, with the file present, the glob finds it and the plan keeps it.
    const again = lib(`rt_plan_file '${ca}' 0644 ${b64(`${MARK}\nv6\n`)}
rt_plan_prune '${dir}/certs.d/'*/ca.crt
rt_preflight; rt_apply; rt_finish install x`);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('"changed":[]');
    expect(fs.readFileSync(ca, "utf8")).toBe(`${MARK}\nv6\n`);
  });

  test("a path whose name is a regular expression for another journaled path is journaled on its own", () => {
    // "[ab]" as a regex matches "a": a regex journal would think [ab] is already journaled.
    const a = path.join(dir, "a");
    const ab = path.join(dir, "[ab]");
    fs.writeFileSync(ab, `${MARK}\nkeep\n`);
    const before = tree(dir);
    const r = lib(`rt_journal '${a}'; : > '${a}'; rt_journal '${ab}'; echo changed > '${ab}'; rt_die stop`);
    expect(r.code).toBe(1);
    expect(tree(dir)).toEqual(before);
  });
});

describe("set -e holes", () => {
  test("a failing store update (rt_store_update is called on the left of ||) fails the run and rolls back", () => {
    const anchors = path.join(dir, "anchors");
    const out = path.join(dir, "out");
    fs.mkdirSync(anchors);
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, "bundle.crt"), "system\n");
    const before = tree(dir);
    const r = lib(`RT_STORE_DIR='${anchors}' RT_STORE_EXT=crt RT_STORE_OUT='${out}' RT_STORE_UPDATE=false
rt_plan_store abcd ${b64(`${MARK}\nca\n`)}
rt_preflight; rt_apply; rt_apply_store; rt_finish install x`);
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain("REGISTRY_TRUST_REPORT");
    expect(r.stderr).toContain("false failed");
    expect(tree(dir)).toEqual(before);
  });

  test("a restart failing during rollback does not skip the rest of the rollback, and is reported", () => {
    const bin = path.join(dir, "fakebin");
    fs.mkdirSync(bin);
    const log = path.join(dir, "restarts.log");
    fs.writeFileSync(path.join(bin, "systemctl"), `#!/bin/sh
case "$1" in
  restart) echo "$2" >> '${log}'; [ "$2" != first ] ;;
  is-active) [ "$3" != first ] ;;
esac
`);
    fs.chmodSync(path.join(bin, "systemctl"), 0o755);
    const work = path.join(dir, "tmp");
    const r = lib(`RT_RESTARTED=' first second'; rt_die "probe failed"`, { PATH: `${bin}:${process.env.PATH}` });
    expect(r.code).toBe(1);
    expect(fs.readFileSync(log, "utf8").split("\n").filter(Boolean)).toEqual(["first", "second"]);
    expect(r.stderr).toContain("first");
    expect(r.stderr).not.toContain("nothing was changed");
    // The EXIT trap ran to its end: its work directory is gone.
    expect(fs.readdirSync(work)).toEqual([]);
  });
});

describe("verification that cannot run is not success", () => {
  const probe = (env: Record<string, string>, allow = "") =>
    lib(`RT_ALLOW_UNVERIFIED='${allow}'
rt_probe_tls registry.test:5000 /etc/ssl/certs/ca-certificates.crt
rt_probe_pull registry.test:5000/a/b:1
rt_finish install x`, env);

  test("no curl, no openssl, no crictl: the node fails, naming what it could not check", () => {
    const r = probe({ PATH: toolDir() });
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain("REGISTRY_TRUST_REPORT");
    expect(r.stderr).toContain("tls:registry.test:5000@/etc/ssl/certs/ca-certificates.crt");
    expect(r.stderr).toContain("cri-pull:registry.test:5000/a/b:1");
  });

  test("allowed explicitly: the node succeeds and its report lists the checks as unverified", () => {
    const r = probe({ PATH: toolDir() }, "1");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout.split("REGISTRY_TRUST_REPORT ")[1]);
    expect(report.verified).toEqual([]);
    expect(report.unverified).toEqual(["tls:registry.test:5000@/etc/ssl/certs/ca-certificates.crt", "cri-pull:registry.test:5000/a/b:1"]);
  });
});

describe("the openssl fallback probe (no curl) checks the host name", () => {
  test("a certificate from the trusted CA for another name is refused", async () => {
    const ca = pki.root("Probe CA");
    const other = pki.leaf(ca, ["DNS:elsewhere.test"]);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const server = spawn("openssl", ["s_server", "-accept", `127.0.0.1:${port}`, "-cert", pki.file("srv.crt", other.certPem), "-key", pki.file("srv.key", other.keyPem), "-www", "-quiet"], { stdio: "ignore" });
    try {
      const caFile = pki.file("ca.crt", ca.certPem);
      const bin = toolDir("openssl");
      // The same CA vouches for "localhost"? Only if the name is checked: it must not be accepted.
      const deadline = Date.now() + 10_000;
      let r: Result;
      for (;;) {
        r = lib(`RT_ALLOW_UNVERIFIED=; rt_probe_tls 'localhost:${port}' '${caFile}'; rt_finish install x`, { PATH: bin });
        if (!/connect:errno|Connection refused/.test(r.stderr) || Date.now() > deadline) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`TLS probe of localhost:${port} failed`);
      // The same server and CA under the right name passes: the failure above is the name, nothing else.
      const good = pki.leaf(ca, ["DNS:localhost"]);
      server.kill();
      const port2 = port + 1;
      const s2 = spawn("openssl", ["s_server", "-accept", `127.0.0.1:${port2}`, "-cert", pki.file("good.crt", good.certPem), "-key", pki.file("good.key", good.keyPem), "-www", "-quiet"], { stdio: "ignore" });
      try {
        let ok: Result;
        for (;;) {
          ok = lib(`rt_probe_tls 'localhost:${port2}' '${caFile}'; rt_finish install x`, { PATH: bin });
          if (ok.code === 0 || Date.now() > deadline) break;
          await new Promise((res) => setTimeout(res, 100));
        }
        expect(ok.stderr).toBe("");
        expect(ok.stdout).toContain(`"verified":["tls:localhost:${port2}@${caFile}"]`);
      } finally {
        s2.kill();
      }
    } finally {
      server.kill();
    }
  });
});
