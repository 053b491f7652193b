/**
 * What the interchange code reads from a layer: its merged tree (for diff, export and
 * checkout) and, for diff, the layer's own changes against its parent.
 *
 * @module
 */
import type { EntryStat, Xattrs } from "./entry.ts";

/**
 * Reading a layer's merged tree. Paths are absolute (`/etc/passwd`), canonical, and
 * never followed through a final symlink.
 */
export interface TreeReader {
  /** The entry at `path`, or undefined when nothing is there (deleted entries included). */
  lstat(path: string): Promise<EntryStat | undefined>;
  /** Names in directory `path`, in any order. */
  readdir(path: string): Promise<string[]>;
  /** Target of the symlink at `path`, as stored. */
  readlink(path: string): Promise<string>;
}

/** A layer's merged tree with file data and extended attributes. */
export interface MergedView extends TreeReader {
  /** Data of the regular file at `path`, streamed. */
  read(path: string): AsyncIterable<Uint8Array>;
  /** Extended attributes of the entry itself; undefined or empty for none. */
  xattrs(path: string): Promise<Xattrs | undefined>;
}

/** One of a layer's own changes against its parent. */
export interface Change {
  /** Absolute path. */
  path: string;
  /**
   * `added`: not in the parent; `modified`: in the parent, changed (data, metadata, type
   * or link count); `deleted`: in the parent, not in this layer.
   */
  kind: "added" | "modified" | "deleted";
  /**
   * For a directory in this layer: it hides every entry the parent had below it (it was
   * removed and made again). Only then does the changeset carry an opaque whiteout.
   */
  opaque?: boolean;
}

/** A layer to diff: its merged tree and its own changes. */
export interface LayerSource extends MergedView {
  /**
   * The layer's changes against its parent, in any order. Below a deleted directory
   * nothing need be listed. A changed inode with several links is listed under each path
   * that links it in this layer.
   */
  changes(): AsyncIterable<Change>;
}
