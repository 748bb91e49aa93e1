import { ResourceValidationPolicy } from "@pulumi/policy";
import { REMOTE_COMMAND } from "../../core/policy/resources";
import { hostKeyProblems } from "../../core/policy/ssh-host-keys";
import { plainProps } from "../plain";
import { becauseProduction, productionFacts } from "../stack-config";

export const sshHostKeysPinned: ResourceValidationPolicy = {
  name: "ssh-host-keys-pinned",
  description: "Production: every command:remote:Command connection, and each proxy hop, pins the SSH host key.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    if (args.type !== REMOTE_COMMAND) return;
    const facts = productionFacts(args);
    for (const problem of hostKeyProblems(plainProps(args.props))) {
      reportViolation(`${args.name}: ${problem}. ${becauseProduction(facts)}`);
    }
  },
};
