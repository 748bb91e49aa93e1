import { createPrivateKey } from "node:crypto";
import { endpointKey, parseEndpoint } from "../endpoint";
import { inspectBundle } from "../x509/bundle";
import { parsePemCertificates } from "../x509/pem";
import { formatProblem } from "../x509/problems";
import { verifyServing } from "../x509/verify";
import { ConfigError, SECRET, Shown } from "./issues";
import {
  ClusterConfig, GeneratedCaConfig, ImportedCaConfig, KeyAlgorithm, NodeConfig, ObjectRef, OsFamily,
  ProxyConfig, RegistryEndpoint, Runtime, StackConfig,
} from "./model";
import { ParseOptions, RawConfig, Reader, checkFields, didYouMean, hostField, hostKeyField, isObj, list, portField, stringField } from "./reader";
import { daemonSet, servingTarget } from "./targets";
import { CA_MODES, CONFIG_KEYS, ConfigKey, KEY_ALGORITHMS, OS_FAMILIES, PROJECT, RUNTIMES, SERVING_MODES } from "./schema";

export type { ParseOptions, RawConfig };

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const RESOURCE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const UNIX_USER = /^[a-z_][a-z0-9_-]{0,31}$/;

function registries(r: Reader): RegistryEndpoint[] {
  const out: RegistryEndpoint[] = [];
  const entries = list(r, "registries");
  if (entries.length === 0) {
    r.issue("registries", r.json("registries"), "must list at least one registry endpoint.", `pulumi config set --path '${PROJECT}:registries[0].host' registry.example.com && pulumi config set --path '${PROJECT}:registries[0].port' 443`);
  }
  entries.forEach((e, i) => {
    const path = `registries[${i}]`;
    checkFields(r, path, e, ["host", "port", "mirrorOf"]);
    const host = hostField(r, `${path}.host`, e.host);
    const port = portField(r, `${path}.port`, e.port, 443);
    const mirrorOf: string[] = [];
    if (e.mirrorOf !== undefined) {
      if (!Array.isArray(e.mirrorOf)) r.issue(`${path}.mirrorOf`, e.mirrorOf, "must be a list of registry hosts.", `e.g. mirrorOf: ["docker.io"]`);
      else e.mirrorOf.forEach((m, j) => {
        try {
          if (typeof m !== "string") throw new Error("must be a string");
          parseEndpoint(m);
          mirrorOf.push(m);
        } catch (err) {
          r.issue(`${path}.mirrorOf[${j}]`, m, `${(err as Error).message}.`, `Give the upstream registry as host[:port], e.g. "docker.io".`);
        }
      });
    }
    if (!host) return;
    const ep = { host, port, mirrorOf };
    if (out.some((o) => endpointKey(o) === endpointKey(ep))) r.issue(path, e, `duplicates endpoint ${endpointKey(ep)}.`, "Remove the duplicate entry.");
    else out.push(ep);
  });
  return out;
}

function keyAlgorithm(r: Reader, key: ConfigKey): KeyAlgorithm {
  return r.oneOf(key, KEY_ALGORITHMS);
}

function generatedCa(r: Reader): GeneratedCaConfig {
  const cn = r.string("caCommonName");
  if (cn.trim() === "" || cn.length > 58) r.issue("caCommonName", cn, "must be 1 to 58 characters (X.509 allows 64; \" G<n>\" is appended).", `pulumi config set ${PROJECT}:caCommonName "Example Registry CA"`);
  const org = r.string("caOrganization");
  if (org.length > 64) r.issue("caOrganization", org, "must be at most 64 characters.", "Shorten it.");
  for (const key of ["caBundle", "caBundleFile"] as const) {
    if (r.string(key) !== "") r.issue(key, r.isSecret(key) ? SECRET : r.string(key), "is only used when caMode is import.", `Remove it (pulumi config rm ${PROJECT}:${key}) or set caMode to import.`);
  }
  return {
    mode: "generate",
    generation: r.integer("caGeneration", 1, 10_000),
    retainGenerations: r.integer("caRetainGenerations", 0, 10),
    keyAlgorithm: keyAlgorithm(r, "caKeyAlgorithm"),
    validityDays: r.integer("caValidityDays", 1, 36_500),
    commonName: cn,
    organization: org || undefined,
  };
}

