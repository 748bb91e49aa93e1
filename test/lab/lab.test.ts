/**
 * The lab itself, with real parts only: a TLS registry, sshd nodes in private namespaces, a
 * containerd per node, and pulls through CRI (the kubelet's path). Needs root,
 * scripts/install-lab-deps.sh and scripts/node-binaries.sh (crictl).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { CriError } from "../../lab/cri-client";
import { startLab, type Lab } from "../../lab/lab";
import { childPids } from "../../lab/proc";

const X509_UNKNOWN_AUTHORITY = "x509: certificate signed by unknown authority";

/** Host paths a node might write to if its isolation leaked. */
const HOST_PATHS = [
  "/etc/ssl/certs",
  "/usr/local/share/ca-certificates",
  "/etc/ca-certificates.conf",
  "/etc/ca-certificates/update.d",
  "/etc/containerd",
  "/etc/containers",
  "/etc/docker",
  "/etc/cni/net.d",
  "/etc/hosts",
  "/usr/local/sbin",
  "/var/lib/containers",
  "/etc/pki",
  "/etc/rancher",
  "/var/lib/containerd",
  "/opt/containerd",
  "/run/containerd",
  "/run/libpod",
];

/** Every entry under `paths` with its type and content hash (or link target); absent paths too. */
function snapshot(paths: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      out.push(`${p} absent`);
      return;
    }
    if (st.isSymbolicLink()) out.push(`${p} -> ${fs.readlinkSync(p)}`);
    else if (st.isDirectory()) {
      out.push(`${p}/ ${st.mode.toString(8)}`);
      for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
    } else if (st.isFile()) out.push(`${p} ${createHash("sha256").update(fs.readFileSync(p)).digest("hex")}`);
    else out.push(`${p} special`);
  };
  paths.forEach(walk);
  return out;
}

function hostsToml(registry: string, caPath: string): string {
  return [
    `server = "https://${registry}"`,
    "",
    `[host."https://${registry}"]`,
    '  capabilities = ["pull", "resolve"]',
    `  ca = "${caPath}"`,
    "",
  ].join("\n");
}

