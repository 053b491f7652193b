/** Parsing the CLI's option values: sizes (`100G`, `64K`) and percentages (`10%`). @module */
import { InvalidArgumentError } from "commander";
import { parseSize } from "../common/units.ts";

/** A commander parser for byte sizes. */
export function sizeArg(value: string): number {
  const n = parseSize(value);
  if (n === undefined || n <= 0) throw new InvalidArgumentError(`'${value}' is not a size; use a number with an optional unit, such as 100G, 64K or 512M`);
  return n;
}

/** A commander parser for percentages: `10%` or `10`. */
export function percentArg(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*%?\s*$/.exec(value);
  const n = m ? Number(m[1]) : NaN;
  if (!Number.isFinite(n) || n < 0 || n > 100) throw new InvalidArgumentError(`'${value}' is not a percentage from 0 to 100, such as 10%`);
  return n;
}

/**
 * Splits `KEY:/path` into its key and path; undefined for a host path (one starting with
 * `/` or `.`, as docker cp has it). The key ends at the first `:/`, so keys may hold
 * colons (`sha256:ab12:/etc`); `KEY:rel` (no slash) splits at the first colon.
 */
export function layerPath(spec: string): { key: string; path: string } | undefined {
  const slash = spec.indexOf(":/");
  const i = slash > 0 ? slash : spec.indexOf(":");
  if (i <= 0 || spec.startsWith("/") || spec.startsWith(".")) return undefined;
  const p = spec.slice(i + 1);
  return { key: spec.slice(0, i), path: p.startsWith("/") ? p : `/${p}` };
}
