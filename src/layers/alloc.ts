/**
 * Placement of file data in a layer's device, in 4 KiB pages, so that small files share
 * pool blocks and a layer costs about its content.
 *
 * Two things are tracked: the free pages (a sorted run list) and the blocks the layer
 * owns — blocks its device holds its own copy of, because it wrote them. A layer only
 * allocates in blocks that are wholly free (unmapped, so the first write takes a fresh
 * pool block) or owned. Writing into a free corner of a block a lower layer still uses
 * would copy that whole block for a few pages, and deleting the file later could not
 * give the block back. When frees leave a whole block free it is discarded, so the
 * block goes back to the pool if this layer was its only holder.
 *
 * @module
 */

/** A run of device pages. */
export interface PageRun {
  start: number;
  count: number;
}

/** Placement wishes for an allocation. */
export interface AllocHint {
  /** Try to continue at exactly this device page (appending to a file's last extent). */
  near?: number;
  /** For block-sized allocations: wanted `start % pagesPerBlock`, so file blocks line up with pool blocks. */
  align?: number;
}

/** The stored form: free runs and owned block runs, both flat `start, count` pairs. */
export interface StoredAlloc {
  free: number[];
  own: number[];
}

/**
 * The steps an allocator took since its last commit, as flat `op, start, count` triples,
 * so a journal records what changed rather than the whole map (whose size grows with
 * fragmentation, not with the change).
 */
export type AllocLog = number[];
const TAKE = 0;
const OWN = 1;
const GIVE = 2;
const DISOWN = 3;

/**
 * The page allocator of one layer.
 *
 * @example
 * ```ts
 * import { PageAllocator } from "./alloc.ts";
 * const a = PageAllocator.fresh(1024, 16);      // 1024 pages, 16 pages a block
 * const runs = a.allocate(3)!;                  // [{ start: 0, count: 3 }]
 * console.log(a.free(runs[0].start, 3));        // [0]: block 0 is wholly free again
 * ```
 */
export class PageAllocator {
  #runs: PageRun[];
  readonly #own: Set<number>;
  #freePages: number;
  /** Steps since the last commit; null when only a whole snapshot can say what changed. */
  #log: AllocLog | null = null;

  private constructor(readonly totalPages: number, readonly pagesPerBlock: number, runs: PageRun[], own: Set<number>) {
    this.#runs = runs;
    this.#own = own;
    this.#freePages = runs.reduce((n, r) => n + r.count, 0);
  }

  /** An allocator with every page free. */
  static fresh(totalPages: number, pagesPerBlock: number): PageAllocator {
    return new PageAllocator(totalPages, pagesPerBlock, totalPages > 0 ? [{ start: 0, count: totalPages }] : [], new Set());
  }

