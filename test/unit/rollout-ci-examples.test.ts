/**
 * The CI examples (examples/ci/) checked by the tools their platforms apply: actionlint (built from Go
 * modules by scripts/actionlint.sh) for the GitHub workflows, GitLab's own CI JSON schema (as shipped
 * in the gitlab-ci-local npm package, which validates with it) for .gitlab-ci.yml; plus the properties
 * docs/pipelines.md promises: per-stack concurrency shared by deploy and scheduled work, approval before
 * prod, secrets only from the CI's secret store. test/e2e/rollout.test.ts runs their steps on the lab.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as vm from "node:vm";
import Ajv from "ajv";
import YAML from "yaml";

const REPO = join(__dirname, "..", "..");
const GH = join(REPO, "examples", "ci", "github");
const GL = join(REPO, "examples", "ci", "gitlab", ".gitlab-ci.yml");
const WORKFLOWS = ["pull-request.yml", "deploy.yml", "scheduled.yml"];
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const load = (f: string): Obj => YAML.parse(readFileSync(f, "utf8"));

function actionlint(): string {
  const bin = join(execFileSync("bash", [join(REPO, "scripts", "actionlint.sh"), "--print-bin"], { encoding: "utf8" }).trim(), "actionlint");
  if (!existsSync(bin)) throw new Error(`actionlint is not built: run \`bash scripts/actionlint.sh\` (or \`npm test\`, whose prerequisites build it) and retry`);
  return bin;
}

/**
 * GitLab's CI schema as gitlab-ci-local ships it: the JSON is bundled into its dist/index.js as an object
 * literal (the package runs on Node ≥ 22 only, so it is read, not run). Found by its $id, cut out by
 * bracket matching outside string literals, evaluated in an empty context.
 */
