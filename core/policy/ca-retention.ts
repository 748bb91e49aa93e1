import { PROJECT } from "../config/schema";
import { StackFacts } from "./stack-facts";
import { Finding, REGISTRY_PKI, ResourceView, TLS_SELF_SIGNED_CERT, parentType } from "./resources";

/*
 * Overlap retention: during a rotation nodes must keep trusting the previous CA until the registry serves a
 * certificate from the new one (design §1, incident 1). Checked twice: the stack setting (catches it at
 * generation 1, before any rotation) and RegistryPki's CA resources themselves (catches a program that
 * wires RegistryPki with its own settings): when generation N is in the bundle, N-1 must be too.
 */

const CA_NAME = /-ca-g(\d+)$/;

export function retentionFindings(facts: StackFacts, resources: readonly ResourceView[]): Finding[] {
  const out: Finding[] = [];
  if (facts.caMode === "generate" && !(facts.caRetainGenerations >= 1)) {
    out.push({
      message: `${PROJECT}:caRetainGenerations is ${Number.isNaN(facts.caRetainGenerations) ? "not an integer" : facts.caRetainGenerations}: a rotation would drop the CA of the certificate the registry still serves from every node's bundle at once. Fix: pulumi config set ${PROJECT}:caRetainGenerations 1`,
    });
  }
  // Generations per RegistryPki instance, keyed by the part of the URN before the CA's own name.
  const byPki = new Map<string, { generation: number; urn: string }[]>();
  for (const r of resources) {
    if (r.type !== TLS_SELF_SIGNED_CERT || parentType(r.urn) !== REGISTRY_PKI || r.props.isCaCertificate !== true) continue;
    const m = CA_NAME.exec(r.name);
    if (!m) continue;
    const pki = r.name.slice(0, m.index);
    byPki.set(pki, [...(byPki.get(pki) ?? []), { generation: Number(m[1]), urn: r.urn }]);
  }
  for (const [pki, cas] of byPki) {
    const newest = cas.reduce((a, b) => (b.generation > a.generation ? b : a));
    if (newest.generation > 1 && !cas.some((c) => c.generation === newest.generation - 1)) {
      out.push({
        urn: newest.urn,
        message: `RegistryPki "${pki}" puts CA generation ${newest.generation} in the bundle without generation ${newest.generation - 1}: nodes stop trusting the serving certificate issued by generation ${newest.generation - 1} in the same update. Fix: retain at least one previous generation (retainGenerations / ${PROJECT}:caRetainGenerations ≥ 1).`,
      });
    }
  }
  return out;
}
