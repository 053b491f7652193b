/**
 * Entry names of layer archives: cleaning them into paths inside the layer, and the OCI
 * whiteout names (image-spec layer.md).
 *
 * @module
 */
import { storeError } from "../common/errors.ts";

/** A name starting with this removes the rest of the name from the layers below. */
export const WHITEOUT_PREFIX = ".wh.";
/** In a directory, hides every lower entry of that directory. */
export const OPAQUE_WHITEOUT = ".wh..wh..opq";
/** AUFS bookkeeping entries (`.wh..wh.plnk`, `.wh..wh.aufs`): not content, skipped. */
export const AUFS_META_PREFIX = ".wh..wh.";

/**
 * The components of an archive name, cleaned lexically inside the root, as Go's
 * `filepath.Clean(filepath.Join("/", name))` does: empty and `.` components dropped, `..`
 * removing the previous component and never climbing above the root.
 *
 * @example
 * ```ts
 * import { cleanComponents } from "./names.ts";
 * console.log(cleanComponents("./a/../../b//c/")); // ["b", "c"]
 * ```
 */
export function cleanComponents(name: string): string[] {
  const out: string[] = [];
  for (const c of name.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") out.pop();
    else out.push(c);
  }
  return out;
}

/** The absolute path of components: `/` for none. */
export function toPath(components: readonly string[]): string {
  return `/${components.join("/")}`;
}

/** `path` joined with one more component. */
export function childPath(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/** What a whiteout entry asks for. */
export type Whiteout =
  | { kind: "opaque" }
  | { kind: "whiteout"; name: string }
  | { kind: "meta" };

/**
 * The whiteout a base name stands for, undefined for an ordinary name. Whiteouts of `.`,
 * `..` or of nothing are invalid archives (they would remove the directory holding them
 * or its parent), as containerd rules.
 */
export function parseWhiteout(base: string, entryName: string): Whiteout | undefined {
  if (!base.startsWith(WHITEOUT_PREFIX)) return undefined;
  if (base === OPAQUE_WHITEOUT) return { kind: "opaque" };
  if (base.startsWith(AUFS_META_PREFIX)) return { kind: "meta" };
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (name === "" || name === "." || name === "..") {
    throw storeError("EINVAL", "apply", entryName, `invalid whiteout '${base}': it names no entry, or the directory itself or its parent`);
  }
  return { kind: "whiteout", name };
}
