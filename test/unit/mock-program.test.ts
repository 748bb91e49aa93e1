import { join } from "node:path";
import { runProgram } from "../support/run-program";
import { REPO } from "../support/stack-files";

// The mock runner is what rotation-program.test.ts and others rely on for `errors: []`: it must wait for
// the program's work to drain, not for a fixed time.
test("a failure that happens after the program module returned is still reported", () => {
  const outcome = runProgram(join(REPO, "test", "fixtures", "late-failure-program.ts"), {}, [], { LATE_FAILURE_MS: "3000" });
  expect(outcome.errors).toHaveLength(1);
  expect(outcome.errors[0]).toContain("input resolved late and failed");
});
