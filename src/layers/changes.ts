/**
 * A layer's own changes against its parent, read off its tables instead of comparing
 * two whole trees: every own directory entry is a change (a whiteout a deletion, a name
 * the parent lacks an addition, the rest modifications), so a diff costs what the layer
 * changed. Only inodes the layer copied up without an entry of its own (a chmod or a
 * write to a file from below, a new hardlink to one) need their paths looked up, and for
 * those alone the merged tree is walked.
 *
 * @module
 */
import { hasCode } from "../common/errors.ts";
import type { LayerFs } from "./fs.ts";
import { type Ino, isDir, WHITEOUT } from "./inode.ts";
import type { Layer } from "./layer.ts";
import { join, ROOT } from "./path.ts";
import type { LayerStats } from "./stats.ts";

/** One change, in the shape the interchange code reads (`Change` of src/interchange/view.ts). */
export interface LayerChange {
  /** The entry's path in the layer, from its root. */
  path: string;
  /** Whether the layer added the entry, changed what the parent had there, or deleted it (a whiteout). */
  kind: "added" | "modified" | "deleted";
  /** A directory made anew where the parent had one: nothing of the parent's shows below it. */
  opaque?: boolean;
}

async function lstatOrUndefined(fs: LayerFs | undefined, path: string): Promise<LayerStats | undefined> {
  if (!fs) return undefined;
  try {
    return await fs.lstat(path);
  } catch (e) {
    if (hasCode(e, "ENOENT") || hasCode(e, "ENOTDIR")) return undefined;
    throw e;
  }
}

/**
 * The changes of `layer` (read through `own`) against its parent (read through `below`,
 * undefined for a layer without one). The layer must not change while this runs.
 *
 * @example
 * ```ts ignore
 * for await (const c of layerChanges(layer, store.fs(name), store.fs(parentName))) console.log(c.kind, c.path);
 * ```
 */
export async function* layerChanges(layer: Layer, own: LayerFs, below: LayerFs | undefined): AsyncGenerator<LayerChange> {
  const t = layer.tables;
  const listed = new Set<string>();
  /** Own entries per own inode: an inode with more links than that also has paths below. */
  const ownLinks = new Map<Ino, number>();
  for (const [dir, names] of t.dirs) {
    for (const [name, ino] of names) {
      const path = join(dir, name);
      const before = await lstatOrUndefined(below, path);
      if (ino === WHITEOUT) {
        if (before) yield { path, kind: "deleted" };
        continue;
      }
      ownLinks.set(ino, (ownLinks.get(ino) ?? 0) + 1);
      listed.add(path);
      if (!before) {
        yield { path, kind: "added" };
        continue;
      }
      const inode = t.inodes.get(ino);
      const replaced = before.ino !== ino;
      const opaque = replaced && inode !== undefined && isDir(inode.mode) && before.isDirectory() && t.opaque.has(path);
      yield { path, kind: "modified", ...(opaque ? { opaque: true } : {}) };
    }
  }
  // Copied-up inodes whose (other) names live in the layers below.
  const wanted = new Set<Ino>();
  for (const [ino, inode] of t.inodes) {
    if (ino === layer.record.root || inode.nlink === 0) continue;
    const links = ownLinks.get(ino) ?? 0;
    if (links === 0 || (!isDir(inode.mode) && links < inode.nlink)) wanted.add(ino);
  }
  if (wanted.size > 0) yield* findPaths(own, ROOT, wanted, listed);
}

/** Walks the merged tree for entries that link an inode of `wanted`, skipping paths listed already. */
async function* findPaths(fs: LayerFs, dir: string, wanted: Set<Ino>, listed: Set<string>): AsyncGenerator<LayerChange> {
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (wanted.has(entry.ino) && !listed.has(path)) yield { path, kind: "modified" };
    if (entry.isDirectory()) yield* findPaths(fs, path, wanted, listed);
  }
}
