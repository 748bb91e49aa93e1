import type { CertInfo } from "./cert";

/*
 * Go's policiesValid (verify.go): RFC 5280 certificate-policy processing as updated by RFC 9618, with
 * Go's VerifyOptions defaults (no required policies, nothing inhibited by the caller). A TLS client rarely
 * meets it, but a CA with policyConstraints requireExplicitPolicy makes Go refuse a chain whose
 * certificates carry no policy — and so must we. Policies are keyed by the hex of their OID's DER content.
 */

const ANY_POLICY = "551d2000"; // 2.5.29.32.0

interface Node {
  readonly validPolicy: string;
  expected: string[];
  readonly parents: Set<Node>;
  readonly children: Set<Node>;
}

function node(valid: string, parents: readonly Node[]): Node {
  const n: Node = { validPolicy: valid, expected: [valid], parents: new Set(parents), children: new Set() };
  for (const p of parents) p.children.add(n);
  return n;
}

class PolicyGraph {
  private readonly strata: Map<string, Node>[] = [new Map([[ANY_POLICY, node(ANY_POLICY, [])]])];
  private parentIndex = new Map<string, Node[]>();
  depth = 0;

  insert(n: Node): void {
    this.strata[this.depth].set(n.validPolicy, n);
  }
  parentsWithExpected(expected: string): Node[] {
    return this.depth === 0 ? [] : this.parentIndex.get(expected) ?? [];
  }
  parentWithAnyPolicy(): Node | undefined {
    return this.depth === 0 ? undefined : this.strata[this.depth - 1].get(ANY_POLICY);
  }
  parents(): Node[] {
    return this.depth === 0 ? [] : [...this.strata[this.depth - 1].values()];
  }
  leaves(): Map<string, Node> {
    return this.strata[this.depth];
  }
  deleteLeaf(policy: string): void {
    const n = this.strata[this.depth].get(policy);
    if (!n) return;
    for (const p of n.parents) p.children.delete(n);
    for (const c of n.children) c.parents.delete(n);
    this.strata[this.depth].delete(policy);
  }
  validPolicyNodes(): Node[] {
    const out: Node[] = [];
    for (let i = this.depth; i >= 0; i--) {
      for (const n of this.strata[i].values()) {
        if (n.validPolicy === ANY_POLICY || n.parents.size !== 1) continue;
        if ([...n.parents][0].validPolicy === ANY_POLICY) out.push(n);
      }
    }
    return out;
  }
  prune(): void {
    for (let i = this.depth - 1; i > 0; i--) {
      for (const n of [...this.strata[i].values()]) {
        if (n.children.size > 0) continue;
        for (const p of n.parents) p.children.delete(n);
        this.strata[i].delete(n.validPolicy);
      }
    }
  }
  incrDepth(): void {
    this.parentIndex = new Map();
    for (const n of this.strata[this.depth].values()) {
      for (const e of n.expected) this.parentIndex.set(e, [...(this.parentIndex.get(e) ?? []), n]);
    }
    this.depth++;
    this.strata.push(new Map());
  }
}

/** Go's "field present" test: a value above zero, or an explicit zero. */
const present = (v: number | undefined): v is number => v !== undefined && v >= 0;

/** Whether Go's policy processing accepts `chain` (leaf first, trust anchor last). */
export function policiesValid(chain: readonly CertInfo[]): boolean {
  if (chain.length === 1) return true;
  const n = chain.length - 1;
  let pg: PolicyGraph | undefined = new PolicyGraph();
  let inhibitAnyPolicy = n + 1;
  let explicitPolicy = n + 1;
  let policyMapping = n + 1;

  for (let i = n - 1; i >= 0; i--) {
    const cert = chain[i];
    const selfSigned = cert.rawIssuer.equals(cert.rawSubject);
    if (cert.policies.length === 0) pg = undefined;
    if (explicitPolicy === 0 && !pg) return false;

    if (pg) {
      pg.incrDepth();
      const policies = new Set<string>();
      for (const policy of cert.policies) {
        policies.add(policy);
        if (policy === ANY_POLICY) continue;
        let parents = pg.parentsWithExpected(policy);
        if (parents.length === 0) {
          const any = pg.parentWithAnyPolicy();
          if (any) parents = [any];
        }
        if (parents.length > 0) pg.insert(node(policy, parents));
      }
      if (policies.has(ANY_POLICY) && (inhibitAnyPolicy > 0 || (n - i < n && selfSigned))) {
        const missing = new Map<string, Node[]>();
        const leaves = pg.leaves();
        for (const p of pg.parents()) {
          for (const e of p.expected) if (!leaves.has(e)) missing.set(e, [...(missing.get(e) ?? []), p]);
        }
        for (const [oid, parents] of missing) pg.insert(node(oid, parents));
      }
      pg.prune();

      if (i !== 0 && cert.policyMappings.length > 0) {
        const mappings = new Map<string, string[]>();
        for (const m of cert.policyMappings) {
          if (policyMapping > 0) {
            if (m.issuer === ANY_POLICY || m.subject === ANY_POLICY) return false;
            mappings.set(m.issuer, [...(mappings.get(m.issuer) ?? []), m.subject]);
          } else pg.deleteLeaf(m.issuer);
        }
        pg.prune();
        for (const [issuer, subjects] of mappings) {
          const matching = pg.leaves().get(issuer);
          if (matching) matching.expected = subjects;
          else {
            const any = pg.leaves().get(ANY_POLICY);
            if (any) {
              const created = node(issuer, [any]);
              created.expected = subjects;
              pg.insert(created);
            }
          }
        }
      }
    }

    if (i !== 0) {
      if (!selfSigned) {
        if (explicitPolicy > 0) explicitPolicy--;
        if (policyMapping > 0) policyMapping--;
        if (inhibitAnyPolicy > 0) inhibitAnyPolicy--;
      }
      if (present(cert.requireExplicitPolicy) && cert.requireExplicitPolicy < explicitPolicy) explicitPolicy = cert.requireExplicitPolicy;
      if (present(cert.inhibitPolicyMapping) && cert.inhibitPolicyMapping < policyMapping) policyMapping = cert.inhibitPolicyMapping;
      if (present(cert.inhibitAnyPolicy) && cert.inhibitAnyPolicy < inhibitAnyPolicy) inhibitAnyPolicy = cert.inhibitAnyPolicy;
    }
  }

  if (explicitPolicy > 0) explicitPolicy--;
  if (chain[0].requireExplicitPolicy === 0) explicitPolicy = 0;

  const valid = pg ? pg.validPolicyNodes() : [];
  const any = pg?.leaves().get(ANY_POLICY);
  if (any) valid.push(any);
  return !(explicitPolicy === 0 && valid.length === 0);
}
