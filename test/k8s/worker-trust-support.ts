// MachineDeployments and KubeadmConfigTemplates on the real apiserver for the worker tests, and a stand-in
// for CAPI's MachineDeployment controller: it reports rollouts in the status shape of its version and keeps
// writing the object at a busy controller's pace, so that our resourceVersion preconditions meet real 409s.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { ApiServer } from "../../lab/apiserver";
import { NAMESPACE } from "../../lab/capi-objects";






/** A kubeconfig for `user` (no groups), with a client certificate from the test apiserver's CA. */
export function userKubeConfig(env: ApiServer, user: string): k8s.KubeConfig {
  const key = path.join(env.dir, `${user}.key`);
  const crt = path.join(env.dir, `${user}.crt`);
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-CA", path.join(env.dir, "ca.crt"), "-CAkey", path.join(env.dir, "ca.key"), "-keyout", key, "-out", crt, "-subj", `/CN=${user}`,
    "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=clientAuth"], { stdio: "pipe" });
  const b64 = (f: string) => fs.readFileSync(f).toString("base64");
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "test", server: env.server, caData: b64(path.join(env.dir, "ca.crt")) }],
    users: [{ name: user, certData: b64(crt), keyData: b64(key) }],
    contexts: [{ name: "test", cluster: "test", user }],
    currentContext: "test",
  });
  return kc;
}

/** Grants `user` exactly `rules` in the test namespace. */
export async function grant(env: ApiServer, user: string, rules: k8s.V1PolicyRule[]): Promise<void> {
  const rbac = env.kubeConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({ namespace: NAMESPACE, body: { metadata: { name: user }, rules } });
  await rbac.createNamespacedRoleBinding({ namespace: NAMESPACE, body: {
    metadata: { name: user },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: user },
    subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: user }],
  } });
}
