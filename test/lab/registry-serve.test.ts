/**
 * The lab registry's serving certificate can be replaced and reloaded, from code and from a lab node
 * over SSH (how a "files on a registry host" target reloads it). Real docker-registry, real TLS.
 */
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import { startLab, type Lab } from "../../lab/lab";
import { createCa, issueServerCert, type ServerCertificate } from "../../lab/pki";
import { childPids, cmdline } from "../../lab/proc";
import { until } from "../support/until";

const X509_UNKNOWN_AUTHORITY = "x509: certificate signed by unknown authority";

function servedFingerprint(address: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: address, port, servername: "registry.test", rejectUnauthorized: false }, () => {
      const fp = sock.getPeerX509Certificate()?.fingerprint256;
      sock.destroy();
      fp ? resolve(fp) : reject(new Error("no peer certificate"));
    });
    sock.once("error", reject);
  });
}

const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;

function hostsToml(registry: string, caPath: string): string {
  return `server = "https://${registry}"\n\n[host."https://${registry}"]\n  capabilities = ["pull", "resolve"]\n  ca = "${caPath}"\n`;
}

/** Makes node `i` trust exactly `caPem` for the lab registry (containerd reads it on the next pull). */
async function trustOnNode(lab: Lab, i: number, caPem: string): Promise<void> {
  const registry = `${lab.registry.host}:${lab.registry.port}`;
  const dir = `/etc/containerd/certs.d/${registry}`;
  const ca = await lab.nodes[i].exec(`set -eu; mkdir -p '${dir}'; cat > '${dir}/ca.crt'`, { stdin: caPem });
  expect(ca).toEqual({ code: 0, stdout: "", stderr: "" });
  const toml = await lab.nodes[i].exec(`cat > '${dir}/hosts.toml'`, { stdin: hostsToml(registry, `${dir}/ca.crt`) });
  expect(toml).toEqual({ code: 0, stdout: "", stderr: "" });
}

