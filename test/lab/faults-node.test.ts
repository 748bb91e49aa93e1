/**
 * A node becomes unreachable in the middle of a rotation (its sshd stopped between two nodes, or its SSH
 * session killed while the node script runs). The run must fail naming the node, leave no node half
 * written, not switch the registry's certificate, and a rerun once the node is back must converge.
 * Real registry, real sshd nodes, rendered node script, CRI pulls. Needs root and the lab's packages.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { assembleBundle } from "../../core/x509/bundle";
import { signal } from "../../lab/daemon";
import { startLab, type Lab } from "../../lab/lab";
import type { LabNode } from "../../lab/node";
import { childPids, cmdline } from "../../lab/proc";
import { Generation, generationsIn, installOnNode, makeGenerations, servedGeneration, X509_UNKNOWN_AUTHORITY } from "./incident-support";

jest.setTimeout(90_000);

let lab: Lab;
let gens: Generation[];
let work: string;
const stopped: number[] = [];

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "faults-node-"));
  lab = await startLab({ nodes: 3 });
  gens = await makeGenerations(lab, work, 2);
});

afterAll(async () => {
  for (const pid of stopped) signal(pid, "SIGCONT");
  await lab?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** Host PIDs of a node's sshd processes: the listener first (a child of the node's init), then sessions. */
function sshdPids(node: LabNode): { listener: number; sessions: number[] } {
  const init = childPids(node.pid)[0];
  const listener = childPids(init).find((p) => comm(p) === "sshd");
  if (!listener) throw new Error(`${node.name}: no sshd`);
  const sessions = childPids(listener).filter((p) => comm(p) === "sshd");
  return { listener, sessions };
}

function comm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}

/** The whole tree under the node's trust locations (directories, files, links, modes, file hashes), read from the host side of its bind mounts. */
function trustFiles(node: LabNode): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = fs.lstatSync(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) {
      out.push(`${path.relative(node.dir, p)}/ ${mode}`);
      for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
    } else out.push(`${path.relative(node.dir, p)} ${mode} ${st.isSymbolicLink() ? `-> ${fs.readlinkSync(p)}` : createHash("sha256").update(fs.readFileSync(p)).digest("hex")}`);
  };
  for (const d of ["fs/etc/containerd", "fs/usr/local/share/ca-certificates", "fs/etc/ssl/certs"]) walk(path.join(node.dir, d));
  return out;
}

/** The bundle the node's containerd uses for the lab registry, as generation numbers. */
function nodeGenerations(node: LabNode): number[] {
  const file = path.join(node.dir, "fs/etc/containerd/certs.d", `${lab.registry.host}:${lab.registry.port}`, "ca.crt");
  return fs.existsSync(file) ? generationsIn(fs.readFileSync(file, "utf8"), gens) : [];
}

async function pullsOk(): Promise<void> {
  for (const node of lab.nodes) {
    const cri = node.cri();
    try {
      await expect(cri.pullImage(lab.registry.image)).resolves.toMatch(/^sha256:/);
    } finally {
      cri.close();
    }
  }
}

/**
 * The rotation's distribution then switch, as the protocol orders them: every node installs and verifies
 * the bundle (one after the other, `between` runs before each node after the first), and only then the
 * registry serves the new certificate.
 */
async function rotate(g: Generation, bundlePem: string, between: (next: LabNode) => void | Promise<void> = () => undefined): Promise<void> {
  for (const [i, node] of lab.nodes.entries()) {
    if (i > 0) await between(node);
    await installOnNode(lab, node, bundlePem);
  }
  await lab.registry.serve(g.certPem, g.keyPem);
}

