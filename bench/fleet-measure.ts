/*
 * What bench/fleet.ts measures besides wall time: memory of process trees (read from /proc), per-resource
 * step times from the engine's progress lines as they arrive, and the checkpoint bytes the file backend writes.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { childPids } from "../lab/proc";

/** Every PID of the tree under `root`, root included. */
export function treePids(root: number): number[] {
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...childPids(pid));
  }
  return out;
}

/**
 * Proportional set size in KiB (shared pages split among the processes that map them), so 50 sshd and
 * containerd processes mapping the same binaries are not counted 50 times; 0 for a process gone.
 */
export function pssKiB(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Samples the summed RSS of a process tree every `everyMs` until stopped; returns the peak in MiB. */
export function peakTreeRss(root: () => number | undefined, everyMs = 200): { stop(): number } {
  let peak = 0;
  const sample = () => {
    const pid = root();
    if (pid === undefined) return;
    const kib = treePids(pid).reduce((a, p) => a + rssKiB(p), 0);
    peak = Math.max(peak, kib);
  };
  const timer = setInterval(sample, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return peak / 1024;
    },
  };
}

export interface StepTiming {
  /** Resource type and name, e.g. "command:remote:Command nodes-node-1". */
  type: string;
  name: string;
  /** The step as the display words it: create, update, delete, replace, refresh, read. */
  op: string;
  seconds: number;
}

const WORDS: Record<string, [string, boolean]> = {
  creating: ["create", false], created: ["create", true],
  updating: ["update", false], updated: ["update", true],
  deleting: ["delete", false], deleted: ["delete", true],
  replacing: ["replace", false], replaced: ["replace", true],
  refreshing: ["refresh", false], refreshed: ["refresh", true],
  reading: ["read", false], read: ["read", true],
};
const PROGRESS = /^\s*\S*\s*([\w-]+:[\w/.-]+:[\w-]+)\s+(\S+)\s+(\w+)\b/;

/**
 * Times each resource step from the engine's non-interactive progress lines (`<type> <name> creating` …
 * `created (3s)`), by their arrival here: the lines' own figures are whole seconds, and this CLI build has
 * no --event-log. Feed it every line of `pulumi up --non-interactive` output.
 */
export class ProgressTimer {
  private readonly started = new Map<string, number>();
  readonly steps: StepTiming[] = [];
  /** When the last refresh step ended and the first other step started (performance.now()). */
  refreshEnd?: number;
  firstStep?: number;

  line(text: string, now = performance.now()): void {
    const m = PROGRESS.exec(text);
    const w = m && WORDS[m[3]];
    if (!m || !w) return;
    const key = `${m[1]} ${m[2]} ${w[0]}`;
    if (w[0] === "refresh" && w[1]) this.refreshEnd = now;
    if (w[0] !== "refresh" && !w[1]) this.firstStep ??= now;
    if (!w[1]) {
      if (!this.started.has(key)) this.started.set(key, now);
    } else if (this.started.has(key)) {
      this.steps.push({ type: m[1], name: m[2], op: w[0], seconds: (now - this.started.get(key)!) / 1000 });
      this.started.delete(key);
    }
  }
}

/**
 * Counts the checkpoint saves of the file backend under `stacksDir` (it writes each save to a new file and
 * renames it onto <stack>.json) and sums the size each save had. inotify reports every rename; a save
 * whose file is already replaced when we stat it is counted with the newer size.
 */
export function watchCheckpoints(stacksDir: string, stack: string): { stop(): { saves: number; bytes: number } } {
  let saves = 0;
  let bytes = 0;
  const target = `${stack}.json`;
  const watchers = new Map<string, fs.FSWatcher>();
  const watchDir = (dir: string) => {
    if (watchers.has(dir)) return;
    watchers.set(dir, fs.watch(dir, (event, name) => {
      if (name === target && event === "rename") {
        try {
          bytes += fs.statSync(path.join(dir, target)).size;
          saves++;
        } catch {
          /* removed (destroy --remove) */
        }
      }
    }));
  };
  for (const d of fs.readdirSync(stacksDir, { withFileTypes: true })) if (d.isDirectory()) watchDir(path.join(stacksDir, d.name));
  watchDir(stacksDir);
  return {
    stop: () => {
      for (const w of watchers.values()) w.close();
      return { saves, bytes };
    },
  };
}

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}

export function loadavg(): string {
  return fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}
