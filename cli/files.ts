import { readFileSync } from "node:fs";
import { UsageError } from "./args";

/** Reads a file named on the command line; a missing or unreadable file is a usage error naming the flag. */
export function readInput(flag: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`${flag} ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
}
