/**
 * Buffers for file data streamed out of a layer, which a consumer may give back once it
 * is done with them. A stream of new 1 MiB buffers costs the main thread an allocation
 * (zeroed) per MiB and, on Node, garbage collection that the measurements here put at a
 * quarter of a diff's time; the library's own sinks (`writeChunks`: diff and export to
 * files, checkout) give each chunk back after writing it, so the next read fills it
 * again. A chunk nobody gives back is simply the consumer's: nothing touches it again.
 *
 * @module
 */

/** Size of a data chunk. */
export const CHUNK_SIZE = 1 << 20;
/** Idle chunks kept at most. */
const SPARE = 8;

const spare: ArrayBuffer[] = [];
/** Buffers handed out and not given back. */
const lent = new WeakSet<ArrayBuffer>();

/**
 * A buffer of {@linkcode CHUNK_SIZE} bytes to fill (its contents are stale): a chunk
 * given back earlier, or a new one.
 *
 * @example
 * ```ts
 * import { giveChunk, takeChunk } from "./chunks.ts";
 * const a = takeChunk();
 * giveChunk(a.subarray(0, 10)); // done with it: the next take reuses its buffer
 * console.log(takeChunk().buffer === a.buffer); // true
 * ```
 */
export function takeChunk(): Uint8Array {
  const buf = spare.pop() ?? new ArrayBuffer(CHUNK_SIZE);
  lent.add(buf);
  return new Uint8Array(buf);
}

/**
 * Gives back `chunk` (or a view of it) once nothing reads or keeps it any more. Chunks
 * that {@linkcode takeChunk} did not hand out, or already came back, are ignored.
 */
export function giveChunk(chunk: Uint8Array): void {
  const buf = chunk.buffer as ArrayBuffer;
  if (!lent.has(buf)) return;
  lent.delete(buf);
  if (spare.length < SPARE) spare.push(buf);
}

/**
 * Counts `buffer` as handed out, so {@linkcode giveChunk} takes it back: for a chunk's
 * buffer that went to a worker thread and came back (a transfer makes a new
 * `ArrayBuffer` object on return). Buffers of another size are left alone.
 */
export function adoptChunk(buffer: ArrayBuffer): void {
  if (buffer.byteLength === CHUNK_SIZE) lent.add(buffer);
}
