import type * as K8s from "@kubernetes/client-node";
import { OsFamily } from "../core/config/model";
import { loadKubeConfig } from "../core/kcp/api";
import { runOptions } from "../core/kcp/run-options";
import { CapiVersion, clientNodeWorkerApi } from "../core/workers/api";
import { removeWorkerTrust, WorkerOptions, WorkerResult, writeWorkerTrust } from "../core/workers/sequencer";
import { probeTopologyOwned } from "../core/topology/ownership";
import { trustProvider } from "./cluster-trust-provider";

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
  /** The Secret the template's CA files take the bundle from, when it is over 10,240 characters. */
  readonly secretName?: string;
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
  return { ...inputs, template: r.template, generation: r.generation, servedVersion: r.version, ownedPaths: r.ownership.paths, ...(r.ownership.secret ? { secretName: r.ownership.secret } : {}) };
}

export const workerTrustProvider = trustProvider<WorkerTrustInputs, WorkerTrustOutputs>({
  apply: applied,
  remove: (inputs) => run("remove", inputs),
  writeInputs: WRITE_INPUTS,
  targetInputs: TARGET_INPUTS,
  // A MachineDeployment that is gone creates no machine from our template: nothing left to undo.
  gone: "MACHINE_DEPLOYMENT_NOT_FOUND",
  probe: (inputs) => {
    const k8s = require("@kubernetes/client-node") as typeof K8s;
    const api = clientNodeWorkerApi(k8s, loadKubeConfig(k8s, inputs.kubeconfig, inputs.context));
    return probeTopologyOwned("MachineDeployment", () => api.getMachineDeployment({ namespace: inputs.namespace, name: inputs.name }, inputs.apiVersion ?? "v1beta2"));
  },
});