function importedCa(r: Reader, now: Date): ImportedCaConfig | undefined {
  const inline = r.string("caBundle");
  const file = r.string("caBundleFile");
  if ((inline === "") === (file === "")) {
    r.issue("caBundle", new Shown(inline === "" ? "(unset)" : "(set)"), `caMode import needs exactly one of caBundle or caBundleFile (${inline === "" ? "neither" : "both"} set).`, `pulumi config set ${PROJECT}:caBundleFile certs/enterprise-ca.pem`);
    return undefined;
  }
  const key = inline !== "" ? "caBundle" : "caBundleFile";
  const pem = inline !== "" ? inline : r.file("caBundleFile", file);
  if (pem === undefined) return undefined;
  const report = inspectBundle(pem, key === "caBundle" ? "caBundle" : file, now);
  for (const p of report.problems.filter((x) => x.severity === "error")) {
    r.issue(key, key === "caBundle" ? new Shown("(PEM text)") : file, formatProblem(p), "Fix the bundle; `npx registry-trust check` shows the same findings.");
  }
  if (report.certs.length === 0) return undefined;
  return { mode: "import", bundlePem: pem, source: key === "caBundle" ? "caBundle" : file };
}

function privateKeyLike(text: string): boolean {
  return /-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----[\s\S]+-----END ([A-Z0-9 ]+ )?PRIVATE KEY-----/.test(text);
}

function secretKey(r: Reader, key: "servingKey" | "sshPrivateKey"): string | undefined {
  const v = r.string(key);
  if (v === "") return undefined;
  if (!r.isSecret(key)) {
    r.issue(key, new Shown("[plaintext key]"), "holds a private key but is stored in plain text in the stack file.", `pulumi config set --secret ${PROJECT}:${key} < key.pem   # then remove the plaintext value from git history`);
  }
  if (!privateKeyLike(v)) r.issue(key, SECRET, "is not a PEM/OpenSSH private key (no \"-----BEGIN … PRIVATE KEY-----\" block).", `pulumi config set --secret ${PROJECT}:${key} < key.pem`);
  return v;
}

/** How to pin a host key, or (for a lab) opt out. */
function pinFix(path: string, host: string | undefined): string {
  return `ssh-keyscan -t ed25519 ${host ?? "HOST"} | cut -d' ' -f2- , check its fingerprint out of band (ssh-keygen -lf on the host's console), then pulumi config set --path '${PROJECT}:${path}' "ssh-ed25519 AAAA…". A lab may instead set ${PROJECT}:allowUnpinnedHostKeys true (README: SSH host keys).`;
}

function nodes(r: Reader, defaults: { user: string; port: number; os: OsFamily; runtimes: Runtime[] }, requireHostKeys: boolean, why: string): NodeConfig[] {
  const out: NodeConfig[] = [];
  list(r, "nodes").forEach((e, i) => {
    const path = `nodes[${i}]`;
    checkFields(r, path, e, ["name", "host", "port", "user", "os", "runtimes", "hostKey", "proxy"]);
    const host = hostField(r, `${path}.host`, e.host);
    const name = stringField(r, `${path}.name`, e.name ?? host?.replace(/[^a-z0-9-]/g, "-"), RESOURCE_NAME, "a name of lowercase letters, digits and '-' (it names Pulumi resources)");
    const port = portField(r, `${path}.port`, e.port, defaults.port);
    const user = stringField(r, `${path}.user`, e.user, UNIX_USER, "a Unix user name") ?? defaults.user;
    let os = defaults.os;
    if (e.os !== undefined) {
      if (!OS_FAMILIES.includes(e.os as OsFamily)) r.issue(`${path}.os`, e.os, `must be one of ${OS_FAMILIES.join(", ")}.${didYouMean(String(e.os), OS_FAMILIES)}`, `pulumi config set --path '${PROJECT}:${path}.os' auto`);
      else os = e.os as OsFamily;
    }
    const runtimes = e.runtimes === undefined ? defaults.runtimes : runtimeList(r, `${path}.runtimes`, e.runtimes);
    const hostKey = hostKeyField(r, `${path}.hostKey`, e.hostKey, host);
    if (e.hostKey === undefined && requireHostKeys) {
      r.issue(`${path}.hostKey`, undefined, `is required: ${why}.`, pinFix(`${path}.hostKey`, host));
    }
    let proxy: ProxyConfig | undefined;
    if (e.proxy !== undefined) {
      if (!isObj(e.proxy)) r.issue(`${path}.proxy`, e.proxy, "must be a map {host, port, user, hostKey}.", "See the description of nodes in Pulumi.yaml.");
      else {
        checkFields(r, `${path}.proxy`, e.proxy, ["host", "port", "user", "hostKey"]);
        const ph = hostField(r, `${path}.proxy.host`, e.proxy.host);
        const pp = portField(r, `${path}.proxy.port`, e.proxy.port, defaults.port);
        const pu = stringField(r, `${path}.proxy.user`, e.proxy.user, UNIX_USER, "a Unix user name") ?? defaults.user;
        const pk = hostKeyField(r, `${path}.proxy.hostKey`, e.proxy.hostKey, ph);
        // The bastion holds our credentials for the session it relays: whoever answers there could use them.
        if (e.proxy.hostKey === undefined && requireHostKeys) {
          r.issue(`${path}.proxy.hostKey`, undefined, `is required: ${why}.`, pinFix(`${path}.proxy.hostKey`, ph));
        }
        if (ph) proxy = { host: ph, port: pp, user: pu, ...(pk ? { hostKey: pk } : {}) };
      }
    }
    if (!host || !name) return;
    if (out.some((n) => n.name === name)) r.issue(`${path}.name`, name, "is used by another node; node names must be unique.", "Give each node its own name.");
    else if (out.some((n) => n.host === host && n.port === port)) r.issue(`${path}.host`, `${host}:${port}`, "is listed twice.", "Remove the duplicate node.");
    else out.push({ name, host, port, user, os, runtimes, hostKey, proxy });
  });
  return out;
}

