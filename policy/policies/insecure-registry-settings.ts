import { ResourceValidationPolicy } from "@pulumi/policy";
import { insecureSettings } from "../../core/policy/insecure-settings";
import { insideOurComponent } from "../../core/policy/resources";
import { plainProps } from "../plain";
import { becauseProduction, productionFacts } from "../stack-config";

export const insecureRegistrySettings: ResourceValidationPolicy = {
  name: "no-insecure-registry-settings",
  description: "Production: nothing registry-trust installs turns TLS verification off or uses a plain-HTTP registry endpoint.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    if (!insideOurComponent(args.urn)) return;
    const facts = productionFacts(args);
    for (const finding of insecureSettings(plainProps(args.props))) {
      reportViolation(`${args.name}: ${finding}. Registries must be trusted through the CA bundle, not by switching verification off. ${becauseProduction(facts)}`);
    }
  },
};
