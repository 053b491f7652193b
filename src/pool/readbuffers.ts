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

/** Buffers smaller than this are not kept: they cost little. */
export const MIN_SIZE = 64 * 1024;
/** Buffers kept of one size at most. */
const PER_SIZE = 16;

/**
 * Idle buffers by exact size, bounded in bytes. When full, the sizes given back least
 * recently give way, so that a run of odd sizes (the tails of files) does not keep out
 * the sizes a streaming reader uses over and over.
 */
export class ReadBuffers {
  /** Buffers by size; the map's order is the order sizes were last given back in. */
  readonly #free = new Map<number, ArrayBuffer[]>();
  #bytes = 0;

  /** Keeps at most `maxBytes` of idle buffers. */
  constructor(readonly maxBytes: number) {}

  /** Bytes held idle now. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * The size of buffer to use for a read of `length` bytes whose buffer is not handed
   * to the reader: a power of two from 64 KiB to 1 MiB, so that reads of odd lengths
   * share buffers (larger reads use their own length).
   */
  static sizeFor(length: number): number {
    if (length > 1 << 20) return length;
    let n = MIN_SIZE;
    while (n < length) n *= 2;
    return n;
  }

  /** A buffer of exactly `size` bytes to reuse (its contents are stale), or undefined. */
  take(size: number): ArrayBuffer | undefined {
    const list = this.#free.get(size);
    const buf = list?.pop();
    if (buf) this.#bytes -= size;
    return buf;
  }

  /** Gives back a buffer nothing refers to any more; kept, unless it is small or too big to keep. */
  give(buf: ArrayBuffer): void {
    const size = buf.byteLength;
    if (size < MIN_SIZE || size > this.maxBytes) return;
    const list = this.#free.get(size) ?? [];
    this.#free.delete(size);
    this.#free.set(size, list); // now the most recent size
    if (list.length >= PER_SIZE) return;
    list.push(buf);
    this.#bytes += size;
    for (const [s, l] of this.#free) {
      if (this.#bytes <= this.maxBytes) break;
      while (l.length && this.#bytes > this.maxBytes) {
        l.pop();
        this.#bytes -= s;
      }
      if (l.length === 0) this.#free.delete(s);
    }
  }

  /** Drops every idle buffer. */
  clear(): void {
    this.#free.clear();
    this.#bytes = 0;
  }
}
