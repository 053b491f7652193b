/**
 * What applying a layer changeset needs from a layer: a small set of calls on
 * canonical paths, which the layer store implements (and an in-memory double in tests).
 *
 * @module
 */
import type { EntryAttrs } from "./entry.ts";
import type { TreeReader } from "./view.ts";

/** An entry to create, by type, with what only that type carries. */
export type NewEntry =
  | { type: "file"; size: number; data: AsyncIterable<Uint8Array> }
  | { type: "dir" }
  | { type: "symlink"; target: string }
  | { type: "char" | "block"; rdev: number }
  | { type: "fifo" };

/**
 * An active layer being written. Every path is absolute and canonical: the applier has
 * already resolved symlinked parents and `..` inside the layer's root, so an
 * implementation follows no symlinks. Reads see the merged tree (this layer over its
 * parents).
 */
export interface LayerTarget extends TreeReader {
  /**
   * Creates `path`, which is absent and whose parent is a directory, with `attrs`
   * (mode, owner, mtime, xattrs). A file's data must be read to the end.
   */
  create(path: string, entry: NewEntry, attrs: EntryAttrs): Promise<void>;
  /** Makes `path` (absent) a hard link to `existing` (not a directory; may be in a lower layer). */
  link(existing: string, path: string): Promise<void>;
  /**
   * Sets mode, owner, mtime and the whole xattr set of `path` (a directory whose
   * attributes an archive changes; the children stay).
   */
  setAttrs(path: string, attrs: EntryAttrs): Promise<void>;
  /** Removes `path` and everything below it, hiding whatever lower layers have there. */
  remove(path: string): Promise<void>;
  /**
   * Optional: records that directory `dir` hides all lower entries below it. The applier
   * has already removed them one by one, so this only lets a store keep one opaque mark
   * instead of many whiteouts (and report `opaque` in its changes).
   */
  markOpaque?(dir: string): Promise<void>;
}
