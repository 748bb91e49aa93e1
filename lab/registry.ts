import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { spawnDaemon, freePort, type Daemon } from "./daemon";
import type { CertificateAuthority, ServerCertificate } from "./pki";
import { isAlive, run, runOk, waitUntil } from "./proc";

const REGISTRY_FILES = path.join(__dirname, "registry-files");

/** Where a running registry's serving certificate lives and how to make it serve the files anew. */
export interface ServingFiles {
  certPath: string;
  keyPath: string;
  /** Absolute path of an executable that restarts the registry on the current files; it returns once they are served. */
  reloadCommand: string;
}

export interface RunningRegistry extends ServingFiles {
  /** The supervisor (lab/registry-files/supervise): it owns docker-registry and restarts it on request. */
  daemon: Daemon;
  address: string;
  port: number;
  logPath: string;
}

/**
 * Debian's docker-registry (distribution v2) serving TLS on loopback, storing under `dir`, under a
 * supervisor that restarts it on request: distribution v2.8 reads its certificate only at start-up.
 * The certificate and key are copied to `dir/tls`, which the registry serves from then on.
 */
export async function startRegistry(dir: string, cert: ServerCertificate, ca: CertificateAuthority): Promise<RunningRegistry> {
  const address = "127.0.0.1";
  const port = await freePort(address);
  fs.mkdirSync(path.join(dir, "storage"), { recursive: true });
  fs.mkdirSync(path.join(dir, "tls"), { mode: 0o700 });
  const certPath = path.join(dir, "tls", "server.crt");
  const keyPath = path.join(dir, "tls", "server.key");
  fs.copyFileSync(cert.certPath, certPath);
  fs.copyFileSync(cert.keyPath, keyPath);
  fs.chmodSync(keyPath, 0o600);
  const reloadCommand = path.join(dir, "reload");
  fs.copyFileSync(path.join(REGISTRY_FILES, "reload"), reloadCommand);
  fs.chmodSync(reloadCommand, 0o755);
  const supervisor = path.join(dir, "supervise");
  fs.copyFileSync(path.join(REGISTRY_FILES, "supervise"), supervisor);
  fs.writeFileSync(path.join(dir, "endpoint"), `${address}:${port}\n`);
  await runOk("mkfifo", ["-m", "600", path.join(dir, "control")]);
  const configPath = path.join(dir, "config.yml");
  fs.writeFileSync(
    configPath,
    [
      "version: 0.1",
      "log:",
      "  level: warn",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${path.join(dir, "storage")}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: ${address}:${port}`,
      "  tls:",
      `    certificate: ${certPath}`,
      `    key: ${keyPath}`,
      "",
    ].join("\n"),
  );
  const logPath = path.join(dir, "registry.log");
  const daemon = spawnDaemon("bash", [supervisor, dir], logPath);
  await waitUntil(
    `registry on ${address}:${port}`,
    async () => {
      if (!isAlive(daemon.pid)) throw new Error(`docker-registry supervisor exited: ${fs.readFileSync(logPath, "utf8").trim()}`);
      return (await v2Status(address, port, ca.pem)) === 200;
    },
    5000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}; registry log: ${fs.readFileSync(logPath, "utf8").trim()}`);
  });
  return { daemon, address, port, logPath, certPath, keyPath, reloadCommand };
}

const switches = new Map<string, Promise<void>>();

/**
 * Makes the registry serve `certPem` with `keyPem`: checks that they belong together, replaces each
 * file atomically (rename), then runs the reload command. A mismatched pair is refused before any
 * file changes, so the registry never restarts onto files it cannot load. Calls for one registry run
 * one after the other: a reload waits for the certificate on file when it started, which a concurrent
 * call would replace under it.
 */
export function serveCertificate(files: ServingFiles, certPem: string, keyPem: string): Promise<void> {
  const previous = switches.get(files.certPath) ?? Promise.resolve();
  const next = previous.catch(() => undefined).then(() => switchCertificate(files, certPem, keyPem));
  switches.set(files.certPath, next);
  return next;
}

async function switchCertificate(files: ServingFiles, certPem: string, keyPem: string): Promise<void> {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (e) {
    throw new Error(`lab registry: certPem is not a PEM certificate (${(e as Error).message}); pass the server certificate to serve`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    throw new Error("lab registry: keyPem is not a PEM private key; pass the server certificate's private key");
  }
  if (!cert.checkPrivateKey(key)) {
    throw new Error(`lab registry: keyPem is not the private key of the certificate for ${cert.subject}; pass the key it was issued for`);
  }
  writeAtomically(files.certPath, certPem, 0o644);
  writeAtomically(files.keyPath, keyPem, 0o600);
  const r = await run(files.reloadCommand, [], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`lab registry: ${files.reloadCommand} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
}

function writeAtomically(file: string, content: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content, { mode });
  fs.renameSync(tmp, file);
}

function v2Status(host: string, port: number, caPem: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = https.get({ host, port, path: "/v2/", ca: caPem, servername: "registry.test", timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.once("error", () => resolve(undefined));
    req.once("timeout", () => req.destroy());
  });
}

/**
 * Pushes an OCI layout with skopeo. skopeo runs in a throwaway mount namespace with tmpfs over
 * /var/lib/containers and /run, because it writes a blob-info cache there and the lab must leave
 * nothing on the host. The cert dir holds only the CA: a stray key would make skopeo present a client
 * certificate.
 */
export async function pushOciLayout(
  layoutDir: string,
  tag: string,
  registry: RunningRegistry,
  ca: CertificateAuthority,
  workDir: string,
  repository: string,
): Promise<void> {
  const certDir = path.join(workDir, "skopeo-certs");
  fs.mkdirSync(certDir, { recursive: true });
  fs.copyFileSync(ca.certPath, path.join(certDir, "ca.crt"));
  const script =
    'mount -t tmpfs lab-skopeo /var/lib/containers && mount -t tmpfs lab-skopeo /run && exec skopeo copy --quiet --dest-cert-dir "$1" "oci:$2:$3" "docker://$4"';
  await runOk("unshare", [
    "--mount", "--propagation", "private", "sh", "-c", script, "sh",
    certDir, layoutDir, tag, `${registry.address}:${registry.port}/${repository}:${tag}`,
  ]);
}
