import { createHash } from "node:crypto";
import { ObjectRef } from "../kcp/api";

/*
 * The record of the last completed rotation, kept next to what it describes: a ConfigMap per namespace that
 * holds one of the stack's KubeadmControlPlanes or MachineDeployments, written only after the serving switch
 * (or, without a serving target, after trust is everywhere). The next run's preflight compares what the
 * KCPs and worker templates carry with it: a bundle that is neither this record's nor the run's own was
 * left by a rotation that never completed, or by another writer.
 */

export const RECORD_KEY = "bundle-sha256";
export const RECORD_STACK_KEY = "stack";

/** One ConfigMap name per stack, so stacks sharing a namespace keep separate records. */
export function recordName(stack: string): string {
  return `registry-trust-rotation-${createHash("sha256").update(stack).digest("hex").slice(0, 12)}`;
}

/** Namespaces holding the cluster's configured KCPs and MachineDeployments, in order, once each. */
export function recordNamespaces(cluster: { readonly controlPlanes: readonly ObjectRef[]; readonly machineDeployments: readonly ObjectRef[] }): string[] {
  return [...new Set([...cluster.controlPlanes, ...cluster.machineDeployments].map((r) => r.namespace))];
}

export interface RecordManifest {
  readonly metadata: { name: string; namespace: string; labels: Record<string, string> };
  readonly data: Record<string, string>;
}

export function recordManifest(namespace: string, stack: string, bundleHash: string): RecordManifest {
  if (!/^[0-9a-f]{64}$/.test(bundleHash)) throw new Error(`bundleHash must be 64 lowercase hex digits, got "${bundleHash}"`);
  return {
    metadata: { name: recordName(stack), namespace, labels: { "app.kubernetes.io/managed-by": "registry-trust" } },
    data: { [RECORD_KEY]: bundleHash, [RECORD_STACK_KEY]: stack },
  };
}
