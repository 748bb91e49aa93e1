import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { RegistryEndpoint, Runtime } from "../config/model";
import { OS_FAMILIES, RUNTIMES } from "../config/schema";
import { endpointKey, hostProblem, parseEndpoint, portProblem } from "../endpoint";
import { inspectBundle } from "../x509/bundle";
import { parsePemCertificates, toPem } from "../x509/pem";
import { formatProblem } from "../x509/problems";
import { CONTAINERD_CERTS_DIR, containerdCaPath, containerdHostsFiles, managedMarker } from "./containerd-hosts";
import { OS_STORES, storeFamily, storeLayoutShell } from "./os-stores";
import { NODE_REPORT_PREFIX, NodeReport, NodeScriptInput } from "./types";

/*
 * Renders the POSIX sh script that installs (or removes) registry trust on one node and verifies it.
 * Everything variable is validated here first; in the script, file contents travel as base64 and every
 * other value is a validated token in single quotes, so no input can change what the shell executes.
 * The shell library (lib.sh) does the planning, conflict checks, atomic writes, rollback and checks.
 */

const LIB = `${readFileSync(join(__dirname, "lib.sh"), "utf8")}\n${storeLayoutShell()}\n`;
const OWNER = /^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/;
const IMAGE_REF = /^([a-z0-9.-]+|\[[0-9a-f:.]+\])(:\d{1,5})?\/[a-z0-9._/-]+(:[A-Za-z0-9_.-]{1,128}|@sha256:[0-9a-f]{64})?$/;

export class NodeScriptError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`cannot render the node script:\n  - ${problems.join("\n  - ")}`);
    this.name = "NodeScriptError";
  }
}

const DOCKER_CERTS_DIR = "/etc/docker/certs.d";
const CONTAINERS_CERTS_DIR = "/etc/containers/certs.d";

/** Single-quoted shell word; callers only pass validated tokens, the quoting is belt and braces. */
function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

function validate(input: NodeScriptInput): { registries: RegistryEndpoint[]; bundle: string; fps: string[]; chain?: { leaf: string; intermediates: string } } {
  const problems: string[] = [];
  if (!OS_FAMILIES.includes(input.os)) problems.push(`os "${input.os}" is not one of ${OS_FAMILIES.join(", ")}`);
  if (input.runtimes.length === 0) problems.push("at least one runtime is required");
  for (const r of input.runtimes) if (!RUNTIMES.includes(r)) problems.push(`runtime "${r}" is not one of ${RUNTIMES.join(", ")}`);
  if (new Set(input.runtimes).size !== input.runtimes.length) problems.push("a runtime is listed twice");
  if (input.registries.length === 0) problems.push("at least one registry is required");
  for (const r of input.registries) {
    const hp = hostProblem(r.host);
    if (hp) problems.push(`registry host "${r.host}" ${hp}`);
    const pp = portProblem(r.port);
    if (pp) problems.push(`registry port ${r.port} ${pp}`);
    for (const m of r.mirrorOf) {
      try {
        parseEndpoint(m);
      } catch (e) {
        problems.push(`mirrorOf "${m}": ${(e as Error).message}`);
      }
    }
  }
  if (input.owner !== undefined && !OWNER.test(input.owner)) problems.push(`owner "${input.owner}" must be 1-40 lowercase letters, digits and inner '-'`);
  if (input.probeImage !== undefined && !IMAGE_REF.test(input.probeImage)) problems.push(`probe image "${input.probeImage}" is not an image reference (registry/repository[:tag|@sha256:digest])`);
  const report = inspectBundle(input.bundlePem, "bundle");
  problems.push(...report.problems.filter((p) => p.severity === "error").map(formatProblem));
  let chain: { leaf: string; intermediates: string } | undefined;
  if (input.servingChainPem !== undefined) {
    const parsed = parsePemCertificates(input.servingChainPem, "serving chain");
    problems.push(...parsed.problems.map(formatProblem));
    if (parsed.certs.length > 0) chain = { leaf: toPem(parsed.certs[0].der), intermediates: parsed.certs.slice(1).map((c) => toPem(c.der)).join("") };
  }
  if (problems.length > 0) throw new NodeScriptError(problems);
  const registries = input.registries.map((r) => ({ ...r, host: r.host.toLowerCase() }));
  return {
    registries,
    bundle: report.certs.map((c) => toPem(c.der)).join(""),
    fps: report.certs.map((c) => c.fingerprint256.replace(/:/g, "").slice(0, 16).toLowerCase()),
    chain,
  };
}