function gitlabSchema(): Obj {
  const src = readFileSync(require.resolve("gitlab-ci-local/dist/index.js"), "utf8");
  const anchor = src.indexOf('$id:"https://gitlab.com/.gitlab-ci.yml"');
  if (anchor < 0) throw new Error("gitlab-ci-local no longer bundles the schema with that $id");
  const start = src.lastIndexOf("={", anchor) + 1;
  let depth = 0;
  let quote: string | undefined;
  let i = start;
  for (; i < src.length; i++) {
    const c = src[i];
    if (quote) {
      if (c === "\\") i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'" || c === "`") quote = c;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) break;
  }
  return vm.runInNewContext(`(${src.slice(start, i + 1)})`, Object.create(null)) as Obj;
}

describe("GitHub Actions examples", () => {
  const bin = actionlint();
  test.each(WORKFLOWS)("actionlint accepts %s", (f) => {
    const r = spawnSync(bin, ["-no-color", join(GH, f)], { encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  test("actionlint refuses a broken copy (so the check above can fail)", () => {
    const dir = mkdtempSync(join(tmpdir(), "rt-actionlint-"));
    try {
      const broken = readFileSync(join(GH, "deploy.yml"), "utf8").replace("needs: staging", "needs: stagin");
      writeFileSync(join(dir, "deploy.yml"), broken);
      const r = spawnSync(bin, ["-no-color", join(dir, "deploy.yml")], { encoding: "utf8" });
      expect(r.status).toBe(1);
      expect(r.stdout).toContain("stagin");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const deploy = load(join(GH, "deploy.yml"));
  const scheduled = load(join(GH, "scheduled.yml"));
  const stackOf = (job: Obj) => /--only (\S+)/.exec((job.steps as Obj[]).map((s) => s.run ?? "").join("\n"))?.[1];

  test("deploy: dev → staging → prod, prod behind the prod environment (required reviewers), one concurrency group per stack, never cancelled", () => {
    expect(deploy.on.push.branches).toEqual(["main"]);
    expect(deploy.jobs.staging.needs).toBe("dev");
    expect(deploy.jobs.prod.needs).toBe("staging");
    expect(deploy.jobs.prod.environment).toBe("prod");
    for (const [name, job] of Object.entries(deploy.jobs as Record<string, Obj>)) {
      expect(stackOf(job)).toBe(name);
      expect(job.concurrency).toEqual({ group: `registry-trust-stack-${name}`, "cancel-in-progress": false });
    }
  });

  test("scheduled: on a schedule, renewal per stack in the same concurrency groups as deploy, then the drift check", () => {
    expect(scheduled.on.schedule[0].cron).toMatch(/^\S+ \S+ \S+ \S+ \S+$/);
    const renewals = Object.values(scheduled.jobs as Record<string, Obj>).filter((j) => stackOf(j));
    expect(renewals.map((j) => [stackOf(j), j.concurrency.group, j.concurrency["cancel-in-progress"]])).toEqual(
      ["dev", "staging", "prod"].map((s) => [s, `registry-trust-stack-${s}`, false]),
    );
    expect(scheduled.jobs.drift.needs).toBe("renew-prod");
    expect((scheduled.jobs.drift.steps as Obj[]).some((s) => /registry-trust drift/.test(s.run ?? ""))).toBe(true);
  });

  test("pull requests: a refreshing preview with the policy pack for every stack", () => {
    const pr = load(join(GH, "pull-request.yml"));
    expect(pr.jobs.preview.strategy.matrix.stack).toEqual(["dev", "staging", "prod"]);
    expect((pr.jobs.preview.steps as Obj[]).map((s) => s.run ?? "").join("\n")).toMatch(/pulumi preview --stack "\$STACK" --refresh .*--policy-pack policy/);
  });

  test.each(WORKFLOWS)("%s: secrets only from the secret store, never written in the file, never expanded inside a script", (f) => {
    const text = readFileSync(join(GH, f), "utf8");
    const doc = load(join(GH, f));
    const envs = [doc.env ?? {}, ...Object.values(doc.jobs as Record<string, Obj>).map((j) => j.env ?? {})];
    const passphrases = envs.map((e: Obj) => e.PULUMI_CONFIG_PASSPHRASE).filter(Boolean);
    expect(passphrases.length).toBeGreaterThan(0);
    for (const p of passphrases) expect(p).toBe("${{ secrets.PULUMI_CONFIG_PASSPHRASE }}");
    const runs = Object.values(doc.jobs as Record<string, Obj>).flatMap((j) => (j.steps as Obj[]).map((s) => s.run ?? ""));
    for (const r of runs) expect(r).not.toContain("${{");
    expect(text).not.toMatch(/BEGIN [A-Z ]*PRIVATE KEY/);
  });
});

describe("GitLab CI example", () => {
  const schema = gitlabSchema();
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, logger: false });
  const validate = ajv.compile(schema);
  const doc = load(GL);

  test("is valid against GitLab's CI schema", () => {
    expect(validate(doc) ? [] : validate.errors).toEqual([]);
  });

  test("the schema refuses a broken copy (so the check above can fail)", () => {
    const broken = { ...doc, "rollout-dev": { ...doc["rollout-dev"], resource_grop: "x" } };
    expect(validate(broken)).toBe(false);
    const wrongType = { ...doc, drift: { ...doc.drift, script: 42 } };
    expect(validate(wrongType)).toBe(false);
  });

  test("a resource_group per stack, prod manual on merge and after staging, drift on schedules, previews on merge requests", () => {
    for (const s of ["dev", "staging", "prod"]) {
      expect(doc[`rollout-${s}`]).toMatchObject({ extends: ".rollout", resource_group: `registry-trust-stack-${s}`, environment: { name: s }, variables: { STACK: s } });
    }
    expect(doc[".rollout"].script).toEqual(['npx registry-trust rollout --file rollout.yaml --only "$STACK"']);
    expect(doc["rollout-prod"].needs).toEqual(["rollout-staging"]);
    expect(doc["rollout-prod"].rules.find((r: Obj) => /push/.test(r.if))).toMatchObject({ when: "manual", allow_failure: false });
    expect(doc.drift.rules[0].if).toContain('"schedule"');
    expect(doc.preview.rules[0].if).toContain('"merge_request_event"');
    expect(doc.preview.script[0]).toMatch(/--policy-pack policy/);
    expect(readFileSync(GL, "utf8")).not.toMatch(/PULUMI_CONFIG_PASSPHRASE:/);
  });
});
