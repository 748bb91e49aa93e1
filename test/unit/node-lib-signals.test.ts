/**
 * core/node/lib.sh when the SSH connection is gone: the script's stdout/stderr have no reader, and its next
 * write (typically the error message of a failing check) raises SIGPIPE. The journal must still be rolled
 * back. Runs the real library under the system sh on files in a temp dir.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const LIB = path.join(__dirname, "..", "..", "core", "node", "lib.sh");
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-lib-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Writes `target` through the library's plan/apply, then fails, with its output piped into `reader`. */
function failAfterApply(target: string, reader: string): string {
  const content = Buffer.from("# Managed by registry-trust (owner t)\nnew\n").toString("base64");
  // `true` as the reader exits at once, like sshd gone; the sleep makes sure it has before the failure.
  const script = `RT_OWNER=t; . '${LIB}'; rt_plan_file '${target}' 0644 ${content}; rt_preflight; rt_apply; sleep 0.3; rt_die "check failed"`;
  return execFileSync("sh", ["-c", `{ sh -c '${script.replace(/'/g, "'\\''")}'; echo $? > '${dir}/status'; } 2>&1 | ${reader}; cat '${dir}/status'`], { encoding: "utf8" }).trim();
}

test("a failure whose message meets a closed pipe still rolls the written file back (SIGPIPE is trapped)", () => {
  const target = path.join(dir, "ca.crt");
  fs.writeFileSync(target, "# Managed by registry-trust (owner t)\nold\n");
  expect(failAfterApply(target, "true")).toBe("141");
  expect(fs.readFileSync(target, "utf8")).toBe("# Managed by registry-trust (owner t)\nold\n");
});

test("a new file is removed again in the same situation", () => {
  const target = path.join(dir, "new.crt");
  expect(failAfterApply(target, "true")).toBe("141");
  expect(fs.existsSync(target)).toBe(false);
});

test("with a reader, the same failure reports its message and exits 1 after rolling back", () => {
  const target = path.join(dir, "ca.crt");
  fs.writeFileSync(target, "# Managed by registry-trust (owner t)\nold\n");
  const out = failAfterApply(target, "cat");
  expect(out).toContain("registry-trust: ERROR: check failed");
  expect(out).toContain("nothing was changed on this node");
  expect(out.split("\n").pop()).toBe("1");
  expect(fs.readFileSync(target, "utf8")).toBe("# Managed by registry-trust (owner t)\nold\n");
});