interface Layout {
  /** Lines of the plan phase. */
  readonly plan: string[];
  /** CA files to check offline and probe through, per endpoint key. */
  readonly caFiles: { readonly runtime: Runtime; readonly file: string; readonly endpoint?: string }[];
}

function runtimeLayout(runtime: Runtime, registries: RegistryEndpoint[], caFile: string, owner: string, allowRestart: boolean): Layout {
  const plan: string[] = [];
  const caFiles: Layout["caFiles"] = [];
  const certsDirLayout = (dir: string) => {
    for (const r of registries) {
      const path = `${dir}/${endpointKey(r)}/ca.crt`;
      plan.push(`rt_plan_file ${q(path)} 0644 ${q(b64(caFile))}`);
      caFiles.push({ runtime, file: path, endpoint: endpointKey(r) });
    }
    plan.push(`rt_plan_prune ${dir}/*/ca.crt`);
  };
  switch (runtime) {
    case "containerd":
      for (const h of containerdHostsFiles(registries, CONTAINERD_CERTS_DIR, owner)) {
        plan.push(`rt_plan_file ${q(`${CONTAINERD_CERTS_DIR}/${h.dir}/hosts.toml`)} 0644 ${q(b64(h.content))}`);
      }
      for (const r of registries) {
        plan.push(`rt_plan_file ${q(containerdCaPath(r))} 0644 ${q(b64(caFile))}`);
        caFiles.push({ runtime, file: containerdCaPath(r), endpoint: endpointKey(r) });
      }
      plan.push(`rt_plan_prune ${CONTAINERD_CERTS_DIR}/*/hosts.toml ${CONTAINERD_CERTS_DIR}/*/ca.crt`);
      plan.push(`rt_plan_containerd_config ${q(CONTAINERD_CERTS_DIR)} ${allowRestart ? 1 : 0}`);
      break;
    case "docker":
      certsDirLayout(DOCKER_CERTS_DIR);
      break;
    case "crio":
    case "podman":
      certsDirLayout(CONTAINERS_CERTS_DIR);
      break;
    case "k3s":
    case "rke2": {
      const base = `/etc/rancher/${runtime}`;
      const ca = `${base}/registry-trust-${owner}-ca.crt`;
      const { yaml, keys } = rancherRegistries(registries, ca);
      plan.push(`rt_plan_file ${q(ca)} 0644 ${q(b64(caFile))}`);
      plan.push(`rt_plan_registries_yaml ${q(`${base}/registries.yaml`)} ${q(b64(yaml))} ${q(keys.join(" "))}`);
      plan.push(`rt_plan_rancher ${runtime} ${allowRestart ? 1 : 0}`);
      caFiles.push({ runtime, file: ca });
      break;
    }
  }
  return { plan, caFiles };
}

/** Our entries of a k3s/RKE2 registries.yaml: mirrors for upstreams we mirror, TLS config per endpoint. */
export function rancherRegistries(registries: readonly RegistryEndpoint[], caFile: string): { yaml: string; keys: string[] } {
  const mirrors: Record<string, { endpoint: string[] }> = {};
  for (const r of registries) {
    for (const u of r.mirrorOf) (mirrors[endpointKey(parseEndpoint(u))] ??= { endpoint: [] }).endpoint.push(`https://${endpointKey(r)}`);
  }
  const configs = Object.fromEntries(registries.map((r) => [endpointKey(r), { tls: { ca_file: caFile } }]));
  const doc = { ...(Object.keys(mirrors).length ? { mirrors } : {}), configs };
  return { yaml: stringify(doc, { indent: 2, indentSeq: true }), keys: [...Object.keys(mirrors), ...Object.keys(configs)] };
}

