/** The layer store's public shapes. @module */
import type { PoolSettings } from "../pool/types.ts";
import type { CacheOptions } from "./cache.ts";
import type { Labels, LayerKind } from "./layer.ts";

/** A layer's labels, and its kind: active, view or committed. */
export type { Labels, LayerKind } from "./layer.ts";

/** Options of {@linkcode LayerStore.open}. */
export interface LayerStoreOptions {
  /** Create the store (and its pool) when `dir` holds none. */
  create?: boolean;
  /** Size of the pool's data file, when creating. Default: 100 GiB (sparse); with `dataDevice`, the whole device. */
  dataSize?: number;
  /** Direct mode, when creating: the block device that holds the pool's data (see `PoolCreateOptions.dataDevice`). */
  dataDevice?: string;
  /** Pool block size, when creating: a multiple of 64 KiB. Default 64 KiB. */
  blockSize?: number;
  /** Bytes of metadata the pool may use, when creating. Default: the pool's (2 GiB). */
  metadataSize?: number;
  /** Pool settings (dm.min_free_space, autoextend), when creating. */
  settings?: Partial<PoolSettings>;
  /** Size of the base device every layer chain starts from (Docker's dm.basesize), when creating. Default 10 GiB. */
  baseSize?: number;
  /** Bounds of the lookup caches. */
  cache?: CacheOptions;
  /** I/O worker threads of the pool. */
  ioThreads?: number;
  /** Finish deferred deletions an earlier process left pending (default true); see `PoolOpenOptions`. */
  resumeDeletions?: boolean;
  /**
   * Open a damaged store for `check` and `repair`: a layer whose parent is missing is set
   * aside (check reports it, repair drops it and the layers above it) instead of failing
   * the open with EIO. Other calls must not use such a layer.
   */
  salvage?: boolean;
  /** Bytes the pool reads ahead at most (default 32 MiB, 0 off); see `PoolOpenOptions`. */
  readahead?: number;
}

/** What {@linkcode LayerStore.stat} says about a layer: containerd's `snapshots.Info`. */
export interface LayerInfo {
  /** The key of an active layer or view, the name of a committed layer. */
  name: string;
  /** The parent's name; `""` for none, as containerd has it. */
  parent: string;
  /** Active (writable), view (read-only) or committed (read-only, can be a parent). */
  kind: LayerKind;
  /** When the layer was made: prepared, viewed, or committed (a commit makes it anew). */
  created: Date;
  /** When its record last changed (made, labels updated, replaced by an apply); file changes do not count. */
  updated: Date;
  /** Its labels: free-form keys and values, as containerd's. */
  labels: Labels;
}

/** What a layer alone holds (containerd's `snapshots.Usage`). */
export interface LayerUsage {
  /** Bytes: pool blocks only this layer's device holds, plus inline file data and link targets. */
  size: number;
  /** Inodes the layer holds itself (created or copied up). */
  inodes: number;
}

/** Options of {@linkcode LayerStore.prepare}, {@linkcode LayerStore.view} and {@linkcode LayerStore.commit}. */
export interface LayerOptions {
  /** Labels of the new layer. A commit without them keeps the active layer's. */
  labels?: Labels;
}

/** What {@linkcode LayerStore.update} takes: the layer's name and the new labels. */
export interface LayerUpdate {
  /** The layer to change: a key or a committed name. */
  name: string;
  /** The new labels, or the values of the `labels.<key>` field paths (a key missing here is deleted). */
  labels?: Labels;
}

/** Options of {@linkcode LayerStore.remove}. */
export interface RemoveOptions {
  /**
   * Free the device's blocks in the background (Docker's dm.use_deferred_deletion): the
   * layer is gone at once; {@linkcode Pool.settle} waits for the blocks.
   */
  deferred?: boolean;
}

/** What {@linkcode LayerStore.fsck} found. */
export interface FsckReport {
  /** Pool blocks the layers' files need, by the store's tables. */
  expectedBlocks: number;
  /** Pool blocks in use. */
  usedBlocks: number;
  /** One line per inconsistency; empty when all is well. */
  problems: string[];
}
