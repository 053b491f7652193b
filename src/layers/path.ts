/**
 * Paths inside a layer. Every table is keyed by canonical paths: absolute, no `.` or
 * `..`, no trailing slash, `/` for the root. Parsing is lexical; resolving `..` and
 * symbolic links is the resolver's job, since `..` after a symlink must be physical.
 *
 * @module
 */

/** A canonical path inside a layer: `/`, `/etc`, `/etc/hosts`. */
export type LayerPath = string;

/** The canonical path of the root directory. */
export const ROOT: LayerPath = "/";

/** The longest name of one directory entry, as on Linux. */
export const NAME_MAX = 255;

/**
 * Splits a path as the caller gave it into its components, dropping empty ones and `.`
 * (`..` is kept: only the resolver knows what it means). Relative paths are taken from
 * the layer's root, since a layer has no working directory.
 *
 * @example
 * ```ts
 * import { components } from "./path.ts";
 * console.log(components("a//b/./c/")); // ["a", "b", "c"]
 * ```
 */
export function components(path: string): string[] {
  const out: string[] = [];
  for (const c of path.split("/")) if (c !== "" && c !== ".") out.push(c);
  return out;
}

/**
 * Joins a canonical directory and one entry name.
 *
 * @example
 * ```ts
 * import { join } from "./path.ts";
 * console.log(join("/", "etc"), join("/etc", "hosts")); // /etc /etc/hosts
 * ```
 */
export function join(dir: LayerPath, name: string): LayerPath {
  return dir === ROOT ? `/${name}` : `${dir}/${name}`;
}

/**
 * The directory holding a canonical path (`/` for `/` itself).
 *
 * @example
 * ```ts
 * import { dirname } from "./path.ts";
 * console.log(dirname("/etc/hosts")); // /etc
 * ```
 */
export function dirname(path: LayerPath): LayerPath {
  const i = path.lastIndexOf("/");
  return i <= 0 ? ROOT : path.slice(0, i);
}

/**
 * The last component of a canonical path (`""` for the root).
 *
 * @example
 * ```ts
 * import { basename } from "./path.ts";
 * console.log(basename("/etc/hosts")); // hosts
 * ```
 */
export function basename(path: LayerPath): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * True when `path` is `ancestor` or lies below it.
 *
 * @example
 * ```ts
 * import { isWithin } from "./path.ts";
 * console.log(isWithin("/a/b", "/a"), isWithin("/ab", "/a")); // true false
 * ```
 */
export function isWithin(path: LayerPath, ancestor: LayerPath): boolean {
  return ancestor === ROOT || path === ancestor || path.startsWith(ancestor + "/");
}
