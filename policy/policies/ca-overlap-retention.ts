import { StackValidationPolicy } from "@pulumi/policy";
import { retentionFindings } from "../../core/policy/ca-retention";
import { plainProps } from "../plain";
import { becauseProduction, productionFacts } from "../stack-config";

export const caOverlapRetention: StackValidationPolicy = {
  name: "ca-overlap-retention",
  description: "Production: at least one previous CA generation stays in the trust bundle (caRetainGenerations >= 1).",
  enforcementLevel: "mandatory",
  validateStack: (args, reportViolation) => {
    const facts = productionFacts(args);
    const resources = args.resources.map((r) => ({ type: r.type, urn: r.urn, name: r.name, props: plainProps(r.props) }));
    for (const f of retentionFindings(facts, resources)) reportViolation(`${f.message} ${becauseProduction(facts)}`, f.urn);
  },
};
