import { KcpApi, KcpObject } from "./api";
import { httpStatus, kcpError, KCP_GRANTS, refuseForbidden } from "./errors";
import { SecretPlan } from "./plan";

/*
 * The Secret a bundle too large for a file's inline content lives in (files[].contentFrom), shared by the
 * KCP sequencer and core/workers: content-addressed, created once, never rewritten, owned by the object
 * whose machines read it so that it is deleted with it.
 */

export type SecretApi = Pick<KcpApi, "getSecret" | "createSecret" | "listSecrets" | "deleteSecret">;

/**
 * Creates the Secret in `owner`'s namespace, labelled `labels` and owned by `owner` (a KubeadmControlPlane
 * or MachineDeployment as read); an existing one must hold the same content. `grants` are named when RBAC
 * refuses.
 */
export async function ensureSecret(api: SecretApi, owner: KcpObject, secret: SecretPlan, labels: Record<string, string>, grants: string = KCP_GRANTS): Promise<void> {
  const namespace = owner.metadata.namespace ?? "";
  const ref = { namespace, name: secret.name };
  const encoded = Buffer.from(secret.data, "utf8").toString("base64");
  const check = async () => {
    const existing = await api.getSecret(ref);
    if (existing && existing.data?.[secret.key] !== encoded) {
      throw kcpError("SECRET_CONFLICT", `Secret ${namespace}/${secret.name}/${secret.key} exists with other content; registry-trust names its Secrets ` +
        "after the bundle's hash and never rewrites them: delete that Secret if it was made by hand");
    }
    return existing !== undefined;
  };
  try {
    if (await check()) return;
    await api.createSecret({
      metadata: {
        name: secret.name, namespace, labels,
        ownerReferences: [{ apiVersion: owner.apiVersion, kind: owner.kind ?? "KubeadmControlPlane", name: owner.metadata.name, uid: owner.metadata.uid }],
      },
      type: "Opaque",
      data: { [secret.key]: encoded },
    }).catch((e) => {
      if (httpStatus(e) !== 409) throw e;
    });
    if (!(await check())) throw new Error(`Secret ${namespace}/${secret.name} was created but cannot be read back`);
  } catch (e) {
    throw refuseForbidden(e, `create Secret ${namespace}/${secret.name}`, grants);
  }
}
