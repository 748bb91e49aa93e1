import type * as K8s from "@kubernetes/client-node";
import { OsFamily } from "../core/config/model";
import { loadKubeConfig } from "../core/kcp/api";
import { runOptions } from "../core/kcp/run-options";
import { CapiVersion, clientNodeWorkerApi } from "../core/workers/api";
import { inspectWorkerTrust, removeWorkerTrust, WorkerOptions, WorkerResult, writeWorkerTrust } from "../core/workers/sequencer";
import { probeTopologyOwned } from "../core/topology/ownership";
import { RECORD_KEY, recordName } from "../core/rotation/record";
import { DriftOutput, trustProvider } from "./cluster-trust-provider";

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
  /** notBefore of the bundle's newest certificate: orders bundles for the Lease fence (core/kcp/fence.ts). */
  readonly issuedAt?: string;
  /** Lease holder prefix and owner of our entries: the stack; each provider call adds a run id. */
  readonly holder: string;
  readonly adopt?: boolean;
  readonly osTrustStore?: OsFamily;
  readonly waitForRollout?: boolean;
  readonly rolloutTimeoutSeconds?: number;
  readonly leaseWaitTimeoutSeconds?: number;
  readonly conflictDeadlineSeconds?: number;
}

export interface WorkerTrustOutputs extends WorkerTrustInputs, DriftOutput {
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

function clientOf(inputs: WorkerTrustInputs) {
  const k8s = require("@kubernetes/client-node") as typeof K8s;
  return {
    api: clientNodeWorkerApi(k8s, loadKubeConfig(k8s, inputs.kubeconfig, inputs.context)),
    target: { namespace: inputs.namespace, name: inputs.name, apiVersion: inputs.apiVersion },
    trust: { endpoints: inputs.endpoints, bundlePem: inputs.bundlePem, osTrustStore: inputs.osTrustStore, issuedAt: inputs.issuedAt },
  };
}

async function run(action: "apply" | "remove", inputs: WorkerTrustInputs): Promise<WorkerResult> {
  const { randomUUID } = require("node:crypto") as typeof import("node:crypto");
  const { api, target, trust } = clientOf(inputs);
  // The stack's rotation record in the MachineDeployment's namespace (components/rotation-record.ts writes it).
  const options: WorkerOptions = { ...runOptions(inputs, randomUUID()), record: { namespace: inputs.namespace, name: recordName(inputs.holder), key: RECORD_KEY } };
  if (action === "remove") return removeWorkerTrust(api, target, options);
  return writeWorkerTrust(api, target, trust, options);
}

async function inspect(inputs: WorkerTrustInputs) {
  const { api, target, trust } = clientOf(inputs);
  const r = await inspectWorkerTrust(api, target, trust, inputs.holder);
  return { live: { template: r.template, servedVersion: r.version, ownedPaths: r.ownership.paths, ...(r.ownership.secret ? { secretName: r.ownership.secret } : {}) }, drift: r.drift };
}

async function applied(inputs: WorkerTrustInputs): Promise<WorkerTrustOutputs> {
  const r = await run("apply", inputs);
  return { ...inputs, template: r.template, generation: r.generation, servedVersion: r.version, ownedPaths: r.ownership.paths, ...(r.ownership.secret ? { secretName: r.ownership.secret } : {}) };
}

export const workerTrustProvider = trustProvider<WorkerTrustInputs, WorkerTrustOutputs>({
  apply: applied,
  inspect,
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