  /** A child layer's allocator: the same free pages, no blocks of its own yet. */
  inherit(): PageAllocator {
    return new PageAllocator(this.totalPages, this.pagesPerBlock, this.#runs.map((r) => ({ ...r })), new Set());
  }

  /** Pages not allocated (some of them may not be allocatable: see the module doc). */
  get freePages(): number {
    return this.#freePages;
  }

  /** Blocks this layer wrote and still holds. */
  get ownBlocks(): number {
    return this.#own.size;
  }

  /** True when this layer holds its own copy of `block`. */
  owns(block: number): boolean {
    return this.#own.has(block);
  }

  /** The free runs, in address order (read-only). */
  freeRuns(): readonly Readonly<PageRun>[] {
    return this.#runs;
  }

  /** True when any page of `[start, start+count)` is free. */
  overlapsFree(start: number, count: number): boolean {
    const r = this.#runs[this.#find(start)];
    return r !== undefined && r.start < start + count;
  }

  /** Records that the layer wrote into pages `[start, start+count)`: their blocks are its own now. */
  markOwn(start: number, count: number): void {
    this.#log?.push(OWN, start, count);
    const bg = this.pagesPerBlock;
    for (let b = Math.floor(start / bg); b <= Math.floor((start + count - 1) / bg); b++) this.#own.add(b);
  }

  /**
   * Takes `count` pages, contiguous when possible; undefined when there is not enough
   * allocatable space (nothing is taken then). The returned runs' blocks become owned.
   */
  allocate(count: number, hint: AllocHint = {}): PageRun[] | undefined {
    if (count <= 0) return [];
    const pieces = this.#allocatable();
    const take = (start: number, n: number, out: PageRun[]) => {
      out.push({ start, count: n });
      this.#remove(start, n);
      this.markOwn(start, n);
    };
    const out: PageRun[] = [];
    let want = count;
    if (hint.near !== undefined) {
      const p = pieces.find((p) => p.start <= hint.near! && hint.near! < p.start + p.count);
      if (p) {
        const n = Math.min(want, p.start + p.count - hint.near);
        take(hint.near, n, out);
        want -= n;
        if (want === 0) return out;
        return this.#rest(out, want, hint);
      }
    }
    return this.#rest(out, want, hint, pieces);
  }

  #rest(out: PageRun[], want: number, hint: AllocHint, known?: PageRun[]): PageRun[] | undefined {
    const pieces = known ?? this.#allocatable();
    const bg = this.pagesPerBlock;
    let pick: PageRun | undefined;
    if (hint.align !== undefined && want >= bg) {
      for (const p of pieces) {
        const d = p.start + ((hint.align - p.start % bg) % bg + bg) % bg;
        if (d + want <= p.start + p.count) {
          pick = { start: d, count: want };
          break;
        }
      }
    }
    if (!pick) {
      const p = pieces.find((p) => p.count >= want);
      if (p) pick = { start: p.start, count: want };
    }
    const commit = (runs: PageRun[]) => {
      for (const r of runs) {
        this.#remove(r.start, r.count);
        this.markOwn(r.start, r.count);
        out.push(r);
      }
      return out;
    };
    if (pick) return commit([pick]);
    // Fragmented: gather pieces in address order, or give back what the hint took.
    const runs: PageRun[] = [];
    for (const p of pieces) {
      if (want === 0) break;
      const n = Math.min(want, p.count);
      runs.push({ start: p.start, count: n });
      want -= n;
    }
    if (want > 0) {
      for (const r of out) this.#insert(r.start, r.count);
      return undefined;
    }
    return commit(runs);
  }

  /**
   * Gives pages back. Returns the blocks that are now wholly free, for the caller to
   * discard in the device; they are no longer owned.
   */
  free(start: number, count: number): number[] {
    if (count <= 0) return [];
    const run = this.#insert(start, count);
    const bg = this.pagesPerBlock;
    const out: number[] = [];
    const first = Math.max(Math.floor(start / bg), Math.ceil(run.start / bg));
    const last = Math.min(Math.floor((start + count - 1) / bg), Math.floor((run.start + run.count) / bg) - 1);
    for (let b = first; b <= last; b++) {
      out.push(b);
      this.#own.delete(b);
    }
    if (first <= last) this.#log?.push(DISOWN, first, last - first + 1);
    return out;
  }

  /** Says the allocator equals what the last commit stored: from now on its steps are logged. */
  markCommitted(): void {
    this.#log = [];
  }

  /**
   * The steps since the last commit (null: store a whole snapshot), and starts a new log;
   * on a failed commit, {@linkcode restoreLog} puts them back.
   */
  takeLog(): AllocLog | null {
    const log = this.#log;
    this.#log = [];
    return log;
  }

  /** Puts back steps {@linkcode takeLog} took, ahead of those logged since. */
  restoreLog(log: AllocLog | null): void {
    this.#log = log === null || this.#log === null ? null : [...log, ...this.#log];
  }

  /** Replays logged steps (a journal's) onto this allocator. */
  replay(log: AllocLog): void {
    for (let i = 0; i < log.length; i += 3) {
      const [op, start, count] = [log[i], log[i + 1], log[i + 2]];
      if (op === TAKE) this.#remove(start, count);
      else if (op === OWN) this.markOwn(start, count);
      else if (op === GIVE) this.#insert(start, count);
      else if (op === DISOWN) for (let b = start; b < start + count; b++) this.#own.delete(b);
      else throw new Error(`allocator log step ${op} is not one this build knows`);
    }
  }

