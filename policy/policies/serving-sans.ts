import { ResourceValidationPolicy } from "@pulumi/policy";
import { isServingCertificateSource, servingSanProblem } from "../../core/policy/serving-sans";
import { plainProps } from "../plain";
import { currentStackFacts } from "../stack-config";

export const servingSans: ResourceValidationPolicy = {
  name: "serving-certificate-sans",
  description: "The registry's serving certificate names every endpoint in registry-trust:registries.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    const props = plainProps(args.props);
    if (!isServingCertificateSource(args.type, args.urn, props)) return;
    const problem = servingSanProblem(currentStackFacts(), props);
    if (problem) reportViolation(`${args.name}: ${problem}.`);
  },
};
