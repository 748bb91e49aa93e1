import { createHash } from "node:crypto";

/*
 * Which nodes the doctor gate probes: per group of nodes with the same OS family and runtimes (a failure
 * is most likely specific to one layout), `sample` of them. The choice is a stable pseudo-random order
 * (hash of stack and node name): the same nodes on a rerun or resume, not always the first ones listed.
 */

export interface SampledNode {
  readonly name: string;
  readonly os: string;
  readonly runtimes: readonly string[];
}

export function groupKey(n: SampledNode): string {
  return `${n.os}/${[...n.runtimes].sort().join("+")}`;
}

export function sampleNodes<T extends SampledNode>(nodes: readonly T[], perGroup: number, seed: string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const n of nodes) groups.set(groupKey(n), [...(groups.get(groupKey(n)) ?? []), n]);
  const rank = (n: T) => createHash("sha256").update(`${seed}\0${n.name}`).digest("hex");
  const out = new Map<string, T[]>();
  for (const [key, members] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
    out.set(key, [...members].sort((a, b) => rank(a).localeCompare(rank(b))).slice(0, perGroup));
  }
  return out;
}