  /** The free pages this layer may allocate now, merged into runs. */
  #allocatable(): PageRun[] {
    const bg = this.pagesPerBlock;
    const out: PageRun[] = [];
    const add = (s: number, e: number) => {
      if (e <= s) return;
      const last = out[out.length - 1];
      if (last && last.start + last.count === s) last.count += e - s;
      else out.push({ start: s, count: e - s });
    };
    for (const r of this.#runs) {
      const s = r.start;
      const e = r.start + r.count;
      const b0 = Math.floor(s / bg);
      const b1 = Math.floor((e - 1) / bg);
      if (b0 === b1) {
        if ((s === b0 * bg && e === (b0 + 1) * bg) || this.#own.has(b0)) add(s, e);
        continue;
      }
      const headEnd = (b0 + 1) * bg;
      if (s === b0 * bg || this.#own.has(b0)) add(s, headEnd);
      add(headEnd, b1 * bg);
      if (e === (b1 + 1) * bg || this.#own.has(b1)) add(b1 * bg, e);
    }
    return out;
  }

  /** Index of the first run ending after `page`. */
  #find(page: number): number {
    let lo = 0;
    let hi = this.#runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const r = this.#runs[mid];
      if (r.start + r.count <= page) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Takes `[start, start+count)` out of the free runs; the range must be free. */
  #remove(start: number, count: number): void {
    const i = this.#find(start);
    const r = this.#runs[i];
    if (!r || r.start > start || r.start + r.count < start + count) {
      throw new Error(`pages ${start}+${count} are not free`);
    }
    this.#log?.push(TAKE, start, count);
    const tail = r.start + r.count - (start + count);
    if (r.start === start) {
      if (tail === 0) this.#runs.splice(i, 1);
      else { r.start += count; r.count -= count; }
    } else {
      r.count = start - r.start;
      if (tail > 0) this.#runs.splice(i + 1, 0, { start: start + count, count: tail });
    }
    this.#freePages -= count;
  }

  /** Adds `[start, start+count)` to the free runs, merging; returns the run that holds it. */
  #insert(start: number, count: number): PageRun {
    const i = this.#find(start);
    const next = this.#runs[i];
    if (next && next.start < start + count) throw new Error(`pages ${start}+${count} are already free`);
    this.#log?.push(GIVE, start, count);
    const prev = this.#runs[i - 1];
    this.#freePages += count;
    if (prev && prev.start + prev.count === start) {
      prev.count += count;
      if (next && next.start === start + count) {
        prev.count += next.count;
        this.#runs.splice(i, 1);
      }
      return prev;
    }
    if (next && next.start === start + count) {
      next.start = start;
      next.count += count;
      return next;
    }
    const run = { start, count };
    this.#runs.splice(i, 0, run);
    return run;
  }

  /** The stored form. */
  encode(): StoredAlloc {
    const own: number[] = [];
    let prev = -2;
    for (const b of [...this.#own].sort((x, y) => x - y)) {
      if (b === prev + 1) own[own.length - 1]++;
      else own.push(b, 1);
      prev = b;
    }
    return { free: this.#runs.flatMap((r) => [r.start, r.count]), own };
  }

  /** Rebuilds what {@linkcode encode} stored. */
  static decode(s: StoredAlloc, totalPages: number, pagesPerBlock: number): PageAllocator {
    const runs: PageRun[] = [];
    for (let i = 0; i < s.free.length; i += 2) runs.push({ start: s.free[i], count: s.free[i + 1] });
    const own = new Set<number>();
    for (let i = 0; i < s.own.length; i += 2) for (let k = 0; k < s.own[i + 1]; k++) own.add(s.own[i] + k);
    return new PageAllocator(totalPages, pagesPerBlock, runs, own);
  }
}
