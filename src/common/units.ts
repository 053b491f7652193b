/** Byte units and size parsing/formatting shared by the engine and the CLI. @module */

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

const suffixes: Record<string, number> = { "": 1, B: 1, K: KiB, M: MiB, G: GiB, T: TiB, P: 1024 * TiB };

/**
 * Parses a size such as `100G`, `64K`, `512`, `1.5GiB`, `2gb`. Binary units, as the
 * dm.* options use. Returns `undefined` for anything else.
 *
 * @example
 * ```ts
 * import { parseSize } from "./units.ts";
 * console.log(parseSize("64K")); // 65536
 * ```
 */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text) ?? /^\s*(\d+(?:\.\d+)?)\s*(b)\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = m[2].toUpperCase();
  const value = Number(m[1]) * suffixes[unit === "B" ? "" : unit];
  return Number.isFinite(value) ? Math.round(value) : undefined;
}

/**
 * Formats a byte count the way `docker info` does (decimal units, 4 significant digits).
 *
 * @example
 * ```ts
 * import { formatBytes } from "./units.ts";
 * console.log(formatBytes(65536)); // 65.54 kB
 * ```
 */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return i === 0 ? `${n} B` : `${Number(v.toPrecision(4))} ${units[i]}`;
}

/**
 * Formats a byte count in binary units (`64 KiB`, `1.5 GiB`), for tables and logs.
 *
 * @example
 * ```ts
 * import { formatIec } from "./units.ts";
 * console.log(formatIec(1536)); // 1.5 KiB
 * ```
 */
export function formatIec(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${Number(v.toFixed(2))} ${units[i]}`;
}
