// The hostFiles serving switch as text (what may appear where) and run by a real /bin/sh on this
// machine; over real SSH against the lab registry it is test/lab/serving-host-files.test.ts.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { certHash, hostFilesCommandLine, hostFilesScript } from "../../core/rotation/host-files";
import { TestPki } from "../../lab/openssl-pki";

const pki = new TestPki();
const dir = mkdtempSync(join(tmpdir(), "rt-hostfiles-"));
afterAll(() => {
  pki.cleanup();
  rmSync(dir, { recursive: true, force: true });
});
const ca = pki.root("Host Files CA G1");
const leaf = pki.leaf(ca);

function reloadScript(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

test("the key is only in the script (stdin); the command line names the shell and the certificate's hash", () => {
  const spec = { certPath: "/etc/registry/tls.crt", keyPath: "/etc/registry/tls.key", reloadCommand: ["systemctl", "restart", "docker-registry"] };
  const script = hostFilesScript(spec, leaf.certPem, leaf.keyPem);
  const line = hostFilesCommandLine("registry", leaf.certPem);
  expect(line).toBe(`sudo -n sh -s # registry-trust serving certificate sha256:${certHash(leaf.certPem)}`);
  expect(hostFilesCommandLine("root", leaf.certPem)).toMatch(/^sh -s # /);
  const keyBody = leaf.keyPem.split("\n")[1];
  expect(line).not.toContain(keyBody);
  expect(script).toContain(Buffer.from(leaf.keyPem).toString("base64"));
  expect(script).toContain("'systemctl' 'restart' 'docker-registry'");
});

test("paths and reload words with shell syntax are refused, not quoted around", () => {
  const ok = { certPath: "/a/tls.crt", keyPath: "/a/tls.key", reloadCommand: ["true"] };
  expect(() => hostFilesScript({ ...ok, certPath: "/a/$(reboot).crt" }, leaf.certPem, leaf.keyPem)).toThrow(/certPath "\/a\/\$\(reboot\).crt" has characters other than/);
  expect(() => hostFilesScript({ ...ok, keyPath: "/etc/registry/../../etc/shadow" }, leaf.certPem, leaf.keyPem)).toThrow(/keyPath "\/etc\/registry\/..\/..\/etc\/shadow" is not normalized/);
  expect(() => hostFilesScript({ ...ok, reloadCommand: ["kill", "-HUP", "`cat /run/x`"] }, leaf.certPem, leaf.keyPem)).toThrow(/reload command words with shell syntax: "`cat \/run\/x`"/);
  expect(() => hostFilesScript({ ...ok, reloadCommand: [] }, leaf.certPem, leaf.keyPem)).toThrow(/reload command is empty/);
  expect(() => hostFilesScript(ok, leaf.certPem, leaf.certPem)).toThrow(/not a PEM private key/);
  expect(() => hostFilesCommandLine("root; reboot", leaf.certPem)).toThrow(/not a Unix user name/);
});

test("run by sh: both files replaced with their modes, then the reload runs once, after them", () => {
  const certPath = join(dir, "run1", "tls.crt");
  const keyPath = join(dir, "run1", "tls.key");
  const marker = join(dir, "reloaded");
  // The reload sees the new pair already in place: it records what it found.
  const reload = reloadScript("reload-ok", `cat '${certPath}' '${keyPath}' > '${marker}'`);
  const script = hostFilesScript({ certPath, keyPath, reloadCommand: [reload] }, leaf.certPem, leaf.keyPem);
  const out = execFileSync("sh", ["-s"], { input: script, encoding: "utf8" });
  expect(out).toContain(`serving certificate installed at ${certPath} and reloaded`);
  expect(readFileSync(certPath, "utf8")).toBe(leaf.certPem);
  expect(readFileSync(keyPath, "utf8")).toBe(leaf.keyPem);
  expect(statSync(keyPath).mode & 0o777).toBe(0o600);
  expect(statSync(certPath).mode & 0o777).toBe(0o644);
  expect(readFileSync(marker, "utf8")).toBe(leaf.certPem + leaf.keyPem);
  expect(readdirSync(join(dir, "run1")).sort()).toEqual(["tls.crt", "tls.key"]);
});

test("a failing reload fails the switch (non-zero, stderr kept) and leaves no temporary files", () => {
  const certPath = join(dir, "run2", "tls.crt");
  const keyPath = join(dir, "run2", "tls.key");
  const reload = reloadScript("reload-bad", "echo 'registry refused the pair' >&2; exit 3");
  const r = spawnSync("sh", ["-s"], { input: hostFilesScript({ certPath, keyPath, reloadCommand: [reload] }, leaf.certPem, leaf.keyPem), encoding: "utf8" });
  expect(r.status).toBe(3);
  expect(r.stderr).toContain("registry refused the pair");
  expect(readdirSync(join(dir, "run2")).sort()).toEqual(["tls.crt", "tls.key"]);
});

test("a write that fails before the renames leaves the old pair untouched", () => {
  const certPath = join(dir, "run3", "tls.crt");
  const keyPath = join(dir, "ro", "tls.key");
  execFileSync("mkdir", ["-p", join(dir, "run3"), join(dir, "ro")]);
  writeFileSync(certPath, "OLD CERT");
  // The key's directory is a file: mktemp fails there, before anything is renamed.
  rmSync(join(dir, "ro"), { recursive: true });
  writeFileSync(join(dir, "ro"), "not a directory");
  const r = spawnSync("sh", ["-s"], { input: hostFilesScript({ certPath, keyPath, reloadCommand: ["true"] }, leaf.certPem, leaf.keyPem), encoding: "utf8" });
  expect(r.status).not.toBe(0);
  expect(readFileSync(certPath, "utf8")).toBe("OLD CERT");
  expect(readdirSync(join(dir, "run3"))).toEqual(["tls.crt"]);
  expect(existsSync(keyPath)).toBe(false);
});

test("under the script's umask 077, directories it creates are 0755 so a non-root registry can read its certificate; the key stays 0600", () => {
  // The registry's process runs as an unprivileged user (nobody here); only the key must stay private.
  const base = join(dir, "nonroot");
  execFileSync("mkdir", ["-m", "0755", base]);
  chmodSync(dir, 0o755);
  const certPath = join(base, "etc", "registry", "tls.crt");
  const keyPath = join(base, "etc", "registry", "private", "tls.key");
  const script = hostFilesScript({ certPath, keyPath, reloadCommand: ["true"] }, leaf.certPem, leaf.keyPem);
  execFileSync("sh", ["-s"], { input: script, encoding: "utf8" });
  const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);
  expect([join(base, "etc"), join(base, "etc", "registry"), join(base, "etc", "registry", "private")].map(mode)).toEqual(["755", "755", "755"]);
  expect([mode(certPath), mode(keyPath)]).toEqual(["644", "600"]);
  const asNobody = spawnSync("cat", [certPath], { uid: 65534, gid: 65534, encoding: "utf8" });
  expect(asNobody.stderr).toBe("");
  expect(asNobody.stdout).toBe(leaf.certPem);
  expect(spawnSync("cat", [keyPath], { uid: 65534, gid: 65534 }).status).not.toBe(0);
});
