// Shared by the incident replays and the lab fault tests: CA generations for the lab registry, node
// installs with the rendered node script over real ssh, what the registry serves, and a bounded CRI pull
// sampler on every node. Everything here drives real parts; nothing stands in for a node or the registry.
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as tls from "node:tls";
import { RegistryEndpoint } from "../../core/config/model";
import { parseNodeReport, renderNodeScript } from "../../core/node/render";
import { NodeReport } from "../../core/node/types";
import { assembleBundle, bundleHash } from "../../core/x509/bundle";
import { REGISTRY_HOST, type Lab } from "../../lab/lab";
import type { LabNode } from "../../lab/node";
import { createCa, issueServerCert } from "../../lab/pki";

export const X509_UNKNOWN_AUTHORITY = "x509: certificate signed by unknown authority";

/** One CA generation: its CA and a serving certificate for the lab registry issued by it. */
export interface Generation {
  readonly n: number;
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** Generation 1 is the lab's own CA (what the registry serves at start); 2..count are new CAs. */
export async function makeGenerations(lab: Lab, workDir: string, count: number): Promise<Generation[]> {
  const g1: Generation = {
    n: 1,
    caPem: lab.registry.caPem,
    certPem: fs.readFileSync(lab.registry.certPath, "utf8"),
    keyPem: fs.readFileSync(lab.registry.keyPath, "utf8"),
  };
  const rest = await Promise.all(
    Array.from({ length: count - 1 }, async (_, i) => {
      const n = i + 2;
      const dir = path.join(workDir, `g${n}`);
      const ca = await createCa(dir, `registry-trust incident CA G${n}`);
      const cert = await issueServerCert(ca, dir, [REGISTRY_HOST, "localhost"], ["127.0.0.1"]);
      return { n, caPem: ca.pem, certPem: cert.pem, keyPem: fs.readFileSync(cert.keyPath, "utf8") };
    }),
  );
  return [g1, ...rest];
}

export function endpointsOf(lab: Lab): RegistryEndpoint[] {
  return [{ host: REGISTRY_HOST, port: lab.registry.port, mirrorOf: [] }];
}

/** Generation numbers of the CAs in a PEM bundle, in bundle order. */
export function generationsIn(bundlePem: string, gens: readonly Generation[]): number[] {
  return assembleBundle([bundlePem]).fingerprints.map((fp) => gens.find((g) => new X509Certificate(g.caPem).fingerprint256 === fp)?.n ?? 0);
}

/** The leaf certificate the registry serves right now, as a TLS client sees it. */
export function servedCertificate(lab: Lab): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: lab.registry.address, port: lab.registry.port, servername: REGISTRY_HOST, rejectUnauthorized: false }, () => {
      const cert = sock.getPeerX509Certificate();
      sock.destroy();
      cert ? resolve(cert) : reject(new Error("the registry presented no certificate"));
    });
    sock.once("error", reject);
  });
}

/** The generation whose CA signed what the registry serves now (the overlap invariant's "current" CA). */
export async function servedGeneration(lab: Lab, gens: readonly Generation[]): Promise<Generation> {
  const leaf = await servedCertificate(lab);
  const g = gens.find((x) => leaf.checkIssued(new X509Certificate(x.caPem)) && leaf.verify(new X509Certificate(x.caPem).publicKey));
  if (!g) throw new Error(`the registry serves ${leaf.subject} issued by ${leaf.issuer}, from none of the known generations`);
  return g;
}

/**
 * Installs `bundlePem` on one node with the rendered node script over ssh (the script on stdin, as
 * NodeTrust sends it) and returns its report; the script verifies the TLS endpoint through what it
 * installed. A failure names the node and carries the script's or ssh's own words.
 */
export async function installOnNode(lab: Lab, node: LabNode, bundlePem: string, opts: { probeTls?: boolean } = {}): Promise<NodeReport> {
  const script = renderNodeScript({ os: "auto", runtimes: ["containerd"], registries: endpointsOf(lab), bundlePem, action: "install", probeTls: opts.probeTls });
  const r = await node.exec("sh -s", { stdin: script, timeoutMs: 30_000 });
  if (r.code !== 0) {
    throw new Error(`node ${node.name} (${node.host}:${node.port}): trust install failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
  }
  const report = parseNodeReport(r.stdout);
  if (report.bundleSha256 !== bundleHash(bundlePem)) {
    throw new Error(`node ${node.name}: installed bundle ${report.bundleSha256}, expected ${bundleHash(bundlePem)}`);
  }
  return report;
}

export interface PullSample {
  readonly node: string;
  /** Epoch ms when the pull started and ended. */
  readonly start: number;
  readonly end: number;
  /** undefined when the pull succeeded. */
  readonly error?: string;
}

/**
 * Pulls the lab image through CRI on every node, back to back, until stopped or `maxPerNode` pulls per
 * node (a bounded loop). containerd resolves the tag against the registry on every pull, so each sample
 * is a fresh TLS handshake checked against the node's trust at that moment.
 */
export class PullSampler {
  readonly samples: PullSample[] = [];
  private stopped = false;
  private readonly loops: Promise<void>[];
  private readonly nodes: string[];

  constructor(lab: Lab, nodes: readonly LabNode[] = lab.nodes, maxPerNode = 2_000, pauseMs = 20) {
    this.nodes = nodes.map((n) => n.name);
    this.loops = nodes.map(async (node) => {
      const cri = node.cri();
      try {
        for (let i = 0; i < maxPerNode && !this.stopped; i++) {
          const start = Date.now();
          try {
            await cri.pullImage(lab.registry.image);
            this.samples.push({ node: node.name, start, end: Date.now() });
          } catch (e) {
            this.samples.push({ node: node.name, start, end: Date.now(), error: (e as Error).message });
          }
          await new Promise((r) => setTimeout(r, pauseMs));
        }
      } finally {
        cri.close();
      }
    });
  }

  /** Waits until every sampled node has a sample that `matches` (a condition, not a guessed duration). */
  async untilEachNode(what: string, matches: (s: PullSample) => boolean, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const missing = () => this.nodes.filter((n) => !this.samples.some((s) => s.node === n && matches(s)));
    while (missing().length > 0) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} on ${missing().join(", ")}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<PullSample[]> {
    this.stopped = true;
    await Promise.all(this.loops);
    return this.samples;
  }

  x509Failures(): PullSample[] {
    return this.samples.filter((s) => s.error?.includes("x509"));
  }
}

/**
 * A failure while docker-registry restarts onto a new certificate (lab.registry.serve): the port is
 * briefly closed. Anything else (above all x509) is a real failure.
 */
export function isRestartGap(error: string): boolean {
  return /connection refused|connection reset|EOF|broken pipe/i.test(error) && !error.includes("x509");
}
