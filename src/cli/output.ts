/** How the CLI prints: tables, JSON, key/value lists, and errors as one line. @module */

/** Prints rows as aligned columns under a header. */
export function table(header: string[], rows: (string | number)[][]): string {
  const all = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ")).join("\n") + "\n";
}

/** Prints `Key: value` lines, indented as docker info does. */
export function fields(pairs: [string, string][], indent = " "): string {
  return pairs.map(([k, v]) => `${indent}${k}: ${v}`).join("\n") + "\n";
}

/** JSON with bigint and Map support. */
export function json(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? Number(v) : v instanceof Map ? Object.fromEntries(v) : v), 2) + "\n";
}

/** An error as the one line the CLI prints for it: `thinstack: <message>`. */
export function errorLine(e: unknown): string {
  const message = (e as { message?: unknown })?.message;
  const text = typeof message === "string" && message ? message : String(e);
  return `thinstack: ${text.trim().replace(/\s*\n\s*/g, "; ")}\n`;
}

/**
 * Thrown by a command that has said what it had to say (a report, or one error line per
 * failed item) and must end with exit code `code`.
 */
export class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}
