import { readFileSync } from "node:fs";
import { join } from "node:path";
import { cli } from "../support/cli";
import { REPO } from "../support/stack-files";

// The conventions a user expects of any command-line tool, checked on the real binary.
const COMMANDS = ["check", "inspect", "render", "doctor"];

describe("registry-trust command-line conventions", () => {
  test.each(COMMANDS.flatMap((c) => [[c, "--help"], [c, "-h"]]))("%s %s prints that command's usage on stdout and exits 0", async (command, flag) => {
    const r = await cli([command, flag]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toMatch(new RegExp(`^Usage: registry-trust ${command} `));
  });

  test("--help after other options still wins, and nothing runs (doctor would otherwise dial the node)", async () => {
    const r = await cli(["doctor", "--node", "ssh://root@127.0.0.1:1", "--registry", "r.test", "--help"]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toMatch(/^Usage: registry-trust doctor /);
  });

  test("--version prints the version in package.json", async () => {
    const { version } = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string };
    const r = await cli(["--version"]);
    expect(r).toMatchObject({ code: 0, stdout: `registry-trust ${version}\n` });
  });

  test.each([
    [["inspect", "--no-such-flag"], "--no-such-flag"],
    [["check", "-x"], "-x"],
  ])("an unknown option (%j) exits 2 naming it", async (argv, flag) => {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(flag);
    expect(r.stdout).toBe("");
  });
});
