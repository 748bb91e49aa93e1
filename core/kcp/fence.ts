import { ObjectRef } from "./api";
import { kcpError } from "./errors";
import { Ownership } from "./plan";

/*
 * The fence of a run that waited for the Lease: while it waited, another run of the same stack may have
 * written a newer bundle, or completed a rotation. Its own bundle was decided before that, so once it holds
 * the Lease it re-reads what is live and refuses, nothing changed, rather than go back to an older bundle.
 * "Newer" is known two ways: the stack's rotation record (core/rotation/record.ts) changed to another bundle
 * since this run first read it (a rotation completed in between), or, when this run had to wait for another
 * holder, the bundle our owner has on the object is another one whose newest certificate is newer than ours
 * (issuedAt). Without issuedAt on either side two bundles cannot be ordered and the run goes on: the last
 * writer wins, as before. A run that did not wait may go back to an older bundle on purpose.
 */

/** What the fence compares: our owner's ownership on the object and the rotation record's bundle. */
export interface FenceView {
  readonly live: Ownership;
  readonly record?: string;
}

/** Where the stack's rotation record is: a ConfigMap and the key holding the bundle's sha256 (core/rotation/record.ts). */
export interface RecordRef extends ObjectRef {
  readonly key: string;
}

/** The rotation record's bundle hash, or undefined when there is no record (or no record is configured). */
export async function readRecord(api: { getConfigMap(ref: ObjectRef): Promise<{ data?: Record<string, string> } | undefined> }, ref: RecordRef | undefined): Promise<string | undefined> {
  if (!ref) return undefined;
  return (await api.getConfigMap({ namespace: ref.namespace, name: ref.name }))?.data?.[ref.key];
}

const short = (h: string | undefined) => (h ? `${h.slice(0, 12)}…` : "none");

/** Throws STALE_RUN when what became live while we waited is newer than `ours`. */
export function checkFence(what: string, before: FenceView, after: FenceView, ours: Ownership, ctx: { readonly waited: boolean; readonly recordRef?: RecordRef }): void {
  const { recordRef } = ctx;
  const rerun = "Nothing was changed. Run again to plan from the current state (pulumi up recomputes the bundle), or, to go back to this bundle on purpose, run again once no other run holds the Lease.";
  if (after.record !== undefined && after.record !== before.record && after.record !== ours.bundleHash) {
    throw kcpError("STALE_RUN", `${what}: while this run waited for the Lease, a rotation of this stack completed with bundle ${short(after.record)} ` +
      `(rotation record ConfigMap ${recordRef?.namespace}/${recordRef?.name}, ${short(before.record)} when this run started); this run's bundle ${short(ours.bundleHash)} ` +
      `was decided before it and would replace it. ${rerun}`);
  }
  const other = after.live.bundleHash !== ours.bundleHash && after.live.bundleHash !== "";
  if (ctx.waited && other && after.live.issuedAt && ours.issuedAt && after.live.issuedAt > ours.issuedAt) {
    throw kcpError("STALE_RUN", `${what}: this run waited for the Lease and now finds bundle ${short(after.live.bundleHash)}${after.live.bundleHash !== before.live.bundleHash ? ", written meanwhile by another run of this stack" : ""} ` +
      `(newest certificate issued ${after.live.issuedAt}); this run's bundle ${short(ours.bundleHash)} is older (newest certificate issued ${ours.issuedAt}) ` +
      `and would replace it. ${rerun}`);
  }
}
