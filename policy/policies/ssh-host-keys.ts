import { ResourceValidationPolicy } from "@pulumi/policy";
import { REMOTE_COMMAND } from "../../core/policy/resources";
import { hostKeyFindings } from "../../core/policy/ssh-host-keys";
import { plainProps } from "../plain";
import { becauseProduction, currentStackFacts } from "../stack-config";

/*
 * Host keys are pinned in every stack; a lab may opt out with registry-trust:allowUnpinnedHostKeys (never in
 * production), and then the advisory policy below names every connection that runs unpinned, so the opt-out
 * stays visible in each preview. A pin the plugin cannot use (RSA) is wrong in every stack.
 */

export const sshHostKeysPinned: ResourceValidationPolicy = {
  name: "ssh-host-keys-pinned",
  description: "Every command:remote:Command connection, and each proxy hop, pins an ed25519 or ECDSA SSH host key (a lab may opt out with registry-trust:allowUnpinnedHostKeys, never in production).",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    if (args.type !== REMOTE_COMMAND) return;
    const facts = currentStackFacts();
    const found = hostKeyFindings(plainProps(args.props));
    const optedOut = facts.allowUnpinnedHostKeys && !facts.production;
    const why = facts.production ? becauseProduction(facts) : "Required unless registry-trust:allowUnpinnedHostKeys is true (labs only).";
    for (const problem of [...(optedOut ? [] : found.unpinned), ...found.invalid]) {
      reportViolation(`${args.name}: ${problem}. ${why}`);
    }
  },
};

export const sshHostKeysOptOut: ResourceValidationPolicy = {
  name: "ssh-host-keys-opt-out",
  description: "Reports each command:remote:Command connection left unpinned under registry-trust:allowUnpinnedHostKeys (a lab's opt-out).",
  enforcementLevel: "advisory",
  validateResource: (args, reportViolation) => {
    if (args.type !== REMOTE_COMMAND) return;
    const facts = currentStackFacts();
    if (!facts.allowUnpinnedHostKeys || facts.production) return;
    for (const problem of hostKeyFindings(plainProps(args.props)).unpinned) {
      reportViolation(`${args.name}: ${problem}. Allowed only because registry-trust:allowUnpinnedHostKeys is true: whoever answers at that address receives the push and a root shell.`);
    }
  },
};