describe("lab registry: serving certificate files and reload", () => {
  let lab: Lab;
  let work: string;
  let g2: ServerCertificate;
  let g2CaPem: string;

  beforeAll(async () => {
    lab = await startLab({ nodes: 1 });
    work = fs.mkdtempSync(path.join(os.tmpdir(), "registry-serve-"));
    const ca = await createCa(path.join(work, "g2"), "lab CA G2");
    g2 = await issueServerCert(ca, path.join(work, "g2"), ["registry.test", "localhost"], ["127.0.0.1"]);
    g2CaPem = ca.pem;
  }, 60_000);

  afterAll(async () => {
    await lab?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it("describes the certificate files and an executable reload command in lab.json", () => {
    const json = JSON.parse(fs.readFileSync(path.join(lab.dir, "lab.json"), "utf8"));
    for (const key of ["certPath", "keyPath", "reloadCommand"]) {
      expect(path.isAbsolute(json.registry[key])).toBe(true);
      expect(json.registry[key].startsWith(lab.dir + path.sep)).toBe(true);
    }
    expect(fs.statSync(json.registry.reloadCommand).mode & 0o111).not.toBe(0);
    expect(fs.statSync(json.registry.keyPath).mode & 0o077).toBe(0);
    expect(json.registry).not.toHaveProperty("serve");
  });

  it("docker-registry does not pick up new files by itself; serve() switches what it serves", async () => {
    const before = await servedFingerprint(lab.registry.address, lab.registry.port);
    expect(before).toBe(fingerprint(fs.readFileSync(lab.registry.certPath, "utf8")));
    const originalCert = fs.readFileSync(lab.registry.certPath, "utf8");
    const originalKey = fs.readFileSync(lab.registry.keyPath, "utf8");

    // Files replaced, no reload: distribution v2.8 loads its key pair once at start-up (a static
    // tls.Config), so a handshake begun after the replacement still gets the old certificate, and it
    // holds no inotify instance that could make it load the new files later by itself.
    fs.copyFileSync(g2.certPath, lab.registry.certPath);
    fs.copyFileSync(g2.keyPath, lab.registry.keyPath);
    expect(await servedFingerprint(lab.registry.address, lab.registry.port)).toBe(before);
    const [registryPid] = childPids(lab.registry.pid);
    expect(fs.readFileSync(`/proc/${registryPid}/comm`, "utf8").trim()).toBe("docker-registry");
    const fds = fs.readdirSync(`/proc/${registryPid}/fd`).map((fd) => fs.readlinkSync(`/proc/${registryPid}/fd/${fd}`));
    expect(fds).toContainEqual(expect.stringMatching(/^socket:/));
    expect(fds.filter((l) => l === "anon_inode:inotify")).toEqual([]);

    fs.writeFileSync(lab.registry.certPath, originalCert);
    fs.writeFileSync(lab.registry.keyPath, originalKey);
    await lab.registry.serve(fs.readFileSync(g2.certPath, "utf8"), fs.readFileSync(g2.keyPath, "utf8"));
    // No polling: serve() returns only once the new certificate is served.
    expect(await servedFingerprint(lab.registry.address, lab.registry.port)).toBe(fingerprint(g2.pem));
    expect(cmdline(lab.registry.pid)).toContain(lab.dir);

    // A node trusting only the lab CA now fails exactly like the incident; trusting G2 it pulls.
    const cri = lab.nodes[0].cri();
    try {
      await trustOnNode(lab, 0, lab.registry.caPem);
      await expect(cri.pullImage(lab.registry.image)).rejects.toThrow(X509_UNKNOWN_AUTHORITY);
      await trustOnNode(lab, 0, g2CaPem);
      expect(await cri.pullImage(lab.registry.image)).toMatch(/^sha256:/);
    } finally {
      cri.close();
    }
  });

  it("the reload command run over SSH on a lab node restarts the registry on the host's files", async () => {
    // Back to the lab CA's certificate, written by hand as a "files on a registry host" target would.
    fs.copyFileSync(path.join(lab.dir, "pki", "server.crt"), lab.registry.certPath);
    fs.copyFileSync(path.join(lab.dir, "pki", "server.key"), lab.registry.keyPath);
    const r = await lab.nodes[0].exec(`'${lab.registry.reloadCommand}'`);
    expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(await servedFingerprint(lab.registry.address, lab.registry.port)).toBe(
      fingerprint(fs.readFileSync(path.join(lab.dir, "pki", "server.crt"), "utf8")),
    );
  });

  it("refuses a key that does not belong to the certificate before touching any file", async () => {
    const certBefore = fs.readFileSync(lab.registry.certPath, "utf8");
    const servedBefore = await servedFingerprint(lab.registry.address, lab.registry.port);
    await expect(lab.registry.serve(g2.pem, fs.readFileSync(path.join(lab.dir, "pki", "server.key"), "utf8"))).rejects.toThrow(
      /keyPem is not the private key of the certificate for CN=registry.test/,
    );
    await expect(lab.registry.serve("not a certificate", "")).rejects.toThrow(/certPem is not a PEM certificate/);
    expect(fs.readFileSync(lab.registry.certPath, "utf8")).toBe(certBefore);
    expect(await servedFingerprint(lab.registry.address, lab.registry.port)).toBe(servedBefore);
    expect(fs.readdirSync(path.dirname(lab.registry.certPath)).sort()).toEqual(["server.crt", "server.key"]);
  });

  it("stop takes the supervised docker-registry down with its supervisor", async () => {
    // The supervisor's only lasting child is docker-registry; right after a reload it also briefly runs the
    // `mv` that publishes the new generation, so wait for that to finish rather than race it.
    const comm = (p: number) => { try { return fs.readFileSync(`/proc/${p}/comm`, "utf8").trim(); } catch { return "(gone)"; } };
    const registryPids = await until("the supervisor's children to settle to docker-registry alone", 10_000, async () => {
      const pids = childPids(lab.registry.pid);
      return pids.map(comm).join(",") === "docker-registry" ? pids : undefined;
    }, () => childPids(lab.registry.pid).map(comm).join(","));
    await lab.stop();
    for (const p of [lab.registry.pid, ...registryPids]) expect(fs.existsSync(`/proc/${p}`)).toBe(false);
  });
});
