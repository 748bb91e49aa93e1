import type * as K8s from "@kubernetes/client-node";
import { loadKubeConfig } from "../core/kcp/api";
import { runOptions } from "../core/kcp/run-options";
import { clientNodeTopologyApi } from "../core/topology/api";
import { Shape } from "../core/topology/shapes";
import { removeTopologyTrust, TopologyOptions, TopologyResult, writeTopologyTrust } from "../core/topology/sequencer";
import { trustProvider } from "./cluster-trust-provider";

/*
 * The dynamic provider running the topology route (core/topology). Serialized into the state like the KCP
 * provider, under the same rules (control-plane-trust-provider.ts): client-node required inside the methods,
 * everything a later delete needs in the outputs.
 */

export interface TopologyTrustInputs {
  /** Kubeconfig content, or a path to one (read when the provider runs). */
  readonly kubeconfig: string;
  readonly context?: string;
  /** The Cluster (spec.topology set). */
  readonly namespace: string;
  readonly name: string;
  readonly variable: string;
  readonly shape: Shape;
  readonly endpoints: { host: string; port: number; mirrorOf: string[] }[];
  readonly bundlePem: string;
  readonly bundleHash: string;
  readonly holder: string;
  readonly waitForRollout?: boolean;
  readonly rolloutTimeoutSeconds?: number;
  readonly leaseWaitTimeoutSeconds?: number;
  readonly conflictDeadlineSeconds?: number;
}

export interface TopologyTrustOutputs extends TopologyTrustInputs {
  /** Cluster metadata.generation that carried the variable and was rolled out. */
  readonly generation: number;
  /** Our Secret (files, caren-registries) or the shared Secret (tkg-trust). */
  readonly secretName?: string;
}

const WRITE_INPUTS = ["endpoints", "bundleHash", "variable", "shape"] as const;
const TARGET_INPUTS = ["namespace", "name", "context"] as const;

async function run(action: "apply" | "remove", inputs: TopologyTrustInputs): Promise<TopologyResult> {
  const k8s = require("@kubernetes/client-node") as typeof K8s;
  const { randomUUID } = require("node:crypto") as typeof import("node:crypto");
  const api = clientNodeTopologyApi(k8s, loadKubeConfig(k8s, inputs.kubeconfig, inputs.context));
  const target = { cluster: { namespace: inputs.namespace, name: inputs.name } };
  const options: TopologyOptions = runOptions(inputs, randomUUID());
  const spec = { variable: inputs.variable, shape: inputs.shape, endpoints: inputs.endpoints, bundlePem: inputs.bundlePem };
  return action === "remove" ? removeTopologyTrust(api, target, spec, options) : writeTopologyTrust(api, target, spec, options);
}

export const topologyTrustProvider = trustProvider<TopologyTrustInputs, TopologyTrustOutputs>({
  async apply(inputs) {
    const r = await run("apply", inputs);
    return { ...inputs, generation: r.generation, ...(r.ownership.secret ? { secretName: r.ownership.secret } : {}) };
  },
  remove: (inputs) => run("remove", inputs),
  writeInputs: WRITE_INPUTS,
  targetInputs: TARGET_INPUTS,
  gone: "KCP_NOT_FOUND",
});
