// The NodeTrust arguments come from the test as JSON (node-trust-runner.ts), so one program serves every case.
import { NodeTrust, NodeTrustArgs } from "../../../../components/node-trust";

const trust = new NodeTrust("trust", JSON.parse(process.env.RT_NODE_TRUST_ARGS ?? "{}") as NodeTrustArgs);
export const results = trust.results;
