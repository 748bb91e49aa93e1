import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { spawnDaemon, freePort, type Daemon } from "./daemon";
import type { CertificateAuthority, ServerCertificate } from "./pki";
import { isAlive, runOk, waitUntil } from "./proc";

export interface RunningRegistry {
  daemon: Daemon;
  address: string;
  port: number;
  logPath: string;
}

/** Debian's docker-registry (distribution v2) serving TLS on loopback, storing under `dir`. */
export async function startRegistry(dir: string, cert: ServerCertificate, ca: CertificateAuthority): Promise<RunningRegistry> {
  const address = "127.0.0.1";
  const port = await freePort(address);
  fs.mkdirSync(path.join(dir, "storage"), { recursive: true });
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
      `    certificate: ${cert.certPath}`,
      `    key: ${cert.keyPath}`,
      "",
    ].join("\n"),
  );
  const logPath = path.join(dir, "registry.log");
  const daemon = spawnDaemon("docker-registry", ["serve", configPath], logPath);
  await waitUntil(
    `registry on ${address}:${port}`,
    async () => {
      if (!isAlive(daemon.pid)) throw new Error(`docker-registry exited: ${fs.readFileSync(logPath, "utf8").trim()}`);
      return (await v2Status(address, port, ca.pem)) === 200;
    },
    5000,
  );
  return { daemon, address, port, logPath };
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
