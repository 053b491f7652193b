/**
 * Names of layers in a served root: one directory entry per layer, so a key such as
 * containerd's `default/12/extract-123 sha256:...` must become one name: `%` and `/`
 * (and NUL, and a leading `.` that would make `.` or `..`) are percent-escaped, and a
 * name still longer than a directory entry allows is cut and given a hash suffix.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";

/** The longest directory entry name, in bytes. */
const NAME_MAX = 255;

/**
 * The entry name of layer `key` in a served root.
 *
 * @example
 * ```ts
 * import { servedName } from "./names.ts";
 * console.log(servedName("default/12/extract-1 sha256:ab")); // default%2F12%2Fextract-1 sha256:ab
 * ```
 */
export function servedName(key: string): string {
  let name = key.replace(/[%/\0]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0"));
  if (name.startsWith(".")) name = "%2E" + name.slice(1);
  if (Buffer.byteLength(name) <= NAME_MAX) return name;
  const hash = createHash("sha256").update(key).digest("hex").slice(0, 16);
  let head = name.slice(0, 200);
  while (Buffer.byteLength(head) > 200) head = head.slice(0, -1);
  return `${head}%~${hash}`;
}

/**
 * The key a served name stands for, when it is not a shortened one (undefined then).
 *
 * @example
 * ```ts
 * import { keyOfName } from "./names.ts";
 * console.log(keyOfName("default%2F12")); // default/12
 * ```
 */
export function keyOfName(name: string): string | undefined {
  if (name.includes("%~")) return undefined;
  return name.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}
