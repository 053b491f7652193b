/**
 * Resolving paths inside a layer's root, as containerd's archive code does with
 * continuity's `fs.RootPath`: symlinks are followed, but an absolute target starts at the
 * layer's root and `..` never climbs above it, so no name, link or symlinked parent in
 * an archive can reach outside the layer.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { toPath } from "./names.ts";
import type { TreeReader } from "./view.ts";

/** Symlinks followed in one resolution before giving up (continuity's limit). */
const MAX_LINKS = 255;

/**
 * The canonical components `components` lead to inside the root. Every symlink met is
 * followed, the last component's too only when `followLast`; components past a missing
 * entry are taken as they are. `dirs` holds paths known to be real directories, which
 * saves their lookups.
 *
 * @example
 * ```ts ignore
 * // with /localetc -> /etc:
 * await resolveInRoot(tree, ["localetc", "passwd"], false); // ["etc", "passwd"]
 * ```
 */
export async function resolveInRoot(
  tree: TreeReader,
  components: readonly string[],
  followLast: boolean,
  dirs?: ReadonlySet<string>,
): Promise<string[]> {
  let resolved: string[] = [];
  const pending = [...components].reverse(); // a stack: next component last
  let links = 0;
  let missing = false;
  while (pending.length) {
    const c = pending.pop()!;
    if (c === "" || c === ".") continue;
    if (c === "..") {
      resolved.pop();
      missing = false; // back at an ancestor, which may exist
      continue;
    }
    resolved.push(c);
    if (missing || (pending.length === 0 && !followLast)) continue;
    const path = toPath(resolved);
    if (dirs?.has(path)) continue;
    const st = await tree.lstat(path);
    if (!st) {
      missing = true;
      continue;
    }
    if (st.type !== "symlink") continue;
    if (++links > MAX_LINKS) throw storeError("ELOOP", "resolve", toPath(components), "too many levels of symbolic links");
    const target = await tree.readlink(path);
    resolved.pop();
    if (target.startsWith("/")) resolved = [];
    for (const t of target.split("/").reverse()) pending.push(t);
  }
  return resolved;
}
