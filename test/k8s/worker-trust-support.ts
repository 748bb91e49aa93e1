// MachineDeployments and KubeadmConfigTemplates on the real apiserver for the worker tests, and a stand-in
// for CAPI's MachineDeployment controller: it reports rollouts in the status shape of its version and keeps
// writing the object at a busy controller's pace, so that our resourceVersion preconditions meet real 409s.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { CapiVersion, clientNodeWorkerApi, KubeObject, MD_GROUP, MD_PLURAL, TEMPLATE_GROUP, TEMPLATE_KIND, TEMPLATE_PLURAL, WorkerApi } from "../../core/workers/api";
import { FileEntry } from "../../core/kcp/plan";
import { ApiServer } from "./apiserver";
import { NAMESPACE, OTHERS_FILES } from "./kcp-support";

export function workerApi(env: ApiServer): WorkerApi {
  return clientNodeWorkerApi(k8s, env.kubeConfig);
}

export async function createTemplate(env: ApiServer, version: CapiVersion, name: string, files: FileEntry[] = OTHERS_FILES): Promise<KubeObject> {
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  return (await custom.createNamespacedCustomObject({ group: TEMPLATE_GROUP, version, namespace: NAMESPACE, plural: TEMPLATE_PLURAL, body: {
    apiVersion: `${TEMPLATE_GROUP}/${version}`, kind: TEMPLATE_KIND,
    metadata: { name, namespace: NAMESPACE, labels: { "cluster.x-k8s.io/cluster-name": "c1" } },
    spec: { template: { spec: { files, preKubeadmCommands: ["echo platform-first"] } } },
  } })) as KubeObject;
}

export async function createMachineDeployment(env: ApiServer, version: CapiVersion, name: string, configRef: Record<string, string>): Promise<KubeObject> {
  const infrastructureRef = version === "v1beta2"
    ? { apiGroup: "infrastructure.cluster.x-k8s.io", kind: "DockerMachineTemplate", name: "workers" }
    : { apiVersion: "infrastructure.cluster.x-k8s.io/v1beta1", kind: "DockerMachineTemplate", name: "workers" };
  const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  return (await custom.createNamespacedCustomObject({ group: MD_GROUP, version, namespace: NAMESPACE, plural: MD_PLURAL, body: {
    apiVersion: `${MD_GROUP}/${version}`, kind: "MachineDeployment",
    metadata: { name, namespace: NAMESPACE },
    spec: {
      clusterName: "c1", replicas: 2, selector: { matchLabels: { pool: name } },
      template: { metadata: { labels: { pool: name } }, spec: { clusterName: "c1", version: "v1.37.2", bootstrap: { configRef }, infrastructureRef } },
    },
  } })) as KubeObject;
}

/** The configRef of `version` naming a KubeadmConfigTemplate. */
export function templateRef(version: CapiVersion, name: string): Record<string, string> {
  return version === "v1beta2"
    ? { apiGroup: TEMPLATE_GROUP, kind: TEMPLATE_KIND, name }
    : { apiVersion: `${TEMPLATE_GROUP}/${version}`, kind: TEMPLATE_KIND, name };
}

export class SimMachineDeploymentController {
  heartbeats = 0;
  readonly rolledOut: number[] = [];
  readonly errors: string[] = [];
  private running = true;
  private readonly loop: Promise<void>;
  private readonly api: k8s.CustomObjectsApi;

  /** `paceMs`: the pause between writes is drawn from [min, max]; the lab runs slower than the tests' 5–50 ms. */
  constructor(env: ApiServer, private readonly version: CapiVersion, private readonly name: string, private readonly rolloutDelayMs = 300,
    private readonly paceMs: readonly [number, number] = [5, 50]) {
    this.api = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const ref = { group: MD_GROUP, version: this.version, namespace: NAMESPACE, plural: MD_PLURAL, name: this.name };
    let seen = { generation: 0, at: 0 };
    while (this.running) {
      try {
        const md = (await this.api.getNamespacedCustomObject(ref)) as KubeObject;
        const generation = md.metadata.generation ?? 0;
        if (generation !== seen.generation) seen = { generation, at: Date.now() };
        const replicas = md.spec?.replicas ?? 1;
        const done = Date.now() - seen.at >= this.rolloutDelayMs;
        const upToDate = done ? replicas : 0;
        const status = { observedGeneration: generation, replicas, readyReplicas: replicas, [this.version === "v1beta2" ? "upToDateReplicas" : "updatedReplicas"]: upToDate };
        if (JSON.stringify({ ...md.status, ...status }) !== JSON.stringify(md.status)) {
          await this.api.replaceNamespacedCustomObjectStatus({ ...ref, body: { ...md, status: { ...md.status, ...status } } });
          if (done) this.rolledOut.push(generation);
        } else {
          // The write of a busy controller: labels and annotations do not change the generation.
          md.metadata.annotations = { ...md.metadata.annotations, "sim.registry-trust.test/heartbeat": String(++this.heartbeats) };
          await this.api.replaceNamespacedCustomObject({ ...ref, body: md });
        }
      } catch (e) {
        const code = (e as { code?: number }).code;
        if (code !== 409) this.errors.push(String((e as Error).message).slice(0, 200));
      }
      await new Promise((r) => setTimeout(r, this.paceMs[0] + Math.random() * (this.paceMs[1] - this.paceMs[0])));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

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
