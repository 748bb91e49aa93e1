import { CertSummary } from "../core/x509/cert";
import { Problem, formatProblem } from "../core/x509/problems";

/** Human rendering of problems, errors first. */
export function problemLines(problems: readonly Problem[]): string[] {
  return [...problems].sort((a, b) => (a.severity === b.severity ? 0 : a.severity === "error" ? -1 : 1)).map((p) => `  ${formatProblem(p)}`);
}

export function certLines(label: string, c: CertSummary & { sans?: string[] }): string[] {
  return [
    `${label}: ${c.subject}`,
    `    issuer:   ${c.issuer}`,
    ...(c.sans ? [`    SANs:     ${c.sans.join(", ") || "(none)"}`] : []),
    `    valid:    ${c.notBefore} .. ${c.notAfter}`,
    `    SHA-256:  ${c.sha256}`,
  ];
}
