import { createHash } from "node:crypto";
import { kcpError } from "../kcp/errors";
import { allOwnerships, canonicalJson, Desired, MANAGED_BY, MANAGED_BY_LABEL, nameLabelValue, planMerge } from "../kcp/plan";
import { CapiVersion, KubeObject, TEMPLATE_GROUP, TEMPLATE_KIND } from "./api";

/*
 * Pure planning of a worker's bootstrap template. Editing a KubeadmConfigTemplate in place rolls no
 * machine (and is invisible to MachineSets already created), so a change means a new template, named
 * after its content, and the MachineDeployment repointed at it. Our entries are merged into the copy by
 * core/kcp's planMerge, exactly as into a KCP: other files kept as read, ownership in the same annotation.
 */

/** On our templates: the template they were derived from, so that a rotation derives from it again. */
export const BASE_ANNOTATION = "registry-trust.io/base-template";
/** On our templates: the MachineDeployment they were made for, so that its runs prune only their own. */
export const MD_LABEL = "registry-trust.io/machine-deployment";
/** Annotations of the base not carried over: they describe how the base was applied, not the copy. */
const NOT_COPIED = ["kubectl.kubernetes.io/last-applied-configuration"];

export function templateLabels(mdName: string): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY, [MD_LABEL]: nameLabelValue(mdName) };
}

export function labelSelector(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(",");
}

/** Whether registry-trust made `template` for this MachineDeployment. */
export function isOurs(template: KubeObject, mdName: string): boolean {
  const labels = template.metadata.labels ?? {};
  return Object.entries(templateLabels(mdName)).every(([k, v]) => labels[k] === v);
}

/** The bootstrap template a MachineDeployment names; refused unless it is a KubeadmConfigTemplate. */
export function configRefName(md: KubeObject): string {
  const what = `MachineDeployment ${md.metadata.namespace}/${md.metadata.name}`;
  const template = (md.spec?.template as { spec?: { bootstrap?: { configRef?: Record<string, unknown>; dataSecretName?: string } } } | undefined)?.spec;
  const ref = template?.bootstrap?.configRef;
  if (!ref) {
    throw kcpError("UNSUPPORTED_BOOTSTRAP", `${what} has no spec.template.spec.bootstrap.configRef` +
      `${template?.bootstrap?.dataSecretName ? ` (it bootstraps from Secret ${template.bootstrap.dataSecretName})` : ""}: ` +
      "registry-trust can only add files to a KubeadmConfigTemplate; use the cloud-init fragment or the DaemonSet for these nodes");
  }
  // v1beta2 names the group (apiGroup), v1beta1 the group and version (apiVersion).
  const group = typeof ref.apiGroup === "string" ? ref.apiGroup : String(ref.apiVersion ?? "").split("/")[0];
  if (ref.kind !== TEMPLATE_KIND || group !== TEMPLATE_GROUP || typeof ref.name !== "string") {
    throw kcpError("UNSUPPORTED_BOOTSTRAP", `${what} bootstraps from ${String(ref.kind)} ${String(ref.name)} (${group || "no group"}), ` +
      `not a ${TEMPLATE_KIND} of ${TEMPLATE_GROUP}: registry-trust can only add files to KubeadmConfigTemplates`);
  }
  return ref.name;
}

/** The MachineDeployment pointed at another template of the same kind; undefined when it already is. */
export function repointed(md: KubeObject, templateName: string): KubeObject | undefined {
  if (configRefName(md) === templateName) return undefined;
  const copy = JSON.parse(JSON.stringify(md)) as KubeObject;
  const ref = (copy.spec!.template as { spec: { bootstrap: { configRef: Record<string, unknown> } } }).spec.bootstrap.configRef;
  ref.name = templateName;
  // v1beta1 references may pin the old template's identity: it no longer describes the one named.
  delete ref.uid;
  delete ref.resourceVersion;
  return copy;
}

/** Content-addressed: the same content for the same MachineDeployment always gets the same name. */
export function templateName(base: string, mdName: string, spec: unknown): string {
  const hash = createHash("sha256").update(canonicalJson({ machineDeployment: mdName, spec })).digest("hex").slice(0, 12);
  const suffix = `-rt-${hash}`;
  return `${base.slice(0, 253 - suffix.length).replace(/[.-]+$/, "")}${suffix}`;
}

/** The ownership annotations of a template (every owner's), compared when a template of the same name exists. */
export function ownershipRecords(t: KubeObject): Record<string, string> {
  const annotations = t.metadata.annotations ?? {};
  return Object.fromEntries([...allOwnerships(t).keys()].sort().map((k) => [k, annotations[k]]));
}

/**
 * The name for `create` when a template of its name exists with the same spec but other owners recorded
 * (another stack made the very same content): the owners go into the hash, so each keeps its own record.
 */
export function disambiguated(create: KubeObject, base: string, mdName: string): KubeObject {
  const name = templateName(base, mdName, { spec: create.spec, owners: ownershipRecords(create) });
  return { ...create, metadata: { ...create.metadata, name } };
}

export interface TemplatePlan {
  /** The template the MachineDeployment should name. */
  readonly name: string;
  /** The template to create under that name, when it is a new one. */
  readonly create?: KubeObject;
  /** The template ours derive from (the one a user made). */
  readonly base: string;
}

/**
 * What the MachineDeployment should point at, given the template it points at now (`current`) and,
 * when `current` is ours, the template it was derived from (`base`, undefined when that is gone):
 *  - `current` already carries exactly our entries: itself;
 *  - the base carries exactly what we want (e.g. after removing our entries): the base again;
 *  - otherwise a new template, a copy of `current` with our entries merged.
 */
export function planTemplate(current: KubeObject, base: KubeObject | undefined, mdName: string, desired: Desired, opts: { version: CapiVersion; adopt?: boolean; owner?: string }): TemplatePlan {
  const baseName = isOurs(current, mdName) ? (current.metadata.annotations?.[BASE_ANNOTATION] ?? current.metadata.name ?? "") : (current.metadata.name ?? "");
  const merged = planMerge(current, desired, opts).update;
  if (!merged) return { name: current.metadata.name ?? "", base: baseName };
  if (base && !isOurs(base, mdName) && canonicalJson(base.spec) === canonicalJson(merged.spec)) return { name: baseName, base: baseName };

  const name = templateName(baseName, mdName, merged.spec);
  const m = merged.metadata;
  const annotations: Record<string, string> = { ...(m.annotations ?? {}), [BASE_ANNOTATION]: baseName };
  for (const key of NOT_COPIED) delete annotations[key];
  return {
    name,
    base: baseName,
    create: {
      apiVersion: merged.apiVersion,
      kind: TEMPLATE_KIND,
      metadata: {
        name, namespace: m.namespace, labels: { ...(m.labels ?? {}), ...templateLabels(mdName) }, annotations,
        // The Cluster owns templates (CAPI sets this on the base): ours are deleted with it too.
        ...(m.ownerReferences ? { ownerReferences: m.ownerReferences } : {}),
      },
      spec: merged.spec,
    },
  };
}
