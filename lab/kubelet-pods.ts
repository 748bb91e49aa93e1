/*
 * Pods on lab kubelet nodes, observed through the real apiserver: what a test or a user at the lab asks
 * ("is it Running? why is it waiting? what did the kubelet report?"), waiting on the pod's own status.
 */
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { buildBusyboxImage, type BuiltImage } from "./kubelet-images";
import type { Lab } from "./lab";
import type { CertificateAuthority } from "./pki";
import { waitUntil } from "./proc";
import { pushOciLayout, type RunningRegistry } from "./registry";

/** A host-network pod (no CNI on lab nodes) pinned to `nodeName` through the scheduler (nodeSelector), running `sleep`. */
export function sleeperPod(name: string, nodeName: string, image: string): k8s.V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels: { app: name } },
    spec: {
      hostNetwork: true,
      nodeSelector: { "kubernetes.io/hostname": nodeName },
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 1,
      containers: [{ name: "app", image, command: ["sleep", "86400"] }],
    },
  };
}

/** The reason and message of a container waiting on its image (ErrImagePull, ImagePullBackOff), if it is. */
export function pullFailure(pod: k8s.V1Pod): { reason: string; message: string } | undefined {
  for (const s of pod.status?.containerStatuses ?? []) {
    const w = s.state?.waiting;
    if (w && (w.reason === "ErrImagePull" || w.reason === "ImagePullBackOff")) return { reason: w.reason, message: w.message ?? "" };
  }
  return undefined;
}

/** Polls the pod until `cond` holds; the error names what was awaited and the pod's last status. */
export async function waitForPod(core: k8s.CoreV1Api, namespace: string, name: string, what: string, cond: (p: k8s.V1Pod) => boolean, timeoutMs = 180_000): Promise<k8s.V1Pod> {
  let last: k8s.V1Pod | undefined;
  try {
    await waitUntil(`pod ${namespace}/${name} ${what}`, async () => {
      try {
        last = await core.readNamespacedPod({ namespace, name });
      } catch {
        return false;
      }
      return cond(last);
    }, timeoutMs, 250);
  } catch (e) {
    throw new Error(`${(e as Error).message}; last status: ${JSON.stringify(last?.status ?? null)}`);
  }
  return last!;
}

/** Events the kubelet (and scheduler) recorded for a pod, oldest first. */
export async function podEvents(core: k8s.CoreV1Api, namespace: string, name: string): Promise<k8s.CoreV1Event[]> {
  const list = await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.kind=Pod,involvedObject.name=${name}` });
  return list.items.sort((a, b) => String(a.lastTimestamp ?? a.eventTime ?? "").localeCompare(String(b.lastTimestamp ?? b.eventTime ?? "")));
}

/**
 * Pushes a busybox image to the lab's private registry (registry.test:PORT/REPOSITORY:TAG), so that a pod
 * can run an image only a node trusting the lab CA can pull. Returns the image reference and its digest.
 */
export async function pushBusybox(lab: Lab, workDir: string, repository = "lab/busybox", tag = "1"): Promise<{ image: string; digest: string; built: BuiltImage }> {
  const built = buildBusyboxImage(workDir, `${repository}:${tag}`);
  const r = lab.describe().registry;
  // pushOciLayout reads only the registry's address/port and the CA's certificate path.
  await pushOciLayout(built.dir, tag, { address: r.address, port: r.port } as RunningRegistry, { certPath: r.caPath } as CertificateAuthority, path.join(workDir, "push"), repository);
  return { image: `${r.host}:${r.port}/${repository}:${tag}`, digest: built.manifestDigest, built };
}
