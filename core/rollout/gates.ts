import { DoctorReport } from "../doctor/analyze";
import { Endpoint, endpointKey } from "../endpoint";
import { RolloutState as ObjectRollout } from "../kcp/rollout";
import { inspectBundle } from "../x509/bundle";
import { CertInfo } from "../x509/cert";
import { formatProblem, hasErrors } from "../x509/problems";
import { verifyServing } from "../x509/verify";

/*
 * The gates after a stack's `up`, judged on the real parts: what the registry serves, what nodes trust,
 * where Cluster API rollouts are. Reading them is the caller's (TLS, ssh, the apiserver); the judgement is
 * here. Each problem names the object, what is wrong and the fix.
 */

export interface GateProblem {
  readonly object: string;
  readonly message: string;
  readonly fix: string;
}

/** `inspect` per endpoint: the served chain verifies against the stack's bundle (Go's rules, as nodes verify). */
export async function inspectGate(endpoints: readonly Endpoint[], bundlePem: string, fetch: (e: Endpoint) => Promise<CertInfo[]>, now = new Date()): Promise<GateProblem[]> {
  const bundle = inspectBundle(bundlePem, "stack output bundlePem", now);
  const out: GateProblem[] = [];
  for (const e of endpoints) {
    const key = endpointKey(e);
    let chain: CertInfo[];
    try {
      chain = await fetch(e);
    } catch (err) {
      out.push({ object: key, message: (err as Error).message, fix: `make ${key} reachable from where the rollout runs (DNS, firewall), then run again with --resume` });
      continue;
    }
    const v = verifyServing({ bundle: bundle.certs, chain, host: e.host, now });
    if (v.trusted && !hasErrors(v.problems)) continue;
    const errors = v.problems.filter((p) => p.severity === "error");
    out.push({
      object: key,
      message: `the chain ${key} serves (leaf "${chain[0]?.subject}", issuer "${chain[0]?.issuer}") does not verify against the stack's bundle: ${errors.map(formatProblem).join(" | ") || "not trusted"}`,
      fix: errors[0]?.fix ?? `compare with \`registry-trust inspect https://${key} --ca-bundle BUNDLE\``,
    });
  }
  return out;
}

export interface NodeProbe {
  readonly node: string;
  readonly registry: string;
  readonly report?: DoctorReport;
  /** The node could not be reached or probed. */
  readonly error?: string;
}

/** `doctor` per sampled node and registry: healthy (no error or risk finding). */
export function doctorGate(probes: readonly NodeProbe[]): GateProblem[] {
  const out: GateProblem[] = [];
  for (const p of probes) {
    if (p.error !== undefined) {
      out.push({ object: `node ${p.node}`, message: `doctor could not probe it: ${p.error}`, fix: "check the node's address, host key and the SSH key in the stack config, then run again with --resume" });
      continue;
    }
    if (!p.report || p.report.healthy) continue;
    const serious = p.report.findings.filter((f) => f.severity === "error" || f.severity === "risk");
    out.push({
      object: `node ${p.node}`,
      message: `doctor → ${p.registry}: ${serious.map((f) => `${f.code} [${f.scope}] ${f.message}${f.evidence.length ? ` (${f.evidence.join("; ")})` : ""}`).join(" | ")}`,
      fix: serious[0]?.fix ?? "run `registry-trust doctor` on the node",
    });
  }
  return out;
}

export interface RolloutWatch {
  /** e.g. "KubeadmControlPlane default/lab-control-plane (cluster lab)". */
  readonly object: string;
  /** Reads the object now and says whether its rollout is done. */
  read(): Promise<ObjectRollout>;
}

export interface WaitClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

/**
 * KubeadmControlPlane / MachineDeployment rollouts done: polls each until done or the deadline, then
 * reports those still rolling out with their last state. A read error is retried until the deadline.
 */
export async function clusterGate(watches: readonly RolloutWatch[], timeoutMs: number, pollMs: number, clock: WaitClock, onProgress?: (object: string, summary: string) => void): Promise<GateProblem[]> {
  const deadline = clock.now() + timeoutMs;
  const pending = new Map(watches.map((w) => [w, "not read yet"]));
  for (;;) {
    for (const w of [...pending.keys()]) {
      try {
        const s = await w.read();
        if (s.done) pending.delete(w);
        else if (pending.get(w) !== s.summary) {
          pending.set(w, s.summary);
          onProgress?.(w.object, s.summary);
        }
      } catch (e) {
        pending.set(w, `cannot read it: ${(e as Error).message}`);
      }
    }
    if (pending.size === 0 || clock.now() >= deadline) break;
    await clock.sleep(Math.min(pollMs, Math.max(0, deadline - clock.now())));
  }
  return [...pending].map(([w, last]) => ({
    object: w.object,
    message: `rollout not done after ${Math.round(timeoutMs / 1000)} s: ${last}`,
    fix: "look at the Cluster API controller and the machines (kubectl describe on the object and its Machines); once the rollout is done, run again with --resume",
  }));
}
