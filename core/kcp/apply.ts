import { inspectBundle } from "../x509/bundle";
import { formatProblem } from "../x509/problems";
import { KcpApi, ObjectRef } from "./api";
import { kcpError } from "./errors";
import { TrustSpec } from "./plan";
import { SequencerOptions, SequencerResult, Target, writeControlPlaneTrust } from "./sequencer";

/*
 * The sequencer's entry point for engine-free callers: the bundle is validated with core/x509 before
 * anything is touched. Kept apart from sequencer.ts so that the dynamic provider, which validates in the
 * program instead, never captures the x509 parser (it breaks Pulumi's closure serialization, see
 * writeControlPlaneTrust).
 */

/** Refuses a bundle that fails validation (core/x509 errors), before anything is touched. */
export function refuseInvalidBundle(bundlePem: string, target: ObjectRef): void {
  const errors = inspectBundle(bundlePem, "trust bundle").problems.filter((p) => p.severity === "error");
  if (errors.length > 0) {
    throw kcpError("INVALID_BUNDLE", `the trust bundle for KubeadmControlPlane ${target.namespace}/${target.name} is refused, nothing was changed:\n` +
      errors.map((p) => `  ${formatProblem(p)}`).join("\n"));
  }
}

/** Validates the bundle, writes it (and hosts.toml per endpoint) into the KCP and waits for the rollout. */
export async function applyControlPlaneTrust(api: KcpApi, target: Target, trust: TrustSpec, opts: SequencerOptions): Promise<SequencerResult> {
  refuseInvalidBundle(trust.bundlePem, target);
  return writeControlPlaneTrust(api, target, trust, opts);
}
