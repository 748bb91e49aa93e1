import { ResourceValidationPolicy } from "@pulumi/policy";
import { certificateKeyProblems, privateKeyProblem } from "../../core/policy/key-strength";
import { TLS_PRIVATE_KEY } from "../../core/policy/resources";
import { plainProps } from "../plain";

export const keyStrength: ResourceValidationPolicy = {
  name: "key-strength",
  description: "Keys: RSA at least 3072 bits, ECDSA on P-256 or P-384, no Ed25519 behind X.509 certificates.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    const props = plainProps(args.props);
    const problems = args.type === TLS_PRIVATE_KEY ? [privateKeyProblem(props)].filter((p): p is string => p !== undefined) : certificateKeyProblems(args.type, props);
    for (const p of problems) reportViolation(`${args.name}: ${p}.`);
  },
};
