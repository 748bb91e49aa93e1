import type * as K8s from "@kubernetes/client-node";
import { OsFamily } from "../core/config/model";
import { clientNodeKcpApi, KcpVersion, loadKubeConfig } from "../core/kcp/api";
import { runOptions } from "../core/kcp/run-options";
import { inspectControlPlaneTrust, removeControlPlaneTrust, SequencerOptions, SequencerResult, writeControlPlaneTrust } from "../core/kcp/sequencer";
import { probeTopologyOwned } from "../core/topology/ownership";
import { RECORD_KEY, recordName } from "../core/rotation/record";
import { DriftOutput, trustProvider } from "./cluster-trust-provider";

/*
 * The dynamic provider running the KCP sequencer. Pulumi serializes this object into the state and runs
 * that copy later. From a checkout the core/kcp code is captured by value, so a delete runs the copy of the
 * last successful update; from the installed package it is captured by reference
 * (`require("registry-trust/dist/core/kcp/….js")`), so a delete runs the installed version's code with the
 * stored inputs (docs/packaging.md). Hence:
 *  - @kubernetes/client-node is require()d inside the methods: the closure must not capture the module
 *    (docs/kubernetes-client.md);
 *  - the core/kcp functions import no client-node at module level; the bundle is validated by the
 *    ControlPlaneTrust component in the program, not here (see writeControlPlaneTrust);
 *  - everything a later delete needs is in the outputs, the kubeconfig as a secret output.
 */

export interface ControlPlaneTrustInputs {
  /** Kubeconfig content, or a path to one (read when the provider runs). */
  readonly kubeconfig: string;
  readonly context?: string;
  readonly namespace: string;
  readonly name: string;
  readonly apiVersion?: KcpVersion;
  readonly endpoints: { host: string; port: number; mirrorOf: string[] }[];
  readonly bundlePem: string;
  readonly bundleHash: string;
  /** notBefore of the bundle's newest certificate: orders bundles for the Lease fence (core/kcp/fence.ts). */
  readonly issuedAt?: string;
  /** Lease holder prefix and owner of our entries: the stack; each provider call adds a run id. */
  readonly holder: string;
  readonly adopt?: boolean;
  readonly inlineMaxChars?: number;
  readonly osTrustStore?: OsFamily;
  readonly rolloutAfter?: string;
  readonly waitForRollout?: boolean;
  readonly rolloutTimeoutSeconds?: number;
  readonly leaseWaitTimeoutSeconds?: number;
  readonly conflictDeadlineSeconds?: number;
}

export interface ControlPlaneTrustOutputs extends ControlPlaneTrustInputs, DriftOutput {
  /** KCP metadata.generation that carried our entries and was rolled out. */
  readonly generation: number;
  /** API version the KCP was written in. */
  readonly servedVersion: string;
  readonly ownedPaths: string[];
  /** The Secret holding the bundle when it is not inline. */
  readonly secretName?: string;
}

/** Inputs whose change needs a write to the KCP; the kubeconfig is not one (credentials rotate). */
const WRITE_INPUTS = ["endpoints", "bundleHash", "adopt", "inlineMaxChars", "osTrustStore", "rolloutAfter", "apiVersion"] as const;
/** Inputs naming the target: a change means removing from the old KCP and writing to the new one. */
const TARGET_INPUTS = ["namespace", "name", "context"] as const;

function clientOf(inputs: ControlPlaneTrustInputs) {
  const k8s = require("@kubernetes/client-node") as typeof K8s;
  return {
    api: clientNodeKcpApi(k8s, loadKubeConfig(k8s, inputs.kubeconfig, inputs.context)),
    target: { namespace: inputs.namespace, name: inputs.name, apiVersion: inputs.apiVersion },
    trust: { endpoints: inputs.endpoints, bundlePem: inputs.bundlePem, inlineMaxChars: inputs.inlineMaxChars, osTrustStore: inputs.osTrustStore, issuedAt: inputs.issuedAt },
  };
}

async function run(action: "apply" | "remove", inputs: ControlPlaneTrustInputs): Promise<SequencerResult> {
  const { randomUUID } = require("node:crypto") as typeof import("node:crypto");
  const { api, target, trust } = clientOf(inputs);
  const options: SequencerOptions = {
    ...runOptions(inputs, randomUUID()),
    rolloutAfter: inputs.rolloutAfter,
    // The stack's rotation record in the KCP's namespace (components/rotation-record.ts writes it).
    record: { namespace: inputs.namespace, name: recordName(inputs.holder), key: RECORD_KEY },
  };
  if (action === "remove") return removeControlPlaneTrust(api, target, options);
  return writeControlPlaneTrust(api, target, trust, options);
}

async function inspect(inputs: ControlPlaneTrustInputs) {
  const { api, target, trust } = clientOf(inputs);
  const r = await inspectControlPlaneTrust(api, target, trust, inputs.holder);
  return { live: { servedVersion: r.version, ownedPaths: r.ownership.paths, ...(r.ownership.secret ? { secretName: r.ownership.secret } : {}) }, drift: r.drift };
}

async function applied(inputs: ControlPlaneTrustInputs): Promise<ControlPlaneTrustOutputs> {
  const r = await run("apply", inputs);
  return { ...inputs, generation: r.generation, servedVersion: r.version, ownedPaths: r.ownership.paths, ...(r.ownership.secret ? { secretName: r.ownership.secret } : {}) };
}

export const controlPlaneTrustProvider = trustProvider<ControlPlaneTrustInputs, ControlPlaneTrustOutputs>({
  apply: applied,
  inspect,
  remove: (inputs) => run("remove", inputs),
  writeInputs: WRITE_INPUTS,
  targetInputs: TARGET_INPUTS,
  gone: "KCP_NOT_FOUND",
  probe: (inputs) => {
    const k8s = require("@kubernetes/client-node") as typeof K8s;
    const api = clientNodeKcpApi(k8s, loadKubeConfig(k8s, inputs.kubeconfig, inputs.context));
    return probeTopologyOwned("KubeadmControlPlane", () => api.getKcp({ namespace: inputs.namespace, name: inputs.name }, inputs.apiVersion ?? "v1beta2"));
  },
});
