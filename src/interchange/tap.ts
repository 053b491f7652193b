/**
 * Passing a stream through while something looks at each chunk (a digest, a count).
 *
 * @module
 */

/** Yields `chunks` unchanged, calling `see` on each first. */
export async function* tap(chunks: AsyncIterable<Uint8Array>, see: (chunk: Uint8Array) => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) {
    see(chunk);
    yield chunk;
  }
}
