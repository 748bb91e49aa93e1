import * as fs from "node:fs";
import * as path from "node:path";
import { CriClient } from "./cri-client";
import { signal, spawnDaemon, tcpAccepts, type Daemon } from "./daemon";
import { childPids, cleanEnv, cmdline, isAlive, run, runOk, waitUntil, type RunResult } from "./proc";
import { containerdConfig, type ContainerdFlavor, type NodeBinaries } from "./runtime";

/** What lab.json records about a node: enough for another process to use it or stop it. */
export interface NodeDescription {
  name: string;
  host: string;
  port: number;
  user: "root";
  privateKeyPath: string;
  knownHostsPath: string;
  /** The node's public host key ("ssh-ed25519 AAAA…"), for pinning (e.g. @pulumi/command's hostKey). */
  hostKey: string;
  /** The node's containerd socket as seen from the host (it is /run/containerd/containerd.sock on the node). */
  containerdSocket: string;
  /** Which containerd the node runs (lab/runtime.ts); absent in a lab.json written before there was a choice: "1.6". */
  containerd: ContainerdFlavor;
  dir: string;
  /** PID of the `unshare` process that holds the node's namespaces. */
  pid: number;
}

export interface ExecOptions {
  stdin?: string | Buffer;
  timeoutMs?: number;
}

/**
 * Host directories (and files) each node gets a private copy of, bind-mounted by
 * lab/node-files/init.sh. The list there and here must agree.
 */
const COPIED = [
  "/etc/ssl/certs",
  "/usr/local/share/ca-certificates",
  "/etc/ca-certificates.conf",
  "/etc/containers",
  "/etc/docker",
  "/etc/cni/net.d",
  "/usr/local/sbin",
];
// /etc/pki (RHEL layout, with the update-ca-trust emulation) and /etc/rancher (k3s/RKE2) start empty;
// scripts/install-lab-deps.sh creates them on the host as bare mount points.
const EMPTY = ["/etc/ca-certificates/update.d", "/etc/containerd", "/var/lib/containers", "/etc/pki", "/etc/rancher"];
const NODE_FILES = path.join(__dirname, "node-files");

export interface NodeSetup {
  name: string;
  host: string;
  port: number;
  dir: string;
  privateKeyPath: string;
  authorizedKeysPath: string;
  knownHostsPath: string;
  /** Extra /etc/hosts lines, e.g. "127.0.0.1 registry.test". */
  hostsEntries: string[];
  containerd: ContainerdFlavor;
  binaries: NodeBinaries;
}

export function checkMountPoints(): void {
  const missing = [...COPIED, ...EMPTY, "/etc/hosts", "/run"].filter((p) => !fs.existsSync(p));
  if (missing.length > 0) {
    throw new Error(`lab: missing on this machine: ${missing.join(", ")}; run scripts/install-lab-deps.sh`);
  }
}