describe("lab of real parts (2 nodes)", () => {
  let lab: Lab;
  let hostBefore: string[];

  beforeAll(async () => {
    hostBefore = snapshot(HOST_PATHS);
    lab = await startLab({ nodes: 2 });
  }, 60_000);

  afterAll(async () => {
    await lab?.stop();
  }, 30_000);

  // How fast it starts is a benchmark's business (the machine is shared), not a test's.
  it("describes itself in lab.json", () => {
    const json = JSON.parse(fs.readFileSync(path.join(lab.dir, "lab.json"), "utf8"));
    expect(json).toEqual(JSON.parse(JSON.stringify(lab.describe())));
    expect(json.registry.image).toBe(`registry.test:${lab.registry.port}/lab/demo:1`);
    expect(json.nodes.map((n: { host: string }) => n.host)).toEqual(["127.0.0.11", "127.0.0.12"]);
    expect(lab.nodes[0].hostKey).toMatch(/^ssh-ed25519 [A-Za-z0-9+/=]+$/);
    expect(fs.readFileSync(lab.registry.caPath, "utf8")).toBe(lab.registry.caPem);
  });

  it("gives each node its own namespaces, reached over ssh with a pinned host key", async () => {
    const [n1, n2] = lab.nodes;
    const r1 = await n1.exec("getent hosts registry.test; readlink /proc/self/ns/mnt");
    const r2 = await n2.exec("readlink /proc/self/ns/mnt");
    expect(r1.stderr).toBe("");
    expect(r1.code).toBe(0);
    expect(r1.stdout).toMatch(/^127\.0\.0\.1\s+registry\.test$/m);
    const ns1 = r1.stdout.split("\n")[1];
    expect(ns1).toMatch(/^mnt:\[\d+\]$/);
    expect(r2.stdout.trim()).not.toBe(ns1);
    expect(fs.readlinkSync("/proc/self/ns/mnt")).not.toBe(ns1);
  });

  it("CRI pull fails with x509 unknown authority, then succeeds on the SAME containerd after hosts.toml + ca.crt", async () => {
    const [n1, n2] = lab.nodes;
    const registry = `${lab.registry.host}:${lab.registry.port}`;
    const cri1 = n1.cri();
    const cri2 = n2.cri();
    try {
      const pidBefore = n1.containerdPid();
      expect(fs.readFileSync(`/proc/${pidBefore}/comm`, "utf8").trim()).toBe("containerd");
      expect(n2.containerdPid()).not.toBe(pidBefore);

      const before = cri1.pullImage(lab.registry.image);
      await expect(before).rejects.toBeInstanceOf(CriError);
      await expect(before).rejects.toThrow(X509_UNKNOWN_AUTHORITY);

      const dir = `/etc/containerd/certs.d/${registry}`;
      const ca = await n1.exec(`set -eu; mkdir -p '${dir}'; cat > '${dir}/ca.crt'`, { stdin: lab.registry.caPem });
      expect(ca).toEqual({ code: 0, stdout: "", stderr: "" });
      const toml = await n1.exec(`set -eu; cat > '${dir}/hosts.toml'`, { stdin: hostsToml(registry, `${dir}/ca.crt`) });
      expect(toml).toEqual({ code: 0, stdout: "", stderr: "" });

      const ref = await cri1.pullImage(lab.registry.image);
      expect(ref).toMatch(/^sha256:[0-9a-f]{64}$/);
      const images = await cri1.listImages();
      expect(images.flatMap((i) => i.repoTags)).toContain(lab.registry.image);
      expect(images.flatMap((i) => i.repoDigests)).toContain(`${registry}/lab/demo@${lab.registry.imageDigest}`);
      expect(n1.containerdPid()).toBe(pidBefore);

      // Isolation: node 2 saw none of it.
      await expect(cri2.pullImage(lab.registry.image)).rejects.toThrow(X509_UNKNOWN_AUTHORITY);
      expect((await n2.exec("test -e /etc/containerd/certs.d")).code).toBe(1);
      expect(fs.existsSync("/etc/containerd/certs.d")).toBe(false);
      expect(await cri2.listImages()).toEqual([]);

      await cri1.removeImage(lab.registry.image);
      expect((await cri1.listImages()).flatMap((i) => i.repoTags)).not.toContain(lab.registry.image);
    } finally {
      cri1.close();
      cri2.close();
    }
  });

  it("the real crictl on a node pulls through CRI and reports containerd's error", async () => {
    const [n1, n2] = lab.nodes;
    expect((await n1.exec("crictl --version")).stdout).toBe("crictl version 1.37.0\n");
    const ok = await n1.exec(`crictl pull '${lab.registry.image}'`);
    // Without /etc/crictl.yaml (as kubeadm leaves a node) crictl warns that it probes default endpoints.
    expect(ok.stderr).not.toMatch(/level=error|^E\d{4} /m);
    expect(ok.stdout).toMatch(/^Image is up to date for sha256:[0-9a-f]{64}\n$/);
    expect(ok.code).toBe(0);
    const bad = await n2.exec(`crictl pull '${lab.registry.image}'`);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain(X509_UNKNOWN_AUTHORITY);
    expect(bad.stdout).toBe("");
  });

  it("systemctl restart containerd on a node gives it a new containerd that keeps its config", async () => {
    const n2 = lab.nodes[1];
    const before = n2.containerdPid();
    const r = await n2.exec("systemctl restart containerd && systemctl is-active containerd");
    expect(r).toEqual({ code: 0, stdout: "active\n", stderr: "" });
    const after = n2.containerdPid();
    expect(after).not.toBe(before);
    expect(fs.readFileSync(`/proc/${after}/comm`, "utf8").trim()).toBe("containerd");
    expect((await n2.exec(`crictl pull '${lab.registry.image}'`)).stderr).toContain(X509_UNKNOWN_AUTHORITY);
  });

  it("a node's OS trust store is its own: update-ca-certificates there leaves the host's store alone", async () => {
    const [n1, n2] = lab.nodes;
    const url = `https://${lab.registry.host}:${lab.registry.port}/v2/`;
    const install = await n1.exec("set -eu; cat > /usr/local/share/ca-certificates/registry-trust-lab.crt; update-ca-certificates >/dev/null", {
      stdin: lab.registry.caPem,
    });
    // Debian's rehash warns about the bundle file on stderr; only the exit status matters.
    expect({ code: install.code, stderr: install.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    const curl1 = await n1.exec(`curl -sS '${url}'`);
    expect(curl1).toEqual({ code: 0, stdout: "{}", stderr: "" });
    const curl2 = await n2.exec(`curl -sS '${url}'`);
    expect(curl2.code).toBe(60);
    expect(curl2.stderr).toContain("unable to get local issuer certificate");
    expect(snapshot(HOST_PATHS)).toEqual(hostBefore);
  });

  it("stop leaves nothing behind: no processes, no mounts, no files", async () => {
    const pids = [
      lab.registry.pid,
      ...lab.nodes.flatMap((n) => [n.pid, ...childPids(n.pid), n.containerdPid()]),
    ];
    expect(pids.length).toBe(1 + 2 * 3);
    for (const pid of pids) expect(fs.existsSync(`/proc/${pid}`)).toBe(true);

    await lab.stop();

    // Not even zombies: the lab waits on its children, so none is left for PID 1 to reap.
    expect(pids.filter((pid) => fs.existsSync(`/proc/${pid}`))).toEqual([]);
    const mentioning = fs
      .readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes(lab.dir);
        } catch {
          return false;
        }
      });
    expect(mentioning).toEqual([]);
    expect(fs.readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(lab.dir);
    expect(fs.existsSync(lab.dir)).toBe(false);
    expect(snapshot(HOST_PATHS)).toEqual(hostBefore);
  });
});
