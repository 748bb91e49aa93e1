/*
 * What a rotation may change, checked on the preview before `up`. A rotation (new CA generation, renewed
 * serving certificate, changed imported bundle) changes the bundle and what carries it; it never adds,
 * removes or re-addresses a node, replaces a CA in place, or touches a resource type this module does not
 * own. Anything else in a preview means the stack's config or program changed beyond the rotation, and
 * is for a reviewed `pulumi up`, not for an unattended promotion.
 *
 * The allowed set, by resource type:
 *   any type                                   same, read, refresh (no change)
 *   pulumi:pulumi:Stack                        update (its outputs: bundle, hashes, node reports)
 *   registry-trust:index:* (our components)    update
 *   tls PrivateKey                             create, delete, replace (a new CA generation's key or serving key)
 *   tls SelfSignedCert (a CA generation)       create, delete (a generation joins or retires); never update
 *                                              or replace: that would change a CA nodes already trust
 *   tls CertRequest, LocallySignedCert         create, update, replace (the serving certificate: renewal,
 *                                              new issuer)
 *   command:remote:Command                     update of the script and its inputs only (create, update,
 *                                              delete, stdin, triggers, environment); not `connection` (the
 *                                              node's address), never create/delete/replace (a node
 *                                              joining or leaving is not a rotation)
 *   pulumi-nodejs:dynamic:Resource             update (ControlPlaneTrust / WorkerTrust: bundle into KCP and
 *                                              worker templates)
 *   kubernetes:core/v1:Secret, ConfigMap       update (serving Secret, rotation record, bootstrap script)
 *   kubernetes:apps/v1:DaemonSet               update
 */

export interface PreviewStep {
  readonly op: string;
  readonly type: string;
  readonly urn: string;
  /** Top-level property names that differ (the engine's `diffs`), when reported. */
  readonly diffs?: readonly string[];
}

export interface Violation {
  readonly urn: string;
  readonly type: string;
  readonly op: string;
  readonly why: string;
}

const NO_CHANGE = new Set(["same", "read", "refresh", "discard", "discard-replaced"]);
/** The engine reports a replacement as these steps around one `replace`. */
const REPLACE_STEPS = new Set(["replace", "create-replacement", "delete-replaced", "remove-pending-replace"]);
const COMMAND_PROPERTIES = new Set(["create", "update", "delete", "stdin", "triggers", "environment"]);

interface Rule {
  readonly ops: ReadonlySet<string>;
  readonly properties?: ReadonlySet<string>;
  readonly note: string;
}

const rule = (ops: string[], note: string, properties?: Set<string>): Rule => ({ ops: new Set(ops), note, properties });
const REPLACE = ["replace", "create-replacement", "delete-replaced", "remove-pending-replace"];

const RULES: ReadonlyArray<readonly [RegExp, Rule]> = [
  [/^pulumi:pulumi:Stack$/, rule(["update"], "the stack's outputs")],
  [/^registry-trust:index:/, rule(["update"], "a registry-trust component")],
  [/^tls:index\/privateKey:PrivateKey$/, rule(["create", "delete", ...REPLACE], "a CA generation's or the serving certificate's key")],
  [/^tls:index\/selfSignedCert:SelfSignedCert$/, rule(["create", "delete"], "a CA generation: it may join or retire, never change in place")],
  [/^tls:index\/(certRequest:CertRequest|locallySignedCert:LocallySignedCert)$/, rule(["create", "update", "delete", ...REPLACE], "the serving certificate")],
  [/^command:remote:Command$/, rule(["update"], "a node's trust script (or the serving files on the registry host)", COMMAND_PROPERTIES)],
  [/^pulumi-nodejs:dynamic:Resource$/, rule(["update"], "ControlPlaneTrust / WorkerTrust")],
  [/^kubernetes:core\/v1:(Secret|ConfigMap)$/, rule(["update"], "the serving Secret, rotation record or bootstrap script")],
  [/^kubernetes:apps\/v1:DaemonSet$/, rule(["update"], "the trust DaemonSet")],
];

/** The preview's steps that a rotation must not make, each with the reason. */
export function disallowedChanges(steps: readonly PreviewStep[]): Violation[] {
  const out: Violation[] = [];
  for (const s of steps) {
    if (NO_CHANGE.has(s.op)) continue;
    const r = RULES.find(([re]) => re.test(s.type))?.[1];
    const v = (why: string) => out.push({ urn: s.urn, type: s.type, op: s.op, why });
    if (!r) {
      v(`${s.type} is not a resource a rotation touches`);
      continue;
    }
    if (!r.ops.has(s.op)) {
      const what = REPLACE_STEPS.has(s.op) ? "replace" : s.op;
      v(`${what} of ${r.note} is outside a rotation (allowed: ${[...r.ops].filter((o) => !REPLACE_STEPS.has(o) || o === "replace").join(", ")})`);
      continue;
    }
    if (r.properties && s.diffs) {
      const other = s.diffs.filter((d) => !r.properties!.has(d));
      if (other.length) v(`changes ${other.join(", ")} of ${r.note}; a rotation changes only ${[...r.properties].join(", ")}`);
    }
  }
  return out;
}

/** Counts of the preview's operations, for the progress line. */
export function changeCounts(steps: readonly PreviewStep[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of steps) counts[s.op] = (counts[s.op] ?? 0) + 1;
  return counts;
}
