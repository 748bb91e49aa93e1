import * as pulumi from "@pulumi/pulumi";
import type * as K8s from "@kubernetes/client-node";
import { OsFamily } from "../core/config/model";
import { loadKubeConfig } from "../core/kcp/api";
import { isKcpError } from "../core/kcp/errors";
import { canonicalJson } from "../core/kcp/plan";
import { runOptions } from "../core/kcp/run-options";
import { CapiVersion, clientNodeWorkerApi } from "../core/workers/api";
import { removeWorkerTrust, WorkerOptions, WorkerResult, writeWorkerTrust } from "../core/workers/sequencer";

/*
 * The dynamic provider running the worker sequencer, under the same serialization constraints as
 * control-plane-trust-provider.ts: client-node is require()d inside the methods, core/workers and
 * core/kcp are captured by value (no x509 parser: the bundle is validated by the WorkerTrust component),
 * and everything a later delete needs is in the outputs.
 */

export interface WorkerTrustInputs {
  /** Kubeconfig content, or a path to one (read when the provider runs). */
  readonly kubeconfig: string;
  readonly context?: string;
  readonly namespace: string;
  /** The MachineDeployment. */
  readonly name: string;
  readonly apiVersion?: CapiVersion;
  readonly endpoints: { host: string; port: number; mirrorOf: string[] }[];
  readonly bundlePem: string;
  readonly bundleHash: string;
  /** Lease holder prefix: the stack; each provider call adds a run id. */
  readonly holder: string;
  readonly adopt?: boolean;
  readonly osTrustStore?: OsFamily;
  readonly waitForRollout?: boolean;
  readonly rolloutTimeoutSeconds?: number;
  readonly leaseWaitTimeoutSeconds?: number;
  readonly conflictDeadlineSeconds?: number;
}

export interface WorkerTrustOutputs extends WorkerTrustInputs {
  /** The KubeadmConfigTemplate the MachineDeployment names, carrying our entries. */
  readonly template: string;
  /** MachineDeployment metadata.generation naming it. */
  readonly generation: number;
  readonly servedVersion: string;
  readonly ownedPaths: string[];
}

/** Inputs whose change needs a new template; the kubeconfig is not one (credentials rotate). */
const WRITE_INPUTS = ["endpoints", "bundleHash", "adopt", "osTrustStore", "apiVersion"] as const;
/** Inputs naming the target: a change means removing from the old MachineDeployment and writing to the new one. */
const TARGET_INPUTS = ["namespace", "name", "context"] as const;

async function run(action: "apply" | "remove", inputs: WorkerTrustInputs): Promise<WorkerResult> {
  const k8s = require("@kubernetes/client-node") as typeof K8s;
  const { randomUUID } = require("node:crypto") as typeof import("node:crypto");
  const api = clientNodeWorkerApi(k8s, loadKubeConfig(k8s, inputs.kubeconfig, inputs.context));
  const target = { namespace: inputs.namespace, name: inputs.name, apiVersion: inputs.apiVersion };
  const options: WorkerOptions = runOptions(inputs, randomUUID());
  if (action === "remove") return removeWorkerTrust(api, target, options);
  return writeWorkerTrust(api, target, { endpoints: inputs.endpoints, bundlePem: inputs.bundlePem, osTrustStore: inputs.osTrustStore }, options);
}

async function applied(inputs: WorkerTrustInputs): Promise<WorkerTrustOutputs> {
  const r = await run("apply", inputs);
  return { ...inputs, template: r.template, generation: r.generation, servedVersion: r.version, ownedPaths: r.ownership.paths };
}

export const workerTrustProvider: pulumi.dynamic.ResourceProvider<WorkerTrustInputs, WorkerTrustOutputs> = {
  async diff(_id, olds, news) {
    const differs = (keys: readonly (keyof WorkerTrustInputs)[]) =>
      keys.filter((k) => canonicalJson(olds[k] ?? null) !== canonicalJson(news[k] ?? null));
    const replaces = differs(TARGET_INPUTS);
    const changed = differs(WRITE_INPUTS);
    // Delete first, as for ControlPlaneTrust: old and new target may be the same MachineDeployment.
    return { changes: replaces.length + changed.length > 0, replaces, deleteBeforeReplace: true };
  },
  async create(inputs) {
    return { id: `${inputs.namespace}/${inputs.name}`, outs: await applied(inputs) };
  },
  async update(_id, _olds, news) {
    return { outs: await applied(news) };
  },
  async delete(_id, props) {
    try {
      await run("remove", props);
    } catch (e) {
      // A MachineDeployment that is gone creates no machine from our template: nothing left to undo.
      if (!isKcpError(e, "MACHINE_DEPLOYMENT_NOT_FOUND")) throw e;
    }
  },
};
