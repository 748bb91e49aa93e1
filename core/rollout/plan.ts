import { isAbsolute, resolve } from "node:path";
import YAML from "yaml";

/*
 * The rollout file (rollout.yaml): which stacks one change is promoted through, in order, and the gates
 * each must pass before the next is touched. Validated whole before any stack is previewed: every problem
 * is reported at once with its field, value, what is wrong and the fix.
 */

export interface DoctorGate {
  /** Nodes probed per group of nodes with the same OS family and runtimes. */
  readonly sample: number;
}

export interface StackGates {
  /** Every registry endpoint serves a chain the stack's bundle verifies. */
  readonly inspect: boolean;
  /** `doctor` healthy on a sample of nodes per OS/runtime; undefined = gate off. */
  readonly doctor?: DoctorGate;
  /** KubeadmControlPlane and MachineDeployment rollouts done. */
  readonly clusters: boolean;
  /** How long the cluster gate waits for rollouts to finish. */
  readonly clusterTimeoutSeconds: number;
}

export interface RolloutStack {
  readonly name: string;
  readonly gates: StackGates;
}

export interface RolloutPlan {
  /** Absolute path of the rollout file. */
  readonly file: string;
  /** The Pulumi project directory (holds Pulumi.yaml). */
  readonly project: string;
  /** Where --resume state is kept. */
  readonly stateFile: string;
  readonly stacks: readonly RolloutStack[];
}

export class RolloutFileError extends Error {}

const STACK_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
const TOP = ["project", "state", "stacks"];
const STACK = ["name", "gates"];
const GATES = ["inspect", "doctor", "clusters", "clusterTimeoutSeconds"];
export const DEFAULT_GATES: StackGates = { inspect: true, doctor: { sample: 1 }, clusters: true, clusterTimeoutSeconds: 600 };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const show = (v: unknown) => JSON.stringify(v);

/** Parses and validates a rollout file's text; relative paths are resolved against the file's directory. */
export function parseRolloutFile(text: string, file: string): RolloutPlan {
  const issues: string[] = [];
  const bad = (field: string, value: unknown, what: string, fix: string) => issues.push(`${field} = ${show(value)}: ${what}; ${fix}`);
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new RolloutFileError(`${file}: not YAML: ${(e as Error).message}`);
  }
  if (!isObj(doc)) throw new RolloutFileError(`${file}: expected a mapping with "stacks", got ${show(doc)}`);
  const dir = resolve(file, "..");
  for (const k of Object.keys(doc)) if (!TOP.includes(k)) bad(k, doc[k], "unknown field", `use one of ${TOP.join(", ")}`);
  const path = (field: string, fallback: string): string => {
    const v = doc[field] ?? fallback;
    if (typeof v !== "string" || v === "") {
      bad(field, v, "not a path", "give a directory or file path, relative to the rollout file");
      return dir;
    }
    return isAbsolute(v) ? v : resolve(dir, v);
  };
  const project = path("project", ".");
  const stateFile = path("state", ".registry-trust/rollout-state.json");
  const stacks: RolloutStack[] = [];
  if (!Array.isArray(doc.stacks) || doc.stacks.length === 0) {
    bad("stacks", doc.stacks, "must be a non-empty list", "list the stacks in promotion order, e.g. [{name: dev}, {name: staging}, {name: prod}]");
  } else {
    const seen = new Set<string>();
    doc.stacks.forEach((s: unknown, i: number) => {
      const at = `stacks[${i}]`;
      const entry: Obj = typeof s === "string" ? { name: s } : isObj(s) ? s : {};
      if (!isObj(s) && typeof s !== "string") return void bad(at, s, "is not a stack", "give {name: STACK, gates: {…}} or just the stack name");
      for (const k of Object.keys(entry)) if (!STACK.includes(k)) bad(`${at}.${k}`, entry[k], "unknown field", `use one of ${STACK.join(", ")}`);
      const name = entry.name;
      if (typeof name !== "string" || !STACK_NAME.test(name)) return void bad(`${at}.name`, name, "is not a stack name", "use the name given to `pulumi stack init` (letters, digits, '-', '_', '.')");
      if (seen.has(name)) bad(`${at}.name`, name, "appears twice", "promote through each stack once");
      seen.add(name);
      stacks.push({ name, gates: gates(`${at}.gates`, entry.gates, bad) });
    });
  }
  if (issues.length) throw new RolloutFileError(`${file}: ${issues.length} problem(s):\n${issues.map((x) => `  - ${x}`).join("\n")}`);
  return { file, project, stateFile, stacks };
}

function gates(at: string, v: unknown, bad: (f: string, v: unknown, what: string, fix: string) => void): StackGates {
  if (v === undefined) return DEFAULT_GATES;
  if (!isObj(v)) {
    bad(at, v, "is not a mapping", `give {${GATES.join(", ")}}`);
    return DEFAULT_GATES;
  }
  for (const k of Object.keys(v)) if (!GATES.includes(k)) bad(`${at}.${k}`, v[k], "unknown gate", `use one of ${GATES.join(", ")}`);
  const bool = (k: string, fallback: boolean): boolean => {
    if (v[k] === undefined) return fallback;
    if (typeof v[k] !== "boolean") bad(`${at}.${k}`, v[k], "is not a boolean", "use true or false");
    return v[k] === true;
  };
  let doctor: DoctorGate | undefined = DEFAULT_GATES.doctor;
  const d = v.doctor;
  if (d === false) doctor = undefined;
  else if (d !== undefined && d !== true) {
    const sample = isObj(d) ? d.sample : undefined;
    if (!isObj(d) || Object.keys(d).some((k) => k !== "sample") || !Number.isInteger(sample) || (sample as number) < 1) {
      bad(`${at}.doctor`, d, "is not a doctor gate", "use {sample: N} with N ≥ 1 nodes per OS/runtime group, or false to turn the gate off");
    } else doctor = { sample: sample as number };
  }
  const timeout = v.clusterTimeoutSeconds ?? DEFAULT_GATES.clusterTimeoutSeconds;
  if (!Number.isInteger(timeout) || (timeout as number) < 1) bad(`${at}.clusterTimeoutSeconds`, timeout, "is not a positive whole number of seconds", "e.g. 600");
  return { inspect: bool("inspect", true), doctor, clusters: bool("clusters", true), clusterTimeoutSeconds: Number(timeout) || DEFAULT_GATES.clusterTimeoutSeconds };
}
