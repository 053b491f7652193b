/**
 * A layer's changes found by walking it beside its parent, as continuity's double-walk
 * diff does, for a store that does not track them: entries are the same when inode,
 * type, metadata and change time agree. It reads every entry of both trees, so a store
 * that knows its own changes should list them instead.
 *
 * @module
 */
import type { EntryStat } from "./entry.ts";
import { childPath } from "./names.ts";
import type { Change, TreeReader } from "./view.ts";

async function differs(parent: TreeReader, layer: TreeReader, path: string, a: EntryStat, b: EntryStat): Promise<boolean> {
  if (a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || a.size !== b.size || a.nlink !== b.nlink || a.rdev !== b.rdev) return true;
  if (a.mtimeMs !== b.mtimeMs || a.ctimeMs !== b.ctimeMs) return true;
  return a.type === "symlink" && await parent.readlink(path) !== await layer.readlink(path);
}

async function* walk(parent: TreeReader, layer: TreeReader, dir: string, below: boolean): AsyncGenerator<Change> {
  const names = new Set(await layer.readdir(dir));
  if (below) for (const n of await parent.readdir(dir)) names.add(n);
  for (const name of [...names].sort()) {
    const path = childPath(dir, name);
    const b = await layer.lstat(path);
    const a = below ? await parent.lstat(path) : undefined;
    if (!b) {
      yield { path, kind: "deleted" };
      continue;
    }
    if (!a) {
      yield { path, kind: "added" };
      if (b.type === "dir") yield* walk(parent, layer, path, false);
      continue;
    }
    const replaced = a.ino !== b.ino || a.type !== b.type;
    if (replaced) yield { path, kind: "modified", ...(a.type === "dir" && b.type === "dir" ? { opaque: true } : {}) };
    else if (await differs(parent, layer, path, a, b)) yield { path, kind: "modified" };
    if (b.type === "dir") yield* walk(parent, layer, path, !replaced && a.type === "dir");
  }
}

/**
 * The changes of `layer` against `parent` (undefined for a layer with none): added,
 * modified, deleted, and `opaque` for a directory that is a new inode where the parent
 * had a directory.
 *
 * @example
 * ```ts ignore
 * const changes = () => walkChanges(fsTarget(store.fs(parentName)), fsTarget(store.fs(name)));
 * ```
 */
export function walkChanges(parent: TreeReader | undefined, layer: TreeReader): AsyncGenerator<Change> {
  const none: TreeReader = { lstat: () => Promise.resolve(undefined), readdir: () => Promise.resolve([]), readlink: () => Promise.reject(new Error("none")) };
  return walk(parent ?? none, layer, "/", parent !== undefined);
}
