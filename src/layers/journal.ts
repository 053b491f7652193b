/**
 * A layer's metadata on disk: one base file holding all of its tables, then one journal
 * file per commit holding only what that commit changed. When the journal grows past a
 * quarter of the base, the next commit writes a new base instead and the old files go,
 * so a commit costs what changed and opening replays a bounded journal.
 *
 * All files are CBOR, written through the pool's transaction (new file names every
 * time, never overwritten), so they switch in atomically with the pool's metadata.
 *
 * @module
 */
import { type AllocLog, PageAllocator, type StoredAlloc } from "./alloc.ts";
import { decodeInode, encodeInode, type Ino, type StoredInode } from "./inode.ts";
import { Layer, type LayerFiles, type LayerRecord } from "./layer.ts";
import type { LayerPath } from "./path.ts";
import type { Dirty } from "./tables.ts";

/** Format tag of layer files. */
export const LAYER_FORMAT = 1;

/** A base file: the whole layer. Entries are grouped per directory as flat `name, ino` pairs. */
export interface StoredBase {
  v: typeof LAYER_FORMAT;
  record: LayerRecord;
  dirs: [LayerPath, (string | number)[]][];
  opaque: LayerPath[];
  inodes: [Ino, StoredInode][];
  alloc: StoredAlloc;
}

/** A journal file: one commit's changes. `null` means "gone". */
export interface StoredDelta {
  v: typeof LAYER_FORMAT;
  record?: LayerRecord;
  entries?: [LayerPath, string, Ino | null][];
  opaque?: [LayerPath, 0 | 1][];
  inodes?: [Ino, StoredInode | null][];
  /** The whole allocator (when its steps are not known). */
  alloc?: StoredAlloc;
  /** The allocator's steps in this commit: what changed, not the whole map. */
  allocLog?: AllocLog;
}

/** Journal files allowed before a compaction, whatever their size. */
const MAX_JOURNAL_FILES = 32;
/** Changes a journal may hold before compaction even for a small base. */
const MIN_JOURNAL_CHANGES = 4096;

/**
 * True when the next commit, carrying `pending` changes, should write a new base rather
 * than a journal file: there is no base yet, or the journal would outgrow a quarter of it.
 *
 * @example
 * ```ts
 * import { needsCompaction } from "./journal.ts";
 * console.log(needsCompaction({ base: "b", journal: [], baseChanges: 100000, journalChanges: 10 }, 1)); // false
 * ```
 */
export function needsCompaction(files: LayerFiles, pending: number): boolean {
  return files.base === undefined || files.journal.length >= MAX_JOURNAL_FILES ||
    files.journalChanges + pending > Math.max(MIN_JOURNAL_CHANGES, files.baseChanges / 4);
}

/**
 * Changes one journal file holds.
 *
 * @example
 * ```ts
 * import { deltaSize } from "./journal.ts";
 * console.log(deltaSize({ v: 1, entries: [["/", "a", 5]], inodes: [] })); // 1
 * ```
 */
export function deltaSize(d: StoredDelta): number {
  return (d.entries?.length ?? 0) + (d.opaque?.length ?? 0) + (d.inodes?.length ?? 0) + (d.record || d.alloc ? 1 : 0) +
    (d.allocLog ? d.allocLog.length / 3 : 0);
}

/**
 * The whole layer, for a base file.
 *
 * @example
 * ```ts ignore
 * const name = await tx.writeCbor(`layer-${layer.id}`, encodeBase(layer));
 * ```
 */
export function encodeBase(layer: Layer): StoredBase {
  const t = layer.tables;
  const dirs: StoredBase["dirs"] = [];
  for (const [dir, names] of t.dirs) {
    const flat: (string | number)[] = [];
    for (const [name, ino] of names) flat.push(name, ino);
    dirs.push([dir, flat]);
  }
  return {
    v: LAYER_FORMAT, record: layer.record, dirs, opaque: [...t.opaque],
    inodes: [...t.inodes].map(([ino, inode]) => [ino, encodeInode(inode)]), alloc: layer.alloc.encode(),
  };
}

/**
 * One commit's changes, for a journal file.
 *
 * @example
 * ```ts ignore
 * const name = await tx.writeCbor(`layer-${layer.id}-j`, encodeDelta(layer, layer.tables.takeDirty(), false, undefined));
 * ```
 */
export function encodeDelta(layer: Layer, dirty: Dirty, record: boolean, alloc: AllocLog | null | undefined): StoredDelta {
  const t = layer.tables;
  const out: StoredDelta = { v: LAYER_FORMAT };
  if (record) out.record = layer.record;
  // The allocator's steps; its whole map only when they are not known (a rebuilt allocator).
  if (alloc === null) out.alloc = layer.alloc.encode();
  else if (alloc && alloc.length) out.allocLog = alloc;
  if (dirty.entries.size) {
    out.entries = [];
    for (const [dir, names] of dirty.entries) for (const name of names) out.entries.push([dir, name, t.entry(dir, name) ?? null]);
  }
  if (dirty.opaque.size) out.opaque = [...dirty.opaque].map((p) => [p, t.opaque.has(p) ? 1 : 0]);
  if (dirty.inodes.size) {
    out.inodes = [...dirty.inodes].map((ino) => {
      const inode = t.inodes.get(ino);
      return [ino, inode ? encodeInode(inode) : null];
    });
  }
  return out;
}

/**
 * Builds a layer (without its parent link) from its base file.
 *
 * @example
 * ```ts ignore
 * const layer = decodeBase(await pool.readCbor(file) as StoredBase, totalPages, pagesPerBlock);
 * ```
 */
export function decodeBase(base: StoredBase, totalPages: number, pagesPerBlock: number): Layer {
  if (base.v !== LAYER_FORMAT) throw new Error(`layer format ${base.v} is not one this build reads`);
  const layer = new Layer(base.record, PageAllocator.decode(base.alloc, totalPages, pagesPerBlock));
  const t = layer.tables;
  for (const [dir, flat] of base.dirs) {
    const names = new Map<string, Ino>();
    for (let i = 0; i < flat.length; i += 2) names.set(flat[i] as string, flat[i + 1] as number);
    t.dirs.set(dir, names);
  }
  for (const p of base.opaque) t.opaque.add(p);
  for (const [ino, s] of base.inodes) t.inodes.set(ino, decodeInode(s));
  return layer;
}

/**
 * Replays one journal file onto a layer.
 *
 * @example
 * ```ts ignore
 * for (const f of journal) applyDelta(layer, await pool.readCbor(f) as StoredDelta, totalPages, pagesPerBlock);
 * ```
 */
export function applyDelta(layer: Layer, d: StoredDelta, totalPages: number, pagesPerBlock: number): void {
  const t = layer.tables;
  if (d.record) layer.record = d.record;
  if (d.alloc) layer.alloc = PageAllocator.decode(d.alloc, totalPages, pagesPerBlock);
  if (d.allocLog) layer.alloc.replay(d.allocLog);
  for (const [dir, name, ino] of d.entries ?? []) {
    if (ino === null) t.dropEntry(dir, name);
    else t.setEntry(dir, name, ino);
  }
  for (const [p, on] of d.opaque ?? []) t.setOpaque(p, on === 1);
  for (const [ino, s] of d.inodes ?? []) {
    if (s === null) t.inodes.delete(ino);
    else t.inodes.set(ino, decodeInode(s));
  }
}