function runtimeList(r: Reader, path: string, v: unknown): Runtime[] {
  if (!Array.isArray(v) || v.length === 0) {
    r.issue(path, v, "must be a non-empty list of runtimes.", `Choose from ${RUNTIMES.join(", ")}.`);
    return ["containerd"];
  }
  const out: Runtime[] = [];
  v.forEach((x, i) => {
    if (!RUNTIMES.includes(x as Runtime)) r.issue(`${path}[${i}]`, x, `is not a supported runtime.${didYouMean(String(x), RUNTIMES)}`, `Choose from ${RUNTIMES.join(", ")}.`);
    else if (out.includes(x as Runtime)) r.issue(`${path}[${i}]`, x, "is listed twice.", "Remove the duplicate.");
    else out.push(x as Runtime);
  });
  return out;
}

function refs(r: Reader, path: string, v: unknown): ObjectRef[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    r.issue(path, v, "must be a list of {namespace, name}.", "e.g. [{namespace: default, name: cluster-control-plane}]");
    return [];
  }
  return v.flatMap((x, i) => {
    const p = `${path}[${i}]`;
    if (!isObj(x)) {
      r.issue(p, x, "must be a map {namespace, name}.", "e.g. {namespace: default, name: cluster-control-plane}");
      return [];
    }
    checkFields(r, p, x, ["namespace", "name"]);
    const ns = stringField(r, `${p}.namespace`, x.namespace ?? "default", DNS1123, "a Kubernetes namespace (DNS-1123 label)");
    const name = stringField(r, `${p}.name`, x.name, /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "a Kubernetes object name (DNS-1123 subdomain)");
    if (x.name === undefined) r.issue(`${p}.name`, undefined, "is required.", "Set the object's metadata.name.");
    return ns && name ? [{ namespace: ns, name }] : [];
  });
}

function clusters(r: Reader): ClusterConfig[] {
  const out: ClusterConfig[] = [];
  list(r, "clusters").forEach((e, i) => {
    const path = `clusters[${i}]`;
    checkFields(r, path, e, ["name", "kubeconfig", "context", "controlPlanes", "machineDeployments"]);
    const name = stringField(r, `${path}.name`, e.name, RESOURCE_NAME, "a name of lowercase letters, digits and '-'");
    if (e.name === undefined) r.issue(`${path}.name`, undefined, "is required.", `pulumi config set --path '${PROJECT}:${path}.name' mgmt`);
    let kubeconfig: string | undefined;
    if (e.kubeconfig !== undefined) {
      if (typeof e.kubeconfig !== "string") r.issue(`${path}.kubeconfig`, e.kubeconfig, "must be a file path.", "Give the kubeconfig path relative to the project directory.");
      else if (r.file(`${path}.kubeconfig`, e.kubeconfig) !== undefined) kubeconfig = e.kubeconfig;
    }
    const context = stringField(r, `${path}.context`, e.context, /^[^\s]{1,253}$/, "a kubeconfig context name");
    const controlPlanes = refs(r, `${path}.controlPlanes`, e.controlPlanes);
    const machineDeployments = refs(r, `${path}.machineDeployments`, e.machineDeployments);
    if (!name) return;
    if (out.some((c) => c.name === name)) r.issue(`${path}.name`, name, "is used by another cluster.", "Cluster names must be unique.");
    else out.push({ name, kubeconfig, context, controlPlanes, machineDeployments });
  });
  return out;
}

