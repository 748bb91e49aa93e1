// A ClusterClass-managed workload cluster for the real Cluster API managers started with
// `clusterTopology: true` (lab/capi.ts): Cluster API's own in-memory ClusterClass (read from the release's
// module source, test/infrastructure/docker/templates/clusterclass-in-memory.yaml, not copied), plus what a
// platform team adds so that registry-trust can reach the nodes: one variable and the patches that put it
// into the `files` of the KubeadmControlPlaneTemplate and of the workers' KubeadmConfigTemplate.
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@kubernetes/client-node";
import YAML from "yaml";
import { findCapiAssets } from "./capi";
import { FAST_PACE, InMemoryPace, NAMESPACE } from "./capi-objects";

/** The variable the lab's class defines: a list of cloud-init `files` entries (the generic "files" shape). */
export const FILES_VARIABLE = "registryTrustFiles";
export const CLASS_NAME = "in-memory-registry-trust";
export const WORKER_CLASS = "default-worker";

const FILE_SCHEMA = {
  type: "object",
  required: ["path"],
  properties: {
    path: { type: "string" },
    content: { type: "string" },
    owner: { type: "string" },
    permissions: { type: "string" },
    encoding: { type: "string" },
    append: { type: "boolean" },
    contentFrom: { type: "object", properties: { secret: { type: "object", required: ["name", "key"], properties: { name: { type: "string" }, key: { type: "string" } } } } },
  },
};

/** The file the class itself puts on every machine, whatever the variable holds. */
export const CLASS_FILE = { path: "/etc/platform/class.conf", owner: "root:root", permissions: "0644", content: "set by the ClusterClass\n" };

/*
 * The class's own file followed by the variable's entries. A patch cannot append a list to a list, and an
 * empty `files` is refused by the KCP CRD (minItems 1: the topology controller fails to create the KCP with
 * "spec.kubeadmConfigSpec.files in body should have at least 1 items"), so the class renders the whole list.
 */
const FILES_TEMPLATE = `- ${JSON.stringify(CLASS_FILE)}
{{- range .${FILES_VARIABLE} }}
- {{ toJson . }}
{{- end }}
`;

type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; spec: Record<string, unknown> };

/** Upstream's in-memory class documents, renamed, with our variable, patches and the lab's boot pace. */
export function topologyClassDocs(pace: InMemoryPace = FAST_PACE): Doc[] {
  const { sources } = findCapiAssets();
  const file = path.join(sources.test, "infrastructure", "docker", "templates", "clusterclass-in-memory.yaml");
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8")).map((d) => d.toJS() as Doc).filter((d) => d && d.kind);
  const provisioning = (d: string) => ({ provisioning: { startupDuration: d, startupJitter: "0.2" } });
  for (const d of docs) {
    d.metadata.namespace = NAMESPACE;
    if (d.kind === "DevMachineTemplate") {
      (d.spec as { template: { spec: unknown } }).template.spec = { backend: { inMemory: { vm: provisioning(pace.vm), node: provisioning(pace.parts), apiServer: provisioning(pace.parts), etcd: provisioning(pace.parts) } } };
    }
    if (d.kind === "ClusterClass") {
      d.metadata.name = CLASS_NAME;
      d.spec.variables = [{
        name: FILES_VARIABLE,
        required: false,
        schema: { openAPIV3Schema: { type: "array", default: [], items: FILE_SCHEMA } },
      }];
      d.spec.patches = [{
        name: "registry-trust-files",
        definitions: [
          {
            selector: { apiVersion: "controlplane.cluster.x-k8s.io/v1beta2", kind: "KubeadmControlPlaneTemplate", matchResources: { controlPlane: true } },
            jsonPatches: [{ op: "add", path: "/spec/template/spec/kubeadmConfigSpec/files", valueFrom: { template: FILES_TEMPLATE } }],
          },
          {
            selector: { apiVersion: "bootstrap.cluster.x-k8s.io/v1beta2", kind: "KubeadmConfigTemplate", matchResources: { machineDeploymentClass: { names: [WORKER_CLASS] } } },
            jsonPatches: [{ op: "add", path: "/spec/template/spec/files", valueFrom: { template: FILES_TEMPLATE } }],
          },
        ],
      }];
    }
  }
  return docs;
}

const PLURALS: Record<string, string> = {
  DevClusterTemplate: "devclustertemplates", DevMachineTemplate: "devmachinetemplates", KubeadmControlPlaneTemplate: "kubeadmcontrolplanetemplates",
  KubeadmConfigTemplate: "kubeadmconfigtemplates", ClusterClass: "clusterclasses",
};

/** Creates the class and its templates once per management cluster. */
export async function createTopologyClass(kc: k8s.KubeConfig, pace?: InMemoryPace): Promise<void> {
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  for (const d of topologyClassDocs(pace)) {
    const [group, version] = d.apiVersion.split("/");
    await custom.createNamespacedCustomObject({ group, version, namespace: NAMESPACE, plural: PLURALS[d.kind], body: d });
  }
}

export interface TopologyClusterOptions {
  controlPlaneReplicas?: number;
  /** Worker pools (MachineDeployment topologies of the default-worker class), name → replicas. */
  workers?: Record<string, number>;
  /** Cluster-level variables besides the class defaults. */
  variables?: Array<{ name: string; value: unknown }>;
  /** Per-pool variable overrides. */
  overrides?: Record<string, Array<{ name: string; value: unknown }>>;
}

/** A Cluster with spec.topology on the lab's class, as cluster-template-in-memory.yaml makes one. */
export async function createTopologyCluster(kc: k8s.KubeConfig, name: string, opts: TopologyClusterOptions = {}): Promise<void> {
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const workers = opts.workers ?? { "md-0": 1 };
  await custom.createNamespacedCustomObject({ group: "cluster.x-k8s.io", version: "v1beta2", namespace: NAMESPACE, plural: "clusters", body: {
    apiVersion: "cluster.x-k8s.io/v1beta2", kind: "Cluster",
    metadata: { name, namespace: NAMESPACE },
    spec: {
      clusterNetwork: { pods: { cidrBlocks: ["192.168.0.0/16"] }, services: { cidrBlocks: ["10.128.0.0/12"] }, serviceDomain: "cluster.local" },
      topology: {
        classRef: { name: CLASS_NAME, namespace: NAMESPACE },
        version: "v1.37.2",
        controlPlane: { replicas: opts.controlPlaneReplicas ?? 1 },
        workers: {
          machineDeployments: Object.entries(workers).map(([md, replicas]) => ({
            class: WORKER_CLASS, name: md, replicas,
            ...(opts.overrides?.[md] ? { variables: { overrides: opts.overrides[md] } } : {}),
          })),
        },
        ...(opts.variables ? { variables: opts.variables } : {}),
      },
    },
  } });
}
