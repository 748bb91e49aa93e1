import * as command from "@pulumi/command";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { fetchServedChain } from "../core/served-chain";
import { ServingTarget } from "../core/config/model";
import { Endpoint } from "../core/endpoint";
import { checkHostFilesSpec, hostFilesCommandLine, hostFilesScript } from "../core/rotation/host-files";
import { parseHostKey } from "../core/ssh/host-key";
import { DEFAULT_PRECHECK_SECONDS, sshGate } from "./ssh-precheck";
import { waitUntilServed } from "../core/rotation/served";
import { servingSecretMetadata } from "../core/rotation/serving-secret";
import { parsePemCertificates } from "../core/x509/pem";

/*
 * The target is a plain value: it decides which child exists. Certificate, key and bundle hash are
 * Inputs; `distributed` carries the results the switch must wait for, so the switch is ordered after
 * trust by data as well as by `after`.
 */
export interface ServingCertificateArgs {
  /** Where the registry reads its certificate (StackConfig.servingTarget, not "none"). */
  readonly target: Exclude<ServingTarget, { kind: "none" }>;
  /** Registry endpoints probed until they serve the new certificate. */
  readonly endpoints: readonly Endpoint[];
  /** Chain to serve, leaf first (RegistryPki.servingChainPem). */
  readonly chainPem: pulumi.Input<string>;
  /** Its private key; kept secret end to end. */
  readonly keyPem: pulumi.Input<string>;
  /** sha256 of the bundle distributed before this switch; recorded on the Secret for the next preflight. */
  readonly bundleHash: pulumi.Input<string>;
  /** Outputs that resolve only when trust is everywhere (NodeTrust.results, ControlPlaneTrust.generation, …). @default none */
  readonly distributed?: pulumi.Input<unknown>[];
  /** Resources the switch runs after: NodeTrust, ControlPlaneTrust, WorkerTrust, BootstrapTrust. @default none */
  readonly after?: pulumi.Resource[];
  /** Kubernetes provider of the Secret's cluster (kubernetesSecret). @default the ambient one */
  readonly provider?: k8s.Provider;
  /** SSH private key for the registry host (hostFiles). @default the SSH agent */
  readonly sshPrivateKey?: pulumi.Input<string>;
  /** Seconds the program-side SSH pre-check gives the registry host (hostFiles), in preview and up; 0 skips it. @default 10 */
  readonly sshPrecheckSeconds?: number;
}

/**
 * Switches the registry to the new serving certificate: the last step of a rotation, after the bundle
 * holding its CA is on every node, control plane and worker template. Writes a `kubernetes.io/tls`
 * Secret, or the cert/key files on the registry host followed by its reload command, then waits until
 * every endpoint serves the new leaf. Removing it from the stack leaves the certificate in place: a
 * registry without its certificate is an outage, not a cleanup.
 */
export class ServingCertificate extends pulumi.ComponentResource {
  /** SHA-256 fingerprint of the leaf every endpoint was seen serving (unknown in preview). */
  readonly servedFingerprint: pulumi.Output<string>;

  constructor(name: string, args: ServingCertificateArgs, opts?: pulumi.ComponentResourceOptions) {
    // Before super(): a refused reload command, path or host key must leave no resource behind, not even
    // this component. The host key is required in every stack: the serving private key is pushed there.
    if (args.target.kind === "hostFiles") {
      try {
        checkHostFilesSpec(args.target);
        if (!args.target.hostKey) throw new Error(`hostFiles: hostKey is required: the serving private key is pushed to ${args.target.host}, so whoever answered there unpinned would receive it; pin its ed25519 key (ssh-keyscan -t ed25519 ${args.target.host}, checked out of band)`);
        try {
          parseHostKey(args.target.hostKey);
        } catch (e) {
          throw new Error(`hostFiles: hostKey ${(e as Error).message}`);
        }
      } catch (e) {
        throw new pulumi.ResourceError(`ServingCertificate ${name}: ${(e as Error).message}`, undefined);
      }
    }
    super("registry-trust:index:ServingCertificate", name, {}, opts);
    const childOpts: pulumi.CustomResourceOptions = { parent: this, dependsOn: args.after ?? [], retainOnDelete: true };
    const gate = pulumi.all(args.distributed ?? []);
    const chain = pulumi.all([args.chainPem, gate]).apply(([c]) => c);
    const key = pulumi.secret(pulumi.all([args.keyPem, gate]).apply(([k]) => k));
    const t = args.target;

    let done: pulumi.Output<unknown>;
    if (t.kind === "kubernetesSecret") {
      const metadata = pulumi.output(args.bundleHash).apply((h) => servingSecretMetadata(t, { bundleHash: h, stack: `${pulumi.getProject()}/${pulumi.getStack()}` }));
      const secret = new k8s.core.v1.Secret(`${name}-secret`, {
        metadata: {
          name: t.name,
          namespace: t.namespace,
          labels: metadata.labels,
          // The registry's Secret usually exists already, written by kubectl or a chart: take over its fields.
          annotations: metadata.annotations.apply((a) => ({ ...a, "pulumi.com/patchForce": "true" })),
        },
        type: "kubernetes.io/tls",
        stringData: pulumi.secret(pulumi.all([chain, key]).apply(([c, k]) => ({ "tls.crt": c, "tls.key": k }))),
      }, { ...childOpts, provider: args.provider });
      done = secret.metadata.resourceVersion;
    } else {
      const auth = args.sshPrivateKey ? { privateKey: pulumi.secret(args.sshPrivateKey) } : {};
      // The plugin does not bound the SSH handshake: a silent host would hang the switch, so it is checked first.
      const gate = sshGate({
        owner: `ServingCertificate ${name}`,
        targets: [{ name: "serving host", role: "node", hop: { host: t.host, port: t.port, hostKey: t.hostKey } }],
        agentSocket: process.env.SSH_AUTH_SOCK,
        seconds: args.sshPrecheckSeconds ?? DEFAULT_PRECHECK_SECONDS,
      }, this);
      const files = new command.remote.Command(`${name}-files`, {
        connection: {
          host: gate.apply(() => t.host), port: t.port, user: t.user, hostKey: t.hostKey, ...auth,
          dialErrorLimit: 3, perDialTimeout: 15,
        },
        create: chain.apply((c) => hostFilesCommandLine(t.user, c)),
        // The key travels only here, inside the script on stdin, a secret in the state as well.
        stdin: pulumi.secret(pulumi.all([chain, key]).apply(([c, k]) => {
          try {
            return hostFilesScript(t, c, k);
          } catch (e) {
            throw new pulumi.ResourceError((e as Error).message, this);
          }
        })),
        addPreviousOutputInEnv: false,
      }, childOpts);
      done = files.stdout;
    }

    const leaf = chain.apply((c) => parsePemCertificates(c, "serving chain").certs[0]?.fingerprint256 ?? "");
    this.servedFingerprint = pulumi.all([leaf, done]).apply(async ([fp]) => {
      if (t.verifyTimeoutSeconds > 0 && !pulumi.runtime.isDryRun()) {
        try {
          await waitUntilServed(args.endpoints, fp, t.verifyTimeoutSeconds * 1000, fetchServedChain);
        } catch (e) {
          throw new pulumi.ResourceError((e as Error).message, this);
        }
      }
      return fp;
    });
    this.registerOutputs({ servedFingerprint: this.servedFingerprint });
  }
}
