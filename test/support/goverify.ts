import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface OracleCase {
  readonly name: string;
  readonly bundle: string;
  readonly chain: string;
  readonly host: string;
  readonly time?: string;
}

export interface OracleAnswer {
  readonly name: string;
  readonly trusted: boolean;
  readonly error?: string;
}

/** Builds test/oracle/goverify (Go's own crypto/x509) once per process and asks it about many cases at once. */
let binary: string | undefined;
export function goVerify(cases: readonly OracleCase[]): OracleAnswer[] {
  if (!binary) {
    binary = join(mkdtempSync(join(tmpdir(), "rt-goverify-")), "goverify");
    execFileSync("go", ["build", "-o", binary, join(__dirname, "..", "oracle", "goverify", "main.go")], { stdio: "pipe", env: { ...process.env, GOFLAGS: "-mod=mod", GO111MODULE: "on" } });
  }
  return JSON.parse(execFileSync(binary, { input: JSON.stringify(cases), encoding: "utf8" }));
}