function removalLayout(runtime: Runtime, registries: RegistryEndpoint[], owner: string, allowRestart: boolean): string[] {
  switch (runtime) {
    case "containerd":
      return [`rt_plan_prune ${CONTAINERD_CERTS_DIR}/*/hosts.toml ${CONTAINERD_CERTS_DIR}/*/ca.crt`, `rt_unplan_containerd_config ${q(CONTAINERD_CERTS_DIR)}`];
    case "docker":
      return [`rt_plan_prune ${DOCKER_CERTS_DIR}/*/ca.crt`];
    case "crio":
    case "podman":
      return [`rt_plan_prune ${CONTAINERS_CERTS_DIR}/*/ca.crt`];
    case "k3s":
    case "rke2": {
      const base = `/etc/rancher/${runtime}`;
      const { keys } = rancherRegistries(registries, "");
      return [
        `rt_plan_prune ${q(`${base}/registry-trust-${owner}-ca.crt`)}`,
        `rt_plan_registries_yaml ${q(`${base}/registries.yaml`)} '' ${q(keys.join(" "))}`,
        `rt_plan_rancher ${runtime} ${allowRestart ? 1 : 0}`,
      ];
    }
  }
}

/**
 * The checks an install runs after writing, each with the entry it adds to the report's `verified` list
 * when it passes (unknown for the OS store's bundle while the OS family is detected on the node).
 */
function installChecks(input: NodeScriptInput, v: ReturnType<typeof validate>, layouts: Layout[]): { line: string; id?: string }[] {
  const family = storeFamily(input.os);
  const storeBundle = family === "auto" ? undefined : OS_STORES[family].bundle;
  const keys = v.registries.map(endpointKey);
  const hosts = [...new Set(v.registries.map((r) => r.host))];
  const checks: { line: string; id?: string }[] = [];
  if (v.chain) {
    checks.push({ line: `rt_decode ${q(b64(v.chain.leaf))} "$RT_WORK/leaf.pem"` });
    if (v.chain.intermediates) checks.push({ line: `rt_decode ${q(b64(v.chain.intermediates))} "$RT_WORK/intermediates.pem"` }, { line: "RT_HAS_INTERMEDIATES=1" });
    else checks.push({ line: "RT_HAS_INTERMEDIATES=" });
    const verifyHosts = hosts.map(q).join(" ");
    checks.push({ line: `rt_verify_offline "$RT_STORE_BUNDLE" ${verifyHosts}`, id: storeBundle && `openssl-verify:${storeBundle}` });
    const distinct = [...new Map(layouts.flatMap((l) => l.caFiles).map((c) => [c.runtime, c])).values()];
    for (const c of distinct) checks.push({ line: `rt_verify_offline ${q(c.file)} ${verifyHosts}`, id: `openssl-verify:${c.file}` });
  }
  if (input.probeTls ?? true) {
    for (const key of keys) {
      checks.push({ line: `rt_probe_tls ${q(key)} "$RT_STORE_BUNDLE"`, id: storeBundle && `tls:${key}@${storeBundle}` });
      for (const c of layouts.flatMap((l) => l.caFiles).filter((x) => x.endpoint === undefined || x.endpoint === key)) checks.push({ line: `rt_probe_tls ${q(key)} ${q(c.file)}`, id: `tls:${key}@${c.file}` });
    }
  }
  if (input.probeImage) checks.push({ line: `rt_probe_pull ${q(input.probeImage)}`, id: `cri-pull:${input.probeImage}` });
  return checks;
}

/** What a successful install of `input` must report as `verified` (NodeTrust checks it on every node's report). */
export function expectedChecks(input: NodeScriptInput): string[] {
  const v = validate(input);
  const owner = input.owner ?? "default";
  const layouts = activeRuntimes(input.runtimes).map((r) => runtimeLayout(r, v.registries, "", owner, true));
  return [...new Set(installChecks(input, v, layouts).flatMap((c) => (c.id ? [c.id] : [])))];
}

/** CRI-O and podman share /etc/containers/certs.d: whichever is listed first stands for both. */
function activeRuntimes(runtimes: readonly Runtime[]): Runtime[] {
  return runtimes.filter((r, i) => !(r === "podman" && runtimes.slice(0, i).includes("crio")) && !(r === "crio" && runtimes.slice(0, i).includes("podman")));
}

