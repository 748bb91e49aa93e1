import { TLS_LOCALLY_SIGNED_CERT, TLS_SELF_SIGNED_CERT, isUnknown } from "./resources";

/*
 * Maximum certificate lifetimes. A long-lived CA outlives the people who know where its key is; a serving
 * certificate beyond 398 days is refused by browsers and Apple platforms (CA/Browser Forum). The defaults
 * leave room above this module's own defaults (CA 1825 days, serving 90 days); the policy config can lower
 * or raise them.
 */

export interface ValidityLimits {
  /** Longest validity of a CA certificate (isCaCertificate), in hours. */
  readonly maxCaValidityHours: number;
  /** Longest validity of any other certificate, in hours. */
  readonly maxServingValidityHours: number;
}

export const DEFAULT_VALIDITY_LIMITS: ValidityLimits = { maxCaValidityHours: 10 * 365 * 24, maxServingValidityHours: 398 * 24 };

export const CERTIFICATE_TYPES: readonly string[] = [TLS_SELF_SIGNED_CERT, TLS_LOCALLY_SIGNED_CERT];

const days = (hours: number) => `${Math.round((hours / 24) * 10) / 10} days`;

/** The problem with a tls certificate's validityPeriodHours under `limits`, or undefined. */
export function validityProblem(props: Readonly<Record<string, unknown>>, limits: ValidityLimits): string | undefined {
  const hours = props.validityPeriodHours;
  const ca = props.isCaCertificate;
  if (isUnknown(hours) || isUnknown(ca)) return undefined;
  const [kind, max, setting] = ca === true ? ["CA", limits.maxCaValidityHours, "maxCaValidityHours"] : ["serving", limits.maxServingValidityHours, "maxServingValidityHours"];
  if (typeof hours !== "number" || !Number.isFinite(hours) || hours <= 0) return `validityPeriodHours ${JSON.stringify(hours)} is not a positive number of hours`;
  if (hours > max) {
    return `${kind} certificate valid for ${hours} hours (${days(hours)}), more than the maximum of ${max} hours (${days(max)}): shorten validityPeriodHours (registry-trust: ${kind === "CA" ? "caValidityDays" : "servingValidityDays"}) or raise the policy's ${setting}`;
  }
  return undefined;
}
