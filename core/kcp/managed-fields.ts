import { FIELD_MANAGER, KcpObject } from "./api";

/*
 * Who wrote a field, from the object's managedFields (server-side field tracking, also kept for plain
 * updates): when our entries were reverted, the error names the manager that owns the field now, which
 * tells a GitOps tool, a platform controller or Cluster API's topology controller (capi-topology) apart.
 */

interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  time?: string;
  fieldsV1?: Record<string, unknown>;
}

/** Whether `fields` (a FieldsV1 tree) holds the field at `path` (e.g. ["f:spec", "f:kubeadmConfigSpec", "f:files"]). */
function holds(fields: unknown, path: readonly string[]): boolean {
  let at: unknown = fields;
  for (const key of path) {
    if (!at || typeof at !== "object" || !(key in (at as Record<string, unknown>))) return false;
    at = (at as Record<string, unknown>)[key];
  }
  return true;
}

/** The managers other than registry-trust that own the field at `path`, as "name (Operation at time)". */
export function otherManagersOf(o: KcpObject, path: readonly string[]): string[] {
  const entries = (Array.isArray(o.metadata.managedFields) ? o.metadata.managedFields : []) as ManagedFieldsEntry[];
  return entries
    .filter((e) => e.manager !== FIELD_MANAGER && holds(e.fieldsV1, path))
    .map((e) => `"${e.manager ?? "unknown"}" (${e.operation ?? "?"}${e.time ? ` at ${e.time}` : ""})`);
}

/** One sentence naming who owns the field now, for ENTRIES_REVERTED errors. */
export function describeOwners(o: KcpObject, path: readonly string[]): string {
  const field = path.map((k) => k.replace(/^f:/, "")).join(".");
  const managers = otherManagersOf(o, path);
  return managers.length > 0
    ? `${field} is now owned by field manager ${managers.join(", ")} (metadata.managedFields)`
    : `managedFields name no manager but registry-trust for ${field}`;
}