/** Renders the node script for `input`, or throws NodeScriptError listing every problem. */
export function renderNodeScript(input: NodeScriptInput): string {
  const { header, body } = scriptParts(input);
  return [...header(`registry-trust ${input.action}`), LIB, ...body, ""].join("\n");
}

/**
 * One script holding both actions for the same input, chosen by its first argument (`sh -s install`,
 * `sh -s remove`; anything else exits 2 before touching the node). NodeTrust sends it once as the Command's
 * stdin, which the provider also feeds to the stored delete line: the shell library then travels, and is
 * stored in the checkpoint, once instead of twice. Throws NodeScriptError like renderNodeScript.
 */
export function renderNodeScriptPair(input: Omit<NodeScriptInput, "action">): string {
  const install = scriptParts({ ...input, action: "install" });
  const remove = scriptParts({ ...input, action: "remove" });
  return [
    ...install.header("registry-trust install or remove (first argument)"),
    LIB,
    'case "${1-}" in',
    "install)",
    ...install.body,
    ";;",
    "remove)",
    ...remove.body,
    ";;",
    "*)",
    `echo "registry-trust: run as 'sh -s install' or 'sh -s remove', got '\${1-}'" >&2`,
    "exit 2",
    ";;",
    "esac",
    "",
  ].join("\n");
}

function scriptParts(input: NodeScriptInput): { header: (title: string) => string[]; body: string[] } {
  const v = validate(input);
  const owner = input.owner ?? "default";
  const marker = managedMarker(owner);
  const allowRestart = input.allowRuntimeRestart ?? true;
  const runtimes = activeRuntimes(input.runtimes);
  const keys = v.registries.map(endpointKey);
  const caFile = `${marker}: CA bundle for ${keys.join(", ")}.\n${v.bundle}`;
  const bundleSha = createHash("sha256").update(v.bundle).digest("hex");

  const body: string[] = ["rt_detect_os", "rt_store_layout"];
  if (input.action === "install") {
    const storeArgs = v.fps.map((fp, i) => `${q(fp)} ${q(b64(`${marker}: CA ${i + 1} of the bundle for ${keys.join(", ")}.\n${toPem(parsePemCertificates(v.bundle, "b").certs[i].der)}`))}`);
    body.push(`rt_plan_store ${storeArgs.join(" ")}`);
    const layouts = runtimes.map((r) => runtimeLayout(r, v.registries, caFile, owner, allowRestart));
    for (const l of layouts) body.push(...l.plan);
    body.push("rt_preflight", "rt_apply", "rt_apply_store", "rt_restart_planned");
    body.push(...installChecks(input, v, layouts).map((c) => c.line));
    body.push(`rt_finish install ${q(bundleSha)}`);
  } else {
    body.push(`rt_plan_prune "$RT_STORE_DIR/registry-trust-${owner}-"*."$RT_STORE_EXT"`);
    for (const r of runtimes) body.push(...removalLayout(r, v.registries, owner, allowRestart));
    body.push("rt_preflight", "rt_apply", "rt_apply_store", "rt_restart_planned", "rt_finish remove ''");
  }

  const header = (title: string) => [
    "#!/bin/sh",
    `# ${title}: ${keys.join(", ")} for ${runtimes.join(", ")} and the OS trust store (owner ${owner}).`,
    "# Generated by registry-trust; run as root. Prints a REGISTRY_TRUST_REPORT line last; on any failure the node is left as it was.",
    "set -eu",
    "umask 022",
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "export PATH",
    `RT_OS=${q(storeFamily(input.os))}`,
    `RT_OWNER=${q(owner)}`,
    `RT_ALLOW_UNVERIFIED=${input.allowUnverified ? 1 : "''"}`,
  ];
  return { header, body };
}

/** The report a node script printed as its last REGISTRY_TRUST_REPORT line. */
export function parseNodeReport(stdout: string): NodeReport {
  const line = stdout.split("\n").reverse().find((l) => l.startsWith(NODE_REPORT_PREFIX));
  if (!line) throw new Error("the node script printed no REGISTRY_TRUST_REPORT line (did it run to the end?)");
  return JSON.parse(line.slice(NODE_REPORT_PREFIX.length)) as NodeReport;
}