test("sshd stopped between nodes: the run fails naming the node, nothing is switched or half written; the rerun converges", async () => {
  const g1Bundle = assembleBundle([gens[0].caPem]).pem;
  for (const node of lab.nodes) await installOnNode(lab, node, g1Bundle);
  const before = lab.nodes.map(trustFiles);
  const bundle = assembleBundle([gens[1].caPem, gens[0].caPem]).pem;

  const [, n2] = lab.nodes;
  const err = await rotate(gens[1], bundle, (next) => {
    if (next !== n2) return;
    const { listener } = sshdPids(n2);
    signal(listener, "SIGSTOP");
    stopped.push(listener);
  }).then(() => undefined, (e: unknown) => e as Error);

  expect(err).toBeInstanceOf(Error);
  expect(err!.message).toMatch(new RegExp(`^node node-2 \\(127\\.0\\.0\\.12:${n2.port}\\): trust install failed \\(exit 255\\): .*(timed out|timeout)`, "i"));
  // Only node-1 changed; node-2 and node-3 are exactly as before; the registry still serves G1.
  expect(nodeGenerations(lab.nodes[0])).toEqual([2, 1]);
  expect(trustFiles(lab.nodes[1])).toEqual(before[1]);
  expect(trustFiles(lab.nodes[2])).toEqual(before[2]);
  expect((await servedGeneration(lab, gens)).n).toBe(1);
  await pullsOk();

  // The node comes back; the same rotation again converges on every node and then switches.
  signal(stopped.pop()!, "SIGCONT");
  await rotate(gens[1], bundle);
  expect(lab.nodes.map(nodeGenerations)).toEqual([[2, 1], [2, 1], [2, 1]]);
  expect((await servedGeneration(lab, gens)).n).toBe(2);
  await pullsOk();
});

test("SSH session killed while the node script runs: the node is left all before or all after, never between; the rerun converges", async () => {
  const [, n2] = lab.nodes;
  const served = await servedGeneration(lab, gens);
  await installOnNode(lab, n2, assembleBundle(gens.map((g) => g.caPem)).pem);
  const before = trustFiles(n2);
  // Down to the served CA alone is a real change on node-2 (it has both generations).
  const bundle = assembleBundle([served.caPem]).pem;
  const caFile = path.join(n2.dir, "fs/etc/containerd/certs.d", `${lab.registry.host}:${lab.registry.port}`, "ca.crt");
  const caBefore = fs.readFileSync(caFile, "utf8");
  const run = installOnNode(lab, n2, bundle).then(() => undefined, (e: unknown) => e as Error);
  let killed = 0;
  const deadline = Date.now() + 10_000;
  while (killed === 0 && Date.now() < deadline) {
    // Cut the connection once the script has replaced the CA file: its store update and checks are still ahead.
    if (fs.readFileSync(caFile, "utf8") !== caBefore) {
      const sessions = sshdPids(n2).sessions;
      for (const s of sessions) signal(s, "SIGKILL");
      killed = sessions.length;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  const err = await run;
  expect(killed).toBeGreaterThanOrEqual(1);
  expect(err?.message).toMatch(/^node node-2 .*trust install failed \(exit 255\)/);
  // The script outlives its connection (it has read all of itself): wait for it to end on its own.
  await waitForNoScript(n2);
  const left = trustFiles(n2);
  expect(left.filter((f) => /\.rt-(new|restore)\b/.test(f))).toEqual([]);

  // The rerun converges; what the cut left was either the state before or exactly that converged state.
  await installOnNode(lab, n2, bundle);
  const converged = trustFiles(n2);
  expect([before, converged].map((x) => JSON.stringify(x))).toContain(JSON.stringify(left));
  expect(nodeGenerations(n2)).toEqual([served.n]);
  await pullsOk();
});

/** Waits until no registry-trust script runs in the node any more. */
async function waitForNoScript(node: LabNode): Promise<void> {
  const deadline = Date.now() + 20_000;
  const running = () => {
    const all = (p: number): number[] => [p, ...childPids(p).flatMap(all)];
    return all(node.pid).some((p) => cmdline(p) === "sh -s");
  };
  while (running()) {
    if (Date.now() > deadline) throw new Error(`${node.name}: the node script still runs 20 s after its connection was cut`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("x509 is what a node without the served CA hits: proves the pulls above exercised trust", async () => {
  const node = lab.nodes[2];
  const served = await servedGeneration(lab, gens);
  const other = gens.find((g) => g !== served)!;
  await installOnNode(lab, node, assembleBundle([other.caPem]).pem, { probeTls: false });
  const cri = node.cri();
  try {
    await expect(cri.pullImage(lab.registry.image)).rejects.toThrow(X509_UNKNOWN_AUTHORITY);
  } finally {
    cri.close();
  }
});
