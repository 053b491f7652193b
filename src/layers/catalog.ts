/**
 * The store's metadata as the pool commits it: the root record (every layer and its
 * files, the id counters), loading it back, and the commit participant that writes the
 * changed layers' base or journal files at each commit.
 *
 * Every pool commit carries the tables as they are, so block maps and tables are always
 * committed together. The pool commits by itself (to reclaim freed blocks, after a deferred
 * deletion, or when the application calls `pool.commit()`) only when the store allows it:
 * between its operations, never in the middle of one, where the tables are half-changed.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { Pool } from "../pool/pool.ts";
import type { CommitParticipant, DeviceId, MetadataTransaction } from "../pool/types.ts";
import { applyDelta, decodeBase, deltaSize, encodeBase, encodeDelta, needsCompaction, type StoredBase, type StoredDelta } from "./journal.ts";
import type { AllocLog } from "./alloc.ts";
import type { Layer, LayerFiles, LayerId } from "./layer.ts";
import type { Dirty } from "./tables.ts";

/** Format tag of the root record. */
export const ROOT_FORMAT = "thinstack-layers";
/** Version of the root record. */
export const ROOT_VERSION = 1;

/** The store's root record, kept by the pool. `files` names every live metadata file. */
export interface StoreRoot {
  format: typeof ROOT_FORMAT;
  version: number;
  files: string[];
  baseDevice: DeviceId;
  baseSize: number;
  nextIno: number;
  nextLayer: number;
  nextDevice: number;
  /** Per layer: id, base file, journal files in order. */
  layers: [LayerId, string, ...string[]][];
  /** Devices of removed layers whose deletion was deferred; finished at open if a crash cut it short. */
  retired: DeviceId[];
  /** Named records of the layers above (image records), each in a file of its own: name, file. */
  records?: [string, string][];
}

/** What the next root record holds besides the layers' files. */
export type RootCounters = Pick<StoreRoot, "nextIno" | "nextLayer" | "nextDevice" | "retired">;

/** A layer's share of a commit in progress, to apply on success or undo on failure. */
interface PendingLayer {
  layer: Layer;
  dirty: Dirty;
  record: boolean;
  alloc: boolean;
  /** The allocator's steps this commit stores (null: its whole map). */
  allocLog: AllocLog | null;
  files: LayerFiles;
}

/**
 * Loads every layer the root names (without parent links) from their base and journal files.
 *
 * @example
 * ```ts ignore
 * const layers = await loadLayers(pool, root, totalPages, pagesPerBlock);
 * ```
 */
export async function loadLayers(pool: Pool, root: StoreRoot, totalPages: number, pagesPerBlock: number): Promise<Layer[]> {
  const out: Layer[] = [];
  for (const [id, baseFile, ...journal] of root.layers) {
    const layer = decodeBase(await pool.readCbor(baseFile) as StoredBase, totalPages, pagesPerBlock);
    let journalChanges = 0;
    for (const file of journal) {
      const delta = await pool.readCbor(file) as StoredDelta;
      applyDelta(layer, delta, totalPages, pagesPerBlock);
      journalChanges += deltaSize(delta);
    }
    if (layer.id !== id) throw storeError("EIO", "open", baseFile, `the file holds layer ${layer.id}, the root record says ${id}`);
    layer.tables.takeDirty();
    layer.recordDirty = layer.allocDirty = false;
    layer.alloc.markCommitted();
    layer.files = { base: baseFile, journal, baseChanges: layer.tables.size, journalChanges };
    out.push(layer);
  }
  return out;
}

/**
 * Tracks which layers changed and commits them with the pool.
 *
 * @example
 * ```ts ignore
 * const catalog = new Catalog(pool, root, () => ({ layers, counters }));
 * pool.attach("layers", catalog.participant());
 * catalog.markDirty(layer);
 * await catalog.commit();
 * ```
 */
export class Catalog {
  readonly #pool: Pool;
  readonly #dirty = new Set<Layer>();
  readonly #state: () => { layers: Iterable<Layer>; counters: RootCounters };
  #root: StoreRoot;
  #pendingRoot: StoreRoot | undefined;
  #pending: PendingLayer[] = [];
  #committing = false;
  /** Named records: the value and, once committed, the file holding it. */
  readonly #records = new Map<string, { value: unknown; file?: string }>();
  readonly #dirtyRecords = new Set<string>();
  #pendingRecords: Map<string, string> | undefined;

  constructor(pool: Pool, root: StoreRoot, state: () => { layers: Iterable<Layer>; counters: RootCounters }) {
    this.#pool = pool;
    this.#root = root;
    this.#state = state;
  }

  /** The last committed root record. */
  get root(): StoreRoot {
    return this.#root;
  }

  /** True when some layer or record has changes to commit. */
  get hasChanges(): boolean {
    return this.#dirty.size > 0 || this.#dirtyRecords.size > 0;
  }

