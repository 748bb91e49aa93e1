import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import { cleanEnv, cmdline, isAlive, waitUntil } from "./proc";

/**
 * A long-running lab process. `child` is set only in the process that started it; another process
 * (the `stop` CLI) knows the PID alone and must poll /proc instead of waiting on an exit event.
 */
export interface Daemon {
  pid: number;
  /** Resolves once the daemon has exited and been reaped (only in the process that spawned it). */
  exited?: Promise<void>;
}

/**
 * Starts a daemon in its own session so it outlives a `lab start` CLI and is not hit by a terminal's
 * Ctrl-C, with output appended to `logPath` and a clean environment.
 */
export function spawnDaemon(file: string, args: readonly string[], logPath: string): Daemon {
  const log = fs.openSync(logPath, "a");
  try {
    const child = spawn(file, args, { env: cleanEnv(), detached: true, stdio: ["ignore", log, log] });
    if (child.pid === undefined) throw new Error(`could not start ${file}`);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.unref();
    return { pid: child.pid, exited };
  } finally {
    fs.closeSync(log);
  }
}

/**
 * Signals a daemon and waits until it is gone; escalates to SIGKILL after `graceMs`. A daemon we
 * spawned is also awaited through its exit event, so it is reaped rather than left a zombie; one we
 * only know by PID is checked against `mustMention` first so that a recycled PID is never signalled.
 */
export async function stopDaemon(d: Daemon, mustMention: string, graceMs = 3000): Promise<void> {
  if (!d.exited && !cmdline(d.pid).includes(mustMention)) return;
  const gone = (): boolean => !isAlive(d.pid);
  signal(d.pid, "SIGTERM");
  try {
    await waitUntil(`PID ${d.pid} to exit`, gone, graceMs);
  } catch {
    signal(d.pid, "SIGKILL");
    await waitUntil(`PID ${d.pid} to exit after SIGKILL`, gone, 5000);
  }
  await d.exited;
}

export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** A TCP port that was free on `host` a moment ago. */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

export function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}