/**
 * Validates the whole stack configuration and returns the typed model, or throws one ConfigError listing
 * every problem (key path, value, what is wrong, how to fix it). Nothing is touched before this passes.
 */
export function parseStackConfig(raw: RawConfig, opts: ParseOptions): StackConfig {
  const r = new Reader(raw, opts);
  const now = opts.now ?? new Date();

  for (const key of Object.keys(raw)) {
    if (key === "requireHostKeys") {
      r.issue(key, raw[key].value, "was removed: host keys are now required for every node unless allowUnpinnedHostKeys is true.", `pulumi config rm ${PROJECT}:requireHostKeys (README: SSH host keys, migrating a stack)`);
    } else if (!(key in CONFIG_KEYS)) r.issue(key, raw[key].secret ? SECRET : raw[key].value, `is not a registry-trust setting.${didYouMean(key, Object.keys(CONFIG_KEYS))}`, `pulumi config rm ${PROJECT}:${key}`);
  }

  const production = r.boolean("production");
  const regs = registries(r);
  const caMode = r.oneOf("caMode", CA_MODES);
  const ca = caMode === "generate" ? generatedCa(r) : importedCa(r, now);

  const servingMode = r.oneOf("servingCertMode", SERVING_MODES);
  if (caMode === "import" && servingMode === "generate") {
    r.issue("servingCertMode", servingMode, "cannot be generate when caMode is import: this stack has no CA key to sign with.", `pulumi config set ${PROJECT}:servingCertMode external`);
  }
  const servingValidity = r.integer("servingValidityDays", 1, 3650);
  const renewBefore = r.integer("servingRenewBeforeDays", 0, 3650);
  if (renewBefore >= servingValidity) {
    r.issue("servingRenewBeforeDays", renewBefore, `must be less than servingValidityDays (${servingValidity}), or the certificate is always due for renewal.`, `pulumi config set ${PROJECT}:servingRenewBeforeDays ${Math.floor(servingValidity / 3)}`);
  }
  if (ca?.mode === "generate" && servingMode === "generate" && ca.validityDays <= servingValidity) {
    r.issue("caValidityDays", ca.validityDays, `must be longer than servingValidityDays (${servingValidity}): a certificate outliving its CA stops being trusted when the CA expires.`, `pulumi config set ${PROJECT}:caValidityDays ${servingValidity * 10}`);
  }
  const servingKeyAlg = keyAlgorithm(r, "servingKeyAlgorithm");
  const servingKey = secretKey(r, "servingKey");
  let chainPem: string | undefined;
  const chainFile = r.string("servingCertChainFile");
  if (chainFile !== "" || servingKey !== undefined) {
    if (servingMode !== "external") {
      r.issue(chainFile !== "" ? "servingCertChainFile" : "servingKey", chainFile !== "" ? chainFile : SECRET, "is only used when servingCertMode is external.", "Remove it, or set servingCertMode to external.");
    } else if (chainFile !== "") {
      chainPem = r.file("servingCertChainFile", chainFile);
    } else {
      r.issue("servingKey", SECRET, "needs servingCertChainFile to be checked against.", `pulumi config set ${PROJECT}:servingCertChainFile certs/registry-chain.pem`);
    }
  }
  if (chainPem !== undefined && ca?.mode === "import") {
    const parsed = parsePemCertificates(chainPem, chainFile);
    for (const p of parsed.problems) r.issue("servingCertChainFile", chainFile, formatProblem(p), "Export the chain the registry serves (`npx registry-trust inspect https://HOST:PORT --save-chain FILE`).");
    if (parsed.certs.length > 0) {
      let privateKey;
      if (servingKey !== undefined) {
        try {
          privateKey = createPrivateKey(servingKey);
        } catch {
          r.issue("servingKey", SECRET, "cannot be parsed as a private key.", "Provide an unencrypted PEM private key.");
        }
      }
      const bundle = inspectBundle(ca.bundlePem, ca.source, now).certs;
      for (const reg of regs) {
        const v = verifyServing({ bundle, chain: parsed.certs, host: reg.host, privateKey, now });
        for (const p of v.problems.filter((x) => x.severity === "error")) {
          r.issue("servingCertChainFile", chainFile, `for ${endpointKey(reg)}: ${formatProblem(p)}`, "Reissue the serving certificate or fix the bundle before distributing it.");
        }
      }
    }
  }

  const sshUser = r.string("sshUser");
  if (!UNIX_USER.test(sshUser)) r.issue("sshUser", sshUser, "must be a Unix user name.", `pulumi config set ${PROJECT}:sshUser root`);
  const sshPort = r.integer("sshPort", 1, 65535);
  const sshKey = secretKey(r, "sshPrivateKey");
  const nodeOs = r.oneOf("nodeOs", OS_FAMILIES);
  const nodeRuntimes = runtimeList(r, "nodeRuntimes", r.json("nodeRuntimes"));
  const allowUnpinned = r.boolean("allowUnpinnedHostKeys");
  if (production && allowUnpinned) {
    r.issue("allowUnpinnedHostKeys", allowUnpinned, "cannot be true in a production stack: whoever answers at an unpinned address receives the bundle push and a root shell.", `Pin every node's and bastion's host key, then pulumi config rm ${PROJECT}:allowUnpinnedHostKeys`);
  }
  const requireHostKeys = production || !allowUnpinned;
  const nodeList = nodes(r, { user: sshUser, port: sshPort, os: nodeOs, runtimes: nodeRuntimes }, requireHostKeys,
    "SSH host keys are pinned by default (whoever answers at an unpinned address receives the bundle push and a root shell)");

  if (production && ca?.mode === "generate" && ca.retainGenerations < 1) {
    r.issue("caRetainGenerations", ca.retainGenerations, "must be at least 1 in a production stack: otherwise a rotation drops the CA of the certificate the registry still serves.", `pulumi config set ${PROJECT}:caRetainGenerations 1`);
  }

  const probeImage = r.string("probeImage");
  if (probeImage !== "") {
    const registryPart = probeImage.split("/")[0];
    if (!regs.some((g) => endpointKey(g) === registryPart) || !/^[^\s'"`$;&|<>\\]+\/[a-z0-9._/-]+(:[\w.-]+|@sha256:[0-9a-f]{64})?$/.test(probeImage)) {
      r.issue("probeImage", probeImage, `must be an image reference on one of the registries (${regs.map(endpointKey).join(", ") || "none configured"}), e.g. ${regs[0] ? endpointKey(regs[0]) : "registry.example.com"}/library/pause:3.10.`, `pulumi config set ${PROJECT}:probeImage ${regs[0] ? endpointKey(regs[0]) : "registry.example.com"}/library/pause:3.10`);
    }
  }

  const warnDays = r.integer("expiryWarningDays", 0, 365);
  if (servingMode === "generate" && warnDays >= servingValidity) {
    r.issue("expiryWarningDays", warnDays, `must be less than servingValidityDays (${servingValidity}): every up would warn about a certificate issued that day.`, `pulumi config set ${PROJECT}:expiryWarningDays ${Math.max(1, Math.floor(servingValidity / 4))}`);
  }

  const clusterList = clusters(r);
  const target = servingTarget(r, clusterList);
  if (target.kind !== "none" && servingMode === "external" && !servingKey) {
    r.issue("servingTarget.kind", target.kind, "needs the serving private key to install, and servingCertMode is external without servingKey.", `Set servingKey (pulumi config set --secret ${PROJECT}:servingKey < key.pem) and servingCertChainFile, or use servingTarget {kind: none}.`);
  }
  if (target.kind !== "none" && servingMode === "external" && !chainPem) {
    r.issue("servingTarget.kind", target.kind, "needs the serving chain to install, and servingCertChainFile is not set.", `pulumi config set ${PROJECT}:servingCertChainFile certs/registry-chain.pem`);
  }

  const config: StackConfig = {
    production,
    registries: regs,
    ca: ca ?? { mode: "import", bundlePem: "", source: "" },
    serving: { mode: servingMode, keyAlgorithm: servingKeyAlg, validityDays: servingValidity, renewBeforeDays: renewBefore, chainPem, hasKey: servingKey !== undefined },
    ssh: { user: sshUser, port: sshPort, useAgent: sshKey === undefined },
    nodes: nodeList,
    nodeDefaults: { os: nodeOs, runtimes: nodeRuntimes },
    clusters: clusterList,
    servingTarget: target,
    daemonSet: daemonSet(r, clusterList, regs),
    policy: {
      requireHostKeys,
      allowRuntimeRestart: r.boolean("allowRuntimeRestart"),
      probeImage: probeImage || undefined,
      allowUnverifiedNodes: r.boolean("allowUnverifiedNodes"),
      expiryWarningDays: warnDays,
      preflightAllowUnreachable: r.boolean("preflightAllowUnreachable"),
    },
  };
  if (r.issues.length > 0) throw new ConfigError(r.issues);
  return config;
}
