import * as pulumi from "@pulumi/pulumi";
import { isKcpError, KcpErrorCode } from "../core/kcp/errors";
import { canonicalJson } from "../core/kcp/plan";

/** How one Cluster API trust resource (ControlPlaneTrust, WorkerTrust) is applied and removed. */
export interface TrustProviderSpec<I extends { readonly namespace: string; readonly name: string }, O extends I> {
  /** Writes our entries (and waits as configured); returns the outputs. */
  readonly apply: (inputs: I) => Promise<O>;
  /**
   * Reads what is live, without writing: the outputs as the object has them now and how our entries differ
   * from what `inputs` plan (undefined when exactly as planned). Without it (TopologyTrust, so far) `read`
   * keeps the stored outputs and `diff` compares inputs only.
   */
  readonly inspect?: (inputs: I) => Promise<{ readonly live: Partial<O>; readonly drift?: string }>;
  /** Removes our entries, from the stored inputs. */
  readonly remove: (inputs: I) => Promise<unknown>;
  /** Inputs whose change needs a write; the kubeconfig is never one (credentials rotate). */
  readonly writeInputs: readonly (keyof I)[];
  /** Inputs naming the target object: a change replaces the resource. */
  readonly targetInputs: readonly (keyof I)[];
  /** The error code meaning the target object is gone, which a delete treats as done. */
  readonly gone: KcpErrorCode;
  /** Refuses a target that must not be written directly (core/topology/ownership.ts); runs in preview too. */
  readonly probe?: (inputs: I) => Promise<void>;
}

/** Outputs every Cluster API trust resource has besides its inputs. */
export interface DriftOutput {
  /** How our entries on the live object differ from what the inputs plan, as `read` found it; "" when they do not. */
  readonly drift?: string;
}

/** How the engine passes a value not known during preview to a dynamic provider. */
const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/**
 * The dynamic provider shared by the Cluster API trust resources. It is serialized into the state with
 * everything `spec` captures, so `spec` must follow the rules in control-plane-trust-provider.ts.
 */
export function trustProvider<I extends { readonly namespace: string; readonly name: string }, O extends I & DriftOutput>(
  spec: TrustProviderSpec<I, O>,
): pulumi.dynamic.ResourceProvider<I, O> {
  return {
    async check(_olds, news) {
      const target = [news.namespace, news.name, (news as { kubeconfig?: unknown }).kubeconfig];
      if (spec.probe && target.every((v) => typeof v === "string" && v !== UNKNOWN)) await spec.probe(news);
      return { inputs: news };
    },
    async diff(_id, olds, news) {
      const differs = (keys: readonly (keyof I)[]) => keys.filter((k) => canonicalJson(olds[k] ?? null) !== canonicalJson(news[k] ?? null));
      const replaces = differs(spec.targetInputs) as string[];
      const changed = differs(spec.writeInputs);
      // Delete first: the old and new target may be the same object under another context name, and a
      // delete after the create would remove what the create just wrote.
      const result = { replaces, deleteBeforeReplace: true };
      if (replaces.length + changed.length > 0) return { changes: true, ...result };
      // Same inputs: an update is still needed when our entries were changed on the live object since (a
      // refresh recorded it in `drift`, or it is read now). A cluster that cannot be read now is left to the
      // update itself and to the rotation preflight, which reports it.
      if ((olds as DriftOutput).drift) return { changes: true, ...result };
      if (!spec.inspect) return { changes: false, ...result };
      const live = await spec.inspect(news).catch(() => undefined);
      return { changes: live?.drift !== undefined, ...result };
    },
    async read(id, props) {
      if (!spec.inspect) return { id, props };
      try {
        const { live, drift } = await spec.inspect(props as unknown as I);
        return { id, props: { ...(props as O), ...live, drift: drift ?? "" } };
      } catch (e) {
        // The object is gone, and our entries with it: the resource no longer exists.
        if (isKcpError(e, spec.gone)) return {};
        throw e;
      }
    },
    async create(inputs) {
      return { id: `${inputs.namespace}/${inputs.name}`, outs: { ...(await spec.apply(inputs)), drift: "" } };
    },
    async update(_id, _olds, news) {
      return { outs: { ...(await spec.apply(news)), drift: "" } };
    },
    async delete(_id, props) {
      try {
        await spec.remove(props);
      } catch (e) {
        // An object that is gone carries nothing of ours: `pulumi destroy` after the cluster went must not be stuck.
        if (!isKcpError(e, spec.gone)) throw e;
      }
    },
  };
}
