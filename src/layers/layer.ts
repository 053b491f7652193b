/**
 * A layer: a snapshot in containerd's sense. It has a key or name, a kind, a parent,
 * a thin device that is a snapshot of its parent's, its own tables, and the allocator
 * of its device's pages.
 *
 * @module
 */
import type { DeviceId } from "../pool/types.ts";
import type { PageAllocator } from "./alloc.ts";
import type { Ino } from "./inode.ts";
import { LayerTables } from "./tables.ts";

/** The store's internal id of a layer; never reused, unlike keys and names. */
export type LayerId = number;

/** containerd's snapshot kinds: writable, read-only, or an immutable image layer. */
export type LayerKind = "active" | "view" | "committed";

/** User labels of a layer (containerd's snapshot labels). */
export type Labels = Record<string, string>;

/** What the store keeps about a layer besides its tables (the stored form too). */
export interface LayerRecord {
  id: LayerId;
  /** The key of an active layer or a view; the name of a committed layer. */
  name: string;
  kind: LayerKind;
  /** The parent's id; 0 for none. */
  parent: LayerId;
  device: DeviceId;
  /** The root directory's inode; layers of one chain share it. */
  root: Ino;
  /** Milliseconds since the epoch. */
  created: number;
  updated: number;
  labels: Labels;
}

/** Where a layer's metadata lives: one base file and the journal files written since. */
export interface LayerFiles {
  base?: string;
  journal: string[];
  /** Changes in the base and in the journal, to decide when to compact. */
  baseChanges: number;
  journalChanges: number;
}

/**
 * One layer in memory.
 *
 * @example
 * ```ts
 * import { Layer } from "./layer.ts";
 * import { PageAllocator } from "./alloc.ts";
 * const l = new Layer({ id: 1, name: "k", kind: "active", parent: 0, device: 1, root: 1,
 *   created: 0, updated: 0, labels: {} }, PageAllocator.fresh(16, 16));
 * console.log(l.writable); // true
 * ```
 */
export class Layer {
  record: LayerRecord;
  parent: Layer | undefined;
  /** Layers whose parent this is. */
  children = 0;
  readonly tables = new LayerTables();
  alloc: PageAllocator;
  files: LayerFiles = { journal: [], baseChanges: 0, journalChanges: 0 };
  /** The record or the allocator changed since the last commit. */
  recordDirty = true;
  allocDirty = true;
  removed = false;
  /** The copy that took this layer's place when a transaction (an apply) succeeded. */
  replacedBy: Layer | undefined;
  /** A transaction works on a copy of this layer: it refuses changes until the copy replaces it. */
  inTransaction = false;
  /** Open file handles per inode: an unlinked inode lives until its last handle closes. */
  readonly handles = new Map<Ino, number>();

  constructor(record: LayerRecord, alloc: PageAllocator, parent?: Layer) {
    this.record = record;
    this.alloc = alloc;
    this.parent = parent;
  }

  get id(): LayerId {
    return this.record.id;
  }

  get writable(): boolean {
    return this.record.kind === "active";
  }

  /** True when nothing below or in this layer can change any more: lookups may be cached. */
  get frozen(): boolean {
    return this.record.kind !== "active";
  }

  /** True when this layer has changes the next commit must write. */
  get isDirty(): boolean {
    return this.recordDirty || this.allocDirty || this.tables.isDirty;
  }
}
