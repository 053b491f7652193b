/** Parsing the CLI's option values: sizes (`100G`, `64K`) and percentages (`10%`). @module */
import { type Command, InvalidArgumentError } from "commander";
import { storeError } from "../common/errors.ts";
import { parseSize } from "../common/units.ts";
import { MAX_DATA_BLOCKS } from "../pool/maintenance.ts";

/** A commander parser for byte sizes. */
export function sizeArg(value: string): number {
  const n = parseSize(value);
  if (n === undefined || n <= 0) throw new InvalidArgumentError(`'${value}' is not a size; use a number with an optional unit, such as 100G, 64K or 512M`);
  return n;
}

const UNITS: [string, number][] = [["P", 2 ** 50], ["T", 2 ** 40], ["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]];

/**
 * A byte count as a user types it: in the largest unit that gives a whole number (`100G`,
 * `64K`, `1536M`), else in bytes. {@linkcode sizeArg} reads it back to the same count.
 */
export function sizeText(bytes: number): string {
  for (const [unit, size] of UNITS) if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

/**
 * Shows the defaults of `cmd`'s size options (its subcommands' too) as a user types them,
 * `(default: 100G)`, where commander would print the byte count.
 */
export function showSizeDefaults(cmd: Command): void {
  for (const c of [cmd, ...cmd.commands]) {
    for (const o of c.options) {
      if (o.parseArg === (sizeArg as unknown) && typeof o.defaultValue === "number" && o.defaultValueDescription === undefined) {
        o.defaultValueDescription = sizeText(o.defaultValue);
      }
    }
  }
}

/**
 * Checks a data size (`--data-size` of `syscall`, init or resize) against the most blocks
 * a pool may have at `blockSize`: EINVAL, naming the largest size allowed, when it is over.
 * `blockSizeFixed` says whether a larger block size could be picked (at init, not resize).
 */
export function checkDataSize(dataSize: number, blockSize: number, syscall: string, root: string, blockSizeFixed: boolean): void {
  const blocks = Math.floor(dataSize / blockSize);
  if (blocks <= MAX_DATA_BLOCKS) return;
  const largest = MAX_DATA_BLOCKS * blockSize;
  throw storeError("EINVAL", syscall, root,
    `--data-size '${sizeText(dataSize)}' is ${blocks} blocks of ${sizeText(blockSize)}, over the ${MAX_DATA_BLOCKS} blocks a pool takes ` +
    `(it keeps a 32-bit reference count per block in memory); the largest data size with ${sizeText(blockSize)} blocks is ${sizeText(largest)}` +
    (blockSizeFixed ? "" : "; a larger --block-size allows more"));
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