/** Writes a node's private file tree, host key and configs; starts nothing. */
export async function prepareNode(s: NodeSetup): Promise<string> {
  const fsRoot = path.join(s.dir, "fs");
  for (const p of COPIED) {
    fs.cpSync(p, path.join(fsRoot, p), { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  }
  for (const p of EMPTY) fs.mkdirSync(path.join(fsRoot, p), { recursive: true });
  for (const d of ["run", "logs", "ssh", "containerd/root", "containerd/opt"]) fs.mkdirSync(path.join(s.dir, d), { recursive: true });

  fs.writeFileSync(
    path.join(fsRoot, "etc/hosts"),
    ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback", `${s.host} ${s.name}`, ...s.hostsEntries, ""].join("\n"),
  );
  fs.writeFileSync(path.join(fsRoot, "etc/containerd/config.toml"), await containerdConfig(s.containerd, s.dir, s.binaries));
  // The RHEL layout as its ca-certificates package leaves it: sources, extracted output, the tls link.
  for (const d of ["etc/pki/ca-trust/source/anchors", "etc/pki/ca-trust/extracted/pem", "etc/pki/tls/certs", "etc/pki/ca-trust/lab-system-source"]) {
    fs.mkdirSync(path.join(fsRoot, d), { recursive: true });
  }
  fs.symlinkSync("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", path.join(fsRoot, "etc/pki/tls/certs/ca-bundle.crt"));
  // Stands in for RHEL's /usr/share/pki/ca-trust-source: the public roots, as anchors.
  fs.symlinkSync("/usr/share/ca-certificates/mozilla", path.join(fsRoot, "etc/pki/ca-trust/lab-system-source/anchors"));
  // RHEL's p11-kit looks in these source paths; Debian's is told so by the update-ca-trust emulation.
  fs.writeFileSync(
    path.join(fsRoot, "etc/pki/ca-trust/lab-p11-kit-trust.module"),
    "module: p11-kit-trust.so\npriority: 1\ntrust-policy: yes\ndisable-in: p11-kit-proxy\nx-init-reserved: paths=/etc/pki/ca-trust/source:/etc/pki/ca-trust/lab-system-source\n",
  );

  const sbin = path.join(fsRoot, "usr/local/sbin");
  fs.copyFileSync(path.join(NODE_FILES, "systemctl"), path.join(sbin, "systemctl"));
  fs.copyFileSync(path.join(NODE_FILES, "update-ca-trust"), path.join(sbin, "update-ca-trust"));
  fs.chmodSync(path.join(sbin, "update-ca-trust"), 0o755);
  fs.chmodSync(path.join(sbin, "systemctl"), 0o755);
  // The real binaries, linked (nodes share the host's filesystem): /usr/local/sbin comes first on PATH, so
  // on a containerd 2 node `containerd` and `ctr` (init.sh, ssh sessions, doctor) are the 2.x ones.
  const linked = s.containerd === "2" ? (["crictl", "containerd", "ctr"] as const) : (["crictl"] as const);
  for (const b of linked) {
    // The copy of the host's /usr/local/sbin may hold a crictl of its own: the node gets the pinned one.
    fs.rmSync(path.join(sbin, b), { force: true });
    fs.symlinkSync(s.binaries[b], path.join(sbin, b));
  }

  const hostKeyPath = path.join(s.dir, "ssh", "ssh_host_ed25519_key");
  await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", s.name, "-f", hostKeyPath]);
  fs.writeFileSync(
    path.join(s.dir, "ssh", "sshd_config"),
    [
      `ListenAddress ${s.host}:${s.port}`,
      `HostKey ${hostKeyPath}`,
      "PidFile none",
      `AuthorizedKeysFile ${s.authorizedKeysPath}`,
      "PermitRootLogin prohibit-password",
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      // The lab's keys live under a world-traversable temp dir.
      "StrictModes no",
      "PrintMotd no",
      "PrintLastLog no",
      "UseDNS no",
      "MaxStartups 100:30:200",
      "MaxSessions 100",
      "Subsystem sftp internal-sftp",
      "LogLevel ERROR",
      "",
    ].join("\n"),
  );
  const [type, key] = fs.readFileSync(`${hostKeyPath}.pub`, "utf8").trim().split(/\s+/);
  return `${type} ${key}`;
}

/** Starts the node's namespaces with sshd and containerd inside; see LabNode.waitReady(). */
export function launchNode(dir: string): Daemon {
  return spawnDaemon(
    "unshare",
    ["--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc", "--kill-child", path.join(NODE_FILES, "init.sh"), dir],
    path.join(dir, "logs", "init.log"),
  );
}

export class LabNode implements NodeDescription {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly user = "root" as const;
  readonly privateKeyPath: string;
  readonly knownHostsPath: string;
  readonly hostKey: string;
  readonly containerdSocket: string;
  readonly containerd: ContainerdFlavor;
  readonly dir: string;
  readonly pid: number;

  constructor(
    d: Omit<NodeDescription, "user" | "containerd"> & { containerd?: ContainerdFlavor },
    private readonly daemon: Daemon = { pid: d.pid },
  ) {
    this.name = d.name;
    this.host = d.host;
    this.port = d.port;
    this.privateKeyPath = d.privateKeyPath;
    this.knownHostsPath = d.knownHostsPath;
    this.hostKey = d.hostKey;
    this.containerdSocket = d.containerdSocket;
    this.containerd = d.containerd ?? "1.6";
    this.dir = d.dir;
    this.pid = d.pid;
  }

  /** Waits until sshd accepts connections and containerd has written its PID (socket up). */
  async waitReady(timeoutMs = 10_000): Promise<void> {
    const pidFile = path.join(this.dir, "run", "containerd", "containerd.pid");
    await waitUntil(
      `${this.name} to be ready`,
      async () => {
        if (!isAlive(this.daemon.pid)) {
          throw new Error(`${this.name} exited: ${readLogs(this.dir)}`);
        }
        return fs.existsSync(pidFile) && (await tcpAccepts(this.host, this.port));
      },
      timeoutMs,
    );
  }

  /** The host PID of the node's current containerd (changes only when containerd restarts). */
  containerdPid(): number {
    let nsPid: number;
    try {
      nsPid = Number(fs.readFileSync(path.join(this.dir, "run", "containerd", "containerd.pid"), "utf8").trim());
    } catch {
      throw new Error(`${this.name}: containerd is not running (no PID file)`);
    }
    for (const init of childPids(this.daemon.pid)) {
      for (const child of childPids(init)) {
        if (nsPidOf(child) === nsPid) return child;
      }
    }
    throw new Error(`${this.name}: containerd (PID ${nsPid} in the node) is not running`);
  }

  /** A CRI client on the node's containerd socket, from the host. Close it when done. */
  cri(): CriClient {
    return new CriClient(this.containerdSocket);
  }

  /**
   * Runs `command` on the node through real ssh with the pinned host key. Pass content through
   * `stdin` rather than in the command line.
   */
  exec(command: string, opts: ExecOptions = {}): Promise<RunResult> {
    return run("ssh", [...this.sshArgs(), `${this.user}@${this.host}`, "--", command], {
      input: opts.stdin,
      timeoutMs: opts.timeoutMs ?? 60_000,
      env: cleanEnv(),
    });
  }

  /** ssh options that reach this node (without the destination). */
  sshArgs(): string[] {
    return [
      "-F", "/dev/null",
      "-i", this.privateKeyPath,
      "-p", String(this.port),
      "-o", "IdentitiesOnly=yes",
      "-o", "BatchMode=yes",
      "-o", "StrictHostKeyChecking=yes",
      "-o", `UserKnownHostsFile=${this.knownHostsPath}`,
      "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "ConnectTimeout=5",
      "-o", "LogLevel=ERROR",
    ];
  }

  /**
   * Asks the node's PID 1 to stop containerd and sshd, then kills it if it lingers; either way the
   * kernel ends every process left in the node's PID namespace, and its mounts go with it.
   */
  async stop(): Promise<void> {
    const unshare = this.daemon.pid;
    if (!this.daemon.exited && !cmdline(unshare).includes(this.dir)) return;
    const gone = (): boolean => !isAlive(unshare);
    for (const init of childPids(unshare)) signal(init, "SIGTERM");
    try {
      await waitUntil(`${this.name} to stop`, gone, 3000);
    } catch {
      // --kill-child makes the kernel SIGKILL the node's PID 1 when unshare dies.
      signal(unshare, "SIGKILL");
      await waitUntil(`${this.name} to die`, gone, 5000);
    }
    await this.daemon.exited;
  }
}

function nsPidOf(pid: number): number | undefined {
  try {
    const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("NSpid:"));
    const ids = line?.split(/\s+/).slice(1).filter(Boolean).map(Number) ?? [];
    return ids[ids.length - 1];
  } catch {
    return undefined;
  }
}

function readLogs(dir: string): string {
  return ["init.log", "sshd.log", "containerd.log"]
    .map((f) => {
      try {
        return `${f}: ${fs.readFileSync(path.join(dir, "logs", f), "utf8").trim().split("\n").slice(-5).join(" | ")}`;
      } catch {
        return "";
      }
    })
    .filter(Boolean)
    .join("\n");
}
