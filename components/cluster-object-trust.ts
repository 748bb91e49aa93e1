import * as pulumi from "@pulumi/pulumi";
import { ObjectRef, RegistryEndpoint } from "../core/config/model";
import { refuseInvalidBundle } from "../core/kcp/apply";
import { bundleHash } from "../core/x509/bundle";
import { parsePemCertificates } from "../core/x509/pem";

/*
 * What ControlPlaneTrust and WorkerTrust share: the checks made in the program before their dynamic
 * resource is registered, and the inputs every Cluster API trust provider takes.
 */

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Settings both components take (their Args extend it). */
export interface ClusterObjectTrustArgs {
  /** Kubeconfig of the management cluster: file content, or a path read when the provider runs. Stored as a secret. */
  readonly kubeconfig: pulumi.Input<string>;
  /** Kubeconfig context. @default the kubeconfig's current context */
  readonly context?: string;
  /** Registry endpoints: a CA file and a containerd hosts.toml each (plus hosts.toml for mirrored upstreams). */
  readonly endpoints: readonly RegistryEndpoint[];
  /** The PEM trust bundle (e.g. RegistryPki.bundlePem, which resolves only once verified). */
  readonly bundlePem: pulumi.Input<string>;
}

/**
 * Refuses a bad object reference or an empty endpoint list, then returns the bundle validated in the
 * program (so a bad one fails the preview too, and the serialized provider never needs the x509 parser)
 * and its hash. `field` is the Args field holding `ref` ("controlPlane"), `label` how people call it ("control plane").
 */
export function checkedTrustInputs(owner: pulumi.Resource, field: string, label: string, ref: ObjectRef, args: ClusterObjectTrustArgs) {
  if (!DNS_SUBDOMAIN.test(ref.namespace) || !DNS_SUBDOMAIN.test(ref.name)) {
    throw new pulumi.ResourceError(`${field} ${ref.namespace}/${ref.name} is not a valid namespace/name (lowercase DNS names)`, owner);
  }
  if (args.endpoints.length === 0) {
    throw new pulumi.ResourceError(`no registry endpoints for ${label} ${ref.namespace}/${ref.name}: set registries in the stack config`, owner);
  }
  const bundlePem = pulumi.output(args.bundlePem).apply((pem) => {
    try {
      refuseInvalidBundle(pem, ref);
    } catch (e) {
      throw new pulumi.ResourceError((e as Error).message, owner);
    }
    return pem;
  });
  const hash = bundlePem.apply(bundleHash);
  // Orders two bundles of this stack for the Lease fence (core/kcp/fence.ts): a rotation adds a newer CA.
  const issuedAt = bundlePem.apply((pem) => {
    const times = parsePemCertificates(pem, "trust bundle").certs.map((c) => c.notBefore.getTime());
    return times.length > 0 ? new Date(Math.max(...times)).toISOString() : undefined;
  });
  return {
    bundleHash: hash,
    inputs: {
      kubeconfig: pulumi.secret(args.kubeconfig),
      context: args.context,
      namespace: ref.namespace,
      name: ref.name,
      endpoints: args.endpoints.map((e) => ({ host: e.host, port: e.port, mirrorOf: [...e.mirrorOf] })),
      bundlePem,
      bundleHash: hash,
      issuedAt,
      holder: `${pulumi.getProject()}/${pulumi.getStack()}`,
    },
  };
}
