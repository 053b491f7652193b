/**
 * Ownership of the data file's blocks: a reference count per block (how many mapping
 * leaves point at it), the blocks allocated in the open transaction, and the blocks
 * freed in it. A block the last commit still references is not handed out again
 * until the next commit, so a crash can never expose a reused block.
 *
 * @module
 */
import type { BlockNo } from "./types.ts";

/** Reference counts and the allocator of the pool's data blocks. */
export class SpaceMap {
  refs: Uint32Array;
  /** Blocks some device can see: exactly the blocks with a non-zero count. */
  used = 0;
  /** Freed in the open transaction but still referenced by the last commit. */
  readonly pending = new Set<BlockNo>();
  /** Allocated in the open transaction: the last commit does not reference them. */
  readonly fresh = new Set<BlockNo>();
  #cursor = 0;

  constructor(readonly total: number) {
    this.refs = new Uint32Array(total);
  }

  /** Blocks that can be handed out now. */
  get allocatable(): number {
    return this.refs.length - this.used - this.pending.size;
  }

  /** Takes a free block with a count of one, or returns -1 when none is free. */
  allocate(): BlockNo {
    if (this.allocatable <= 0) return -1;
    const n = this.refs.length;
    // Next fit: sequential writes get consecutive blocks, which the I/O path coalesces.
    for (let i = 0; i < n; i++) {
      const b = (this.#cursor + i) % n;
      if (this.refs[b] === 0 && !this.pending.has(b)) {
        this.refs[b] = 1;
        this.used++;
        this.fresh.add(b);
        this.#cursor = b + 1;
        return b;
      }
    }
    return -1;
  }

  ref(b: BlockNo): void {
    if (this.refs[b]++ === 0) this.used++;
  }

  /** Drops one reference; a block nothing references any more is freed (at once if fresh). */
  unref(b: BlockNo): void {
    if (this.refs[b] === 0) throw new Error(`Block ${b} has no reference to drop`);
    if (--this.refs[b] !== 0) return;
    this.used--;
    if (this.fresh.delete(b)) return;
    this.pending.add(b);
  }

  /** True when the last commit does not reference `b`, so it may be overwritten in place. */
  isFresh(b: BlockNo): boolean {
    return this.fresh.has(b);
  }

  /** After a commit: freed blocks become allocatable, and every live block is committed. */
  committed(): void {
    this.pending.clear();
    this.fresh.clear();
  }

  /** Cuts the map to `total` blocks; the caller checked that the cut blocks are free. */
  shrink(total: number): void {
    this.refs = this.refs.slice(0, total);
    (this as { total: number }).total = total;
    this.#cursor = 0;
  }

  /** Grows the map to `total` blocks (the data file grew). */
  grow(total: number): void {
    if (total < this.refs.length) throw new Error("A space map cannot shrink");
    const next = new Uint32Array(total);
    next.set(this.refs);
    this.refs = next;
    (this as { total: number }).total = total;
  }
}
