/**
 * One layer's own tables: its directory entries (whiteouts included), its opaque
 * directories and its inodes — only what the layer changed, the rest shows through
 * from below. Every change is remembered until the next commit writes it to the
 * layer's journal, so a commit costs what changed, not the layer's size.
 *
 * Entries are grouped by directory (`dir → name → ino`), which serves both as the entry
 * table and as the children index that `readdir` merges.
 *
 * @module
 */
import { type Ino, type Inode } from "./inode.ts";
import { type LayerPath } from "./path.ts";

/** A directory's own entries in one layer: name → inode, or {@linkcode WHITEOUT}. */
export type DirEntries = Map<string, Ino>;

/** What changed since the last commit. */
export interface Dirty {
  /** Directory → names whose entry changed (set, whited out or dropped). */
  entries: Map<LayerPath, Set<string>>;
  opaque: Set<LayerPath>;
  inodes: Set<Ino>;
  /** Changes counted since the layer's base file was written, for compaction. */
  count: number;
}

/**
 * The tables of one layer.
 *
 * @example
 * ```ts
 * import { LayerTables } from "./tables.ts";
 * const t = new LayerTables();
 * t.setEntry("/", "etc", 7);
 * console.log(t.entry("/", "etc"), t.dirty.entries.get("/")); // 7 Set { "etc" }
 * ```
 */
export class LayerTables {
  readonly dirs = new Map<LayerPath, DirEntries>();
  readonly opaque = new Set<LayerPath>();
  readonly inodes = new Map<Ino, Inode>();
  dirty: Dirty = LayerTables.#clean();

  static #clean(): Dirty {
    return { entries: new Map(), opaque: new Set(), inodes: new Set(), count: 0 };
  }

  /** This layer's own entry for `name` in `dir`: an inode, WHITEOUT, or undefined (not here). */
  entry(dir: LayerPath, name: string): Ino | undefined {
    return this.dirs.get(dir)?.get(name);
  }

  setEntry(dir: LayerPath, name: string, ino: Ino): void {
    let d = this.dirs.get(dir);
    if (!d) this.dirs.set(dir, d = new Map());
    d.set(name, ino);
    this.#touchEntry(dir, name);
  }

  /** Drops this layer's own entry, so whatever is below shows through again. */
  dropEntry(dir: LayerPath, name: string): void {
    const d = this.dirs.get(dir);
    if (!d?.delete(name)) return;
    if (d.size === 0) this.dirs.delete(dir);
    this.#touchEntry(dir, name);
  }

  /** Drops every own entry of `dir` (whiteouts only, by the time a directory goes). */
  dropDir(dir: LayerPath): void {
    const d = this.dirs.get(dir);
    if (d) for (const name of [...d.keys()]) this.dropEntry(dir, name);
    this.setOpaque(dir, false);
  }

  setOpaque(dir: LayerPath, on: boolean): void {
    if (this.opaque.has(dir) === on) return;
    if (on) this.opaque.add(dir);
    else this.opaque.delete(dir);
    this.dirty.opaque.add(dir);
    this.dirty.count++;
  }

  /** Stores an inode this layer now holds (created here or copied up). */
  putInode(ino: Ino, inode: Inode): void {
    this.inodes.set(ino, inode);
    this.touchInode(ino);
  }

  /** Records that a held inode changed in place. */
  touchInode(ino: Ino): void {
    this.dirty.inodes.add(ino);
    this.dirty.count++;
  }

  dropInode(ino: Ino): void {
    if (this.inodes.delete(ino)) this.touchInode(ino);
  }

  /** True when something changed since the last commit. */
  get isDirty(): boolean {
    return this.dirty.entries.size > 0 || this.dirty.opaque.size > 0 || this.dirty.inodes.size > 0;
  }

  /** Takes the changes (for a journal record) and starts counting afresh. */
  takeDirty(): Dirty {
    const d = this.dirty;
    this.dirty = LayerTables.#clean();
    return d;
  }

  /** Puts back changes taken for a commit that failed, merging with any made since. */
  restoreDirty(d: Dirty): void {
    for (const [dir, names] of d.entries) for (const n of names) this.#touchEntry(dir, n);
    for (const p of d.opaque) this.dirty.opaque.add(p);
    for (const i of d.inodes) this.dirty.inodes.add(i);
  }

  /** Entries, opaque directories and inodes held: the size a base file would have. */
  get size(): number {
    let n = this.opaque.size + this.inodes.size;
    for (const d of this.dirs.values()) n += d.size;
    return n;
  }

  #touchEntry(dir: LayerPath, name: string): void {
    let s = this.dirty.entries.get(dir);
    if (!s) this.dirty.entries.set(dir, s = new Set());
    s.add(name);
    this.dirty.count++;
  }
}
