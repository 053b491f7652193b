/**
 * Read buffers kept for reuse. A worker's read fills a buffer and transfers it to the
 * main thread; a buffer new each time counts as fresh external memory there, and on Node
 * that memory is reclaimed only by full mark-compact collections, one every few tens of
 * MiB read (a third of a streaming reader's time, measured). Buffers whose bytes have
 * been copied out are given back here and go to the next read instead (transferred to
 * the worker and back, which both runtimes do without copying).
 *
 * @module
 */

/** Reads smaller than this take new buffers: they cost little, and their sizes vary most. */
const MIN_SIZE = 64 * 1024;
/** Buffers kept of one size at most. */
const PER_SIZE = 16;

/** Idle buffers by exact size, bounded in bytes. */
export class ReadBuffers {
  readonly #free = new Map<number, ArrayBuffer[]>();
  #bytes = 0;

  /** Keeps at most `maxBytes` of idle buffers. */
  constructor(readonly maxBytes: number) {}

  /** Bytes held idle now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** A buffer of exactly `size` bytes to reuse (its contents are stale), or undefined. */
  take(size: number): ArrayBuffer | undefined {
    const list = this.#free.get(size);
    const buf = list?.pop();
    if (buf) this.#bytes -= size;
    return buf;
  }

  /** Gives back a buffer nothing refers to any more; kept if there is room. */
  give(buf: ArrayBuffer): void {
    const size = buf.byteLength;
    if (size < MIN_SIZE || this.#bytes + size > this.maxBytes) return;
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, list = []);
    if (list.length >= PER_SIZE) return;
    list.push(buf);
    this.#bytes += size;
  }

  /** Drops every idle buffer. */
  clear(): void {
    this.#free.clear();
    this.#bytes = 0;
  }
}
