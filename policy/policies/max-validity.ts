import { ResourceValidationPolicy } from "@pulumi/policy";
import { CERTIFICATE_TYPES, DEFAULT_VALIDITY_LIMITS, ValidityLimits, validityProblem } from "../../core/policy/validity";
import { plainProps } from "../plain";

export const maxValidity: ResourceValidationPolicy = {
  name: "max-certificate-validity",
  description: "Certificates: CA and serving certificate validity stay under the configured maximums.",
  enforcementLevel: "mandatory",
  configSchema: {
    properties: {
      maxCaValidityHours: { type: "integer", minimum: 1, default: DEFAULT_VALIDITY_LIMITS.maxCaValidityHours, description: "Longest CA certificate validity, in hours (default 10 years)." },
      maxServingValidityHours: { type: "integer", minimum: 1, default: DEFAULT_VALIDITY_LIMITS.maxServingValidityHours, description: "Longest validity of other certificates, in hours (default 398 days)." },
    },
  },
  validateResource: (args, reportViolation) => {
    if (!CERTIFICATE_TYPES.includes(args.type)) return;
    const limits: ValidityLimits = { ...DEFAULT_VALIDITY_LIMITS, ...args.getConfig<Partial<ValidityLimits>>() };
    const problem = validityProblem(plainProps(args.props), limits);
    if (problem) reportViolation(`${args.name}: ${problem}.`);
  },
};
