import { createHash } from "node:crypto";
import { RegistryEndpoint } from "../config/model";
import { endpointKey, parseEndpoint } from "../endpoint";
import { renderNodeScript } from "../node/render";
import { NodeScriptInput } from "../node/types";

/*
 * Trust for clusters whose nodes cannot be reached over SSH: a DaemonSet whose privileged init container
 * runs the rendered node install script on each node (chroot into the node's root), then a plain
 * container sleeps so the pod stays Running as the sign that the node is done. Every node the scheduler
 * admits, including autoscaled ones and tainted ones, gets the trust.
 *
 * !!! THE DAEMONSET'S IMAGE MUST COME FROM A REGISTRY THE NODES ALREADY TRUST !!!
 * A node that does not trust the private registry yet cannot pull this DaemonSet's image from it: the pod
 * would sit in ImagePullBackOff forever on exactly the nodes it exists to fix. Use a public image (pinned
 * by digest) or one on a registry whose CA is already in the node image. renderDaemonSet refuses an image
 * on any host it is asked to trust.
 */

/** Where the node's root filesystem is mounted in the pod, and what the init container chroots into. */
export const HOST_ROOT = "/host";
/** Where the ConfigMap holding the install script is mounted. */
export const SCRIPT_DIR = "/registry-trust";
export const SCRIPT_KEY = "install.sh";

export interface DaemonSetInput extends Omit<NodeScriptInput, "action"> {
  /**
   * Image of the pod: any image with POSIX sh and chroot (busybox, debian, alpine). It MUST be pullable
   * by a node that does not trust the registries being installed, so never one of those registries.
   */
  readonly image: string;
  /** @default "registry-trust" (with "-<owner>" when owner is set) */
  readonly name?: string;
  /** @default "kube-system" */
  readonly namespace?: string;
}

export class DaemonSetImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DaemonSetImageError";
  }
}

/** The registry part of an image reference, as the runtimes resolve it (no registry part = docker.io). */
export function imageRegistry(image: string): string {
  const first = image.split("/")[0];
  const hasRegistry = image.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("["));
  return hasRegistry ? first : "docker.io";
}

/**
 * Refuses an image on any registry host being trusted. The host alone decides, not host:port: the
 * same host on another port serves a certificate from the same private CA and is just as untrusted.
 */
export function checkDaemonSetImage(image: string, registries: readonly RegistryEndpoint[]): void {
  let reg;
  try {
    reg = parseEndpoint(imageRegistry(image));
  } catch (e) {
    throw new DaemonSetImageError(`image "${image}" is not an image reference: ${(e as Error).message}`);
  }
  const hit = registries.find((r) => r.host.toLowerCase() === reg.host);
  if (hit) {
    throw new DaemonSetImageError(
      `image "${image}" is on ${endpointKey(reg)}, a registry this DaemonSet makes trusted: nodes that need it cannot pull it ` +
      `(x509: certificate signed by unknown authority) and the pod would stay in ImagePullBackOff on exactly those nodes. ` +
      `Set image to one from a registry the nodes already trust, e.g. a public busybox or debian image pinned by digest, ` +
      `or mirror it to a registry whose CA is in the node image.`,
    );
  }
}

export interface DaemonSetManifests {
  /** ConfigMap holding the install script (nothing in it is secret: the CA bundle is public). */
  readonly configMap: Record<string, unknown>;
  readonly daemonSet: Record<string, unknown>;
}

/**
 * The ConfigMap and DaemonSet. Throws DaemonSetImageError for an image on a trusted registry and
 * NodeScriptError (every problem) for input the node script renderer refuses.
 */
export function renderDaemonSet(input: DaemonSetInput): DaemonSetManifests {
  checkDaemonSetImage(input.image, input.registries);
  const { image, name: givenName, namespace: givenNamespace, ...scriptInput } = input;
  const script = renderNodeScript({ ...scriptInput, action: "install" });
  const name = givenName ?? (input.owner ? `registry-trust-${input.owner}` : "registry-trust");
  const namespace = givenNamespace ?? "kube-system";
  const labels = { "app.kubernetes.io/name": "registry-trust", "app.kubernetes.io/instance": name };
  const configMap = { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace, labels }, data: { [SCRIPT_KEY]: script } };
  const daemonSet = {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: { name, namespace, labels },
    spec: {
      selector: { matchLabels: labels },
      updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: "10%" } },
      template: {
        metadata: {
          labels,
          // A new script (new bundle) changes the pod template, so every node re-runs the install.
          annotations: { "registry-trust.io/script-sha256": createHash("sha256").update(script).digest("hex") },
        },
        spec: {
          // Every node, whatever its taints (NoSchedule, NoExecute, control plane, not-ready): a node the
          // DaemonSet skips is a node that cannot pull.
          tolerations: [{ operator: "Exists" }],
          // Scheduled before ordinary pods on a full node, and not evicted first.
          priorityClassName: "system-node-critical",
          // systemctl (a containerd restart when config_path must be added) talks to the node's systemd and
          // refuses to act when PID 1 is not the node's init, which it checks through /proc.
          hostPID: true,
          // The node's network, not a pod network: containerd pulls through the node's network, which is what
          // the script's TLS probe must check; and a new node's pod network may itself wait on an image from
          // the very registry this pod makes trusted (a CNI plugin's), so a pod-network pod could never start there.
          hostNetwork: true,
          automountServiceAccountToken: false,
          initContainers: [{
            name: "install",
            image,
            // The script runs on the node's own userland (its update-ca-certificates, openssl, systemctl,
            // containerd config), so it chroots into the node's root; stdin is opened before the chroot.
            // The node's shell by absolute path: a busybox built to prefer its applets (Debian's static
            // busybox) runs a bare `sh` as its own ash — still the image's binary, through /proc/self/exe —
            // whose applets then shadow the node's tools (update-ca-certificates failed on busybox `find`
            // without -lname under a real kubelet).
            command: ["sh", "-c", `chroot ${HOST_ROOT} /bin/sh -s < ${SCRIPT_DIR}/${SCRIPT_KEY}`],
            securityContext: { privileged: true, runAsUser: 0 },
            volumeMounts: [{ name: "host-root", mountPath: HOST_ROOT }, { name: "script", mountPath: SCRIPT_DIR, readOnly: true }],
            resources: { requests: { cpu: "10m", memory: "32Mi" }, limits: { memory: "128Mi" } },
          }],
          containers: [{
            name: "installed",
            image,
            // Nothing privileged stays running: the install happened in the init container.
            command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
            securityContext: { privileged: false, allowPrivilegeEscalation: false, runAsUser: 65534, runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
            resources: { requests: { cpu: "1m", memory: "8Mi" }, limits: { memory: "16Mi" } },
          }],
          volumes: [
            // The whole root, not only /etc/containerd/certs.d and friends: the script also runs the node's
            // trust-store tool and restarts the runtime, which need the node's binaries, /run and /proc.
            { name: "host-root", hostPath: { path: "/", type: "Directory" } },
            { name: "script", configMap: { name, defaultMode: 0o500 } },
          ],
        },
      },
    },
  };
  return { configMap, daemonSet };
}
