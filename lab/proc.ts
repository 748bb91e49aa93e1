import { spawn } from "node:child_process";
import * as fs from "node:fs";

/** The PATH a systemd unit or a root login gets on Debian. */
export const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * The environment lab tools and daemons run with. Nothing is inherited: this machine's environment
 * sets SSL_CERT_FILE, CURL_CA_BUNDLE and friends, which would make a node's processes trust what the
 * host trusts instead of what the node's own store says.
 */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: SYSTEM_PATH, LANG: "C.UTF-8", ...extra };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string | Buffer;
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs?: number;
}

/** Runs a program to completion without a shell; never throws for a non-zero exit. */
export function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: opts.env ?? cleanEnv(),
      cwd: opts.cwd,
      stdio: ["pipe", "pipe", "pipe"],
      timeout: opts.timeoutMs ?? 60_000,
      killSignal: "SIGKILL",
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code, signal) =>
      resolve({
        code: code ?? (signal ? 128 + signalNumber(signal) : 1),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      }),
    );
    // A child that exits without reading its stdin must not crash us with EPIPE.
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

/** Like run() but rejects with the command's stderr when it exits non-zero. */
export async function runOk(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(file, args, opts);
  if (r.code !== 0) {
    throw new Error(`${file} ${args.join(" ")} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  }
  return r;
}

function signalNumber(signal: NodeJS.Signals): number {
  return ({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2 } as Record<string, number>)[signal] ?? 0;
}

/**
 * State letter from /proc/PID/stat, or undefined when the PID does not exist. A zombie ('Z') is
 * dead for our purposes: on this machine PID 1 does not reap orphans, so `kill -0` would report
 * a stopped daemon as alive forever.
 */
export function procState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  const s = procState(pid);
  return s !== undefined && s !== "Z" && s !== "X";
}

export async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Host PIDs of the direct children of a process. */
export function childPids(pid: number): number[] {
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .flatMap((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim().split(/\s+/))
      .filter((s) => s !== "")
      .map(Number);
  } catch {
    return [];
  }
}

export function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
}
