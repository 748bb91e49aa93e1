import { DUMP_END, DUMP_HEADER } from "./probe-script";

/** One file the probe saw. */
export interface DumpFile {
  readonly path: string;
  /** Modification time (following symlinks), seconds since the epoch; 0 for a dangling link. */
  readonly mtime: number;
  /** Symlink target, when the path is a link. */
  readonly link?: string;
  /** Content, when the probe ships it (certificates and registry configuration). */
  readonly content?: Buffer;
  /** A private key was found in it: the probe never sends one. */
  readonly withheld?: boolean;
}

export interface DumpProcess {
  readonly name: string;
  readonly pid: number;
  /** Start time, from boot time + start ticks (resolution: about a second). */
  readonly startedAt: Date;
}

export interface Execution {
  readonly rc: number;
  readonly output: string;
}

/** Everything the probe printed, typed. */
export interface NodeDump {
  readonly uid: number;
  /** The node's clock when it ran the probe: what the runtime verifies certificates against. */
  readonly now: Date;
  readonly commands: ReadonlyMap<string, string>;
  readonly versions: ReadonlyMap<string, string>;
  readonly processes: readonly DumpProcess[];
  readonly files: ReadonlyMap<string, DumpFile>;
  readonly dirs: ReadonlyMap<string, number>;
  readonly unreadable: readonly string[];
  /** Entries of Go's certificate directories not shipped (links to the distribution roots, hash links). */
  readonly skipped: ReadonlyMap<string, number>;
  /** The bundle file Go loads (first readable of its list), when any. */
  readonly goFile?: string;
  /** `openssl s_client -showcerts` on the node, when openssl exists. */
  readonly chain?: Execution;
  /** `crictl pull`, when an image was given and crictl exists. */
  readonly pull?: Execution;
}

export class DumpError extends Error {}

const unb64 = (s: string): string => (s === "-" ? "" : Buffer.from(s, "base64").toString("utf8"));

/** Parses the probe's output; throws DumpError when it is not a complete dump. */
export function parseDump(stdout: string): NodeDump {
  const lines = stdout.split("\n").map((l) => l.replace(/\r$/, ""));
  const start = lines.indexOf(DUMP_HEADER);
  const end = lines.indexOf(DUMP_END);
  if (start < 0) throw new DumpError("the node printed no doctor dump (is /bin/sh a POSIX shell there?)");
  if (end < start) throw new DumpError("the doctor dump from the node is incomplete (the probe was interrupted)");
  const kv = new Map<string, string>();
  const commands = new Map<string, string>();
  const versions = new Map<string, string>();
  const files = new Map<string, DumpFile>();
  const dirs = new Map<string, number>();
  const unreadable: string[] = [];
  const skipped = new Map<string, number>();
  const execs = new Map<string, Execution>();
  const raw: { name: string; pid: number; ticks: number }[] = [];
  for (const line of lines.slice(start + 1, end)) {
    const f = line.split(" ");
    switch (f[0]) {
      case "K":
        kv.set(f[1], f[2] ?? "");
        break;
      case "C":
        commands.set(f[1], unb64(f[2]));
        break;
      case "V":
        versions.set(f[1], unb64(f[2]));
        break;
      case "P":
        raw.push({ name: f[1], pid: Number(f[2]), ticks: Number(f[3]) });
        break;
      case "F": {
        const path = unb64(f[1]);
        const content = f[4];
        files.set(path, {
          path,
          mtime: Number(f[2]),
          link: f[3] === "-" ? undefined : unb64(f[3]),
          content: content === "-" || content === "!" || content === undefined ? undefined : Buffer.from(content, "base64"),
          withheld: content === "!" || undefined,
        });
        break;
      }
      case "D":
        dirs.set(unb64(f[1]), Number(f[2]));
        break;
      case "U":
        unreadable.push(unb64(f[1]));
        break;
      case "S":
        skipped.set(unb64(f[1]), Number(f[2]));
        break;
      case "X":
        execs.set(f[1], { rc: Number(f[2]), output: unb64(f[3] ?? "-") });
        break;
      case "":
        break;
      default:
        throw new DumpError(`unexpected record in the doctor dump: "${line.slice(0, 60)}"`);
    }
  }
  const btime = Number(kv.get("btime"));
  const clk = Number(kv.get("clk")) || 100;
  const now = Number(kv.get("now"));
  if (!Number.isFinite(now) || now <= 0) throw new DumpError("the doctor dump carries no node time");
  return {
    uid: Number(kv.get("uid")),
    now: new Date(now * 1000),
    commands,
    versions,
    processes: raw.map((p) => ({ name: p.name, pid: p.pid, startedAt: new Date((btime + p.ticks / clk) * 1000) })),
    files,
    dirs,
    unreadable,
    skipped,
    goFile: kv.has("gofile") ? unb64(kv.get("gofile")!) : undefined,
    chain: execs.get("chain"),
    pull: execs.get("pull"),
  };
}