  /** Reads the named records the root lists (at open). */
  async loadRecords(): Promise<void> {
    for (const [name, file] of this.#root.records ?? []) this.#records.set(name, { value: await this.#pool.readCbor(file), file });
  }

  /** The record named `name`, or undefined. */
  record(name: string): unknown {
    return this.#records.get(name)?.value;
  }

  /** Every record, by name. */
  records(): [string, unknown][] {
    return [...this.#records].map(([name, r]) => [name, r.value]);
  }

  /** Sets (or, with undefined, deletes) record `name`; it commits with the next commit. */
  setRecord(name: string, value: unknown): void {
    if (value === undefined) this.#records.delete(name);
    else this.#records.set(name, { value, file: undefined });
    this.#dirtyRecords.add(name);
  }

  /** Notes that a layer changed (its tables, record or allocator). */
  markDirty(layer: Layer): void {
    this.#dirty.add(layer);
  }

  /** Forgets a removed layer's pending changes. */
  forget(layer: Layer): void {
    this.#dirty.delete(layer);
  }

  /**
   * What the pool calls at each commit. `hold` keeps the store between operations until
   * its release, or returns undefined when an operation is under way (its tables are
   * half-changed); the store's own commits need no hold, being its operations' last step.
   */
  participant(hold: () => (() => void) | undefined): CommitParticipant {
    return {
      holdForCommit: () => this.#committing ? () => {} : hold(),
      prepareCommit: (tx) => this.#prepareCommit(tx),
      liveFiles: () => (this.#pendingRoot ?? this.#root).files,
      committed: () => this.#committed(),
      aborted: () => this.#aborted(),
    };
  }

  /** Commits the pool with the changed layers; on failure the changes stay pending. Call under the store's write lock. */
  commit(): Promise<void> {
    return this.asCommitter(() => this.#pool.commit());
  }

  /**
   * Runs `fn`, a pool call that commits (a deferred deletion records itself), as one of the
   * store's own commits: the pool may commit the tables as they are. Call under the store's
   * write lock, with the tables consistent (the operation's last step).
   */
  async asCommitter<T>(fn: () => Promise<T>): Promise<T> {
    this.#committing = true;
    try {
      return await fn();
    } finally {
      this.#committing = false;
    }
  }

  #aborted(): void {
    this.#pendingRecords = undefined;
    for (const p of this.#pending) {
      p.layer.tables.restoreDirty(p.dirty);
      p.layer.recordDirty ||= p.record;
      p.layer.allocDirty ||= p.alloc;
      p.layer.alloc.restoreLog(p.allocLog);
      this.#dirty.add(p.layer);
    }
    this.#pending = [];
    this.#pendingRoot = undefined;
  }

  #committed(): void {
    for (const p of this.#pending) p.layer.files = p.files;
    if (this.#pendingRecords) {
      for (const [name, file] of this.#pendingRecords) {
        const r = this.#records.get(name);
        if (r) r.file = file;
      }
      this.#dirtyRecords.clear();
      this.#pendingRecords = undefined;
    }
    this.#root = this.#pendingRoot ?? this.#root;
    this.#pending = [];
    this.#pendingRoot = undefined;
  }

  async #prepareCommit(tx: MetadataTransaction): Promise<unknown> {
    this.#pending = [];
    this.#pendingRoot = undefined;
    for (const layer of this.#dirty) {
      if (layer.removed) continue;
      const allocLog = layer.alloc.takeLog();
      const p: PendingLayer = {
        layer, dirty: layer.tables.takeDirty(), record: layer.recordDirty,
        alloc: layer.allocDirty || (allocLog !== null && allocLog.length > 0), allocLog, files: layer.files,
      };
      layer.recordDirty = layer.allocDirty = false;
      this.#pending.push(p);
      const changes = p.dirty.entries.size + p.dirty.opaque.size + p.dirty.inodes.size + (p.record || p.alloc ? 1 : 0);
      if (changes === 0) continue;
      if (needsCompaction(layer.files, changes)) {
        const base = await tx.writeCbor(`layer-${layer.id}`, encodeBase(layer));
        p.files = { base, journal: [], baseChanges: layer.tables.size, journalChanges: 0 };
      } else {
        const delta = encodeDelta(layer, p.dirty, p.record, p.alloc ? p.allocLog : undefined);
        const file = await tx.writeCbor(`layer-${layer.id}-j`, delta);
        p.files = { ...layer.files, journal: [...layer.files.journal, file], journalChanges: layer.files.journalChanges + deltaSize(delta) };
      }
    }
    this.#dirty.clear();
    const { layers, counters } = this.#state();
    const pendingFiles = new Map(this.#pending.map((p) => [p.layer, p.files]));
    const files: string[] = [];
    const entries: StoreRoot["layers"] = [];
    for (const layer of layers) {
      const f = pendingFiles.get(layer) ?? layer.files;
      entries.push([layer.id, f.base!, ...f.journal]);
      files.push(f.base!, ...f.journal);
    }
    // Records are few and small: a changed one is written whole, in a file of its own.
    const recordFiles = new Map<string, string>();
    for (const [name, r] of this.#records) {
      const file = r.file !== undefined && !this.#dirtyRecords.has(name) ? r.file : await tx.writeCbor("record", r.value);
      recordFiles.set(name, file);
      files.push(file);
    }
    this.#pendingRecords = recordFiles;
    const devices = new Set(this.#pool.devices().map((d) => d.id));
    this.#pendingRoot = {
      format: ROOT_FORMAT, version: ROOT_VERSION, files, baseDevice: this.#root.baseDevice, baseSize: this.#root.baseSize,
      ...counters, retired: counters.retired.filter((d) => devices.has(d)), layers: entries,
      records: [...recordFiles],
    };
    return this.#pendingRoot;
  }
}
