/**
 * Moving bytes through streams with backpressure: feeding an async iterable into a
 * writable (a zlib transform, a tar parser) and reading a transform's output, with
 * errors passed along both ways and everything closed when the reader stops early.
 *
 * @module
 */

/** What `feed` writes to: a Node writable or a streamx one (tar-stream). */
export interface WritableLike {
  write(chunk: Uint8Array): boolean;
  end(): unknown;
  destroy(err?: Error): unknown;
  readonly destroyed: boolean;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
  off(event: string, fn: (...args: unknown[]) => void): unknown;
}

/** Waits until `w` can take more, or is closed (then writing stops). */
export function writable(w: WritableLike): Promise<void> {
  // A destroyed stream has closed already: its "close" will not come again.
  if (w.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      w.off("drain", done);
      w.off("close", done);
      resolve();
    };
    w.on("drain", done);
    w.on("close", done);
  });
}

/**
 * Writes every chunk of `input` to `w`, then ends it. A failure of `input` destroys `w`
 * with that error, so whoever reads `w`'s output sees it; a destroyed `w` stops the feed.
 */
export async function feed(input: AsyncIterable<Uint8Array>, w: WritableLike): Promise<void> {
  try {
    for await (const chunk of input) {
      if (w.destroyed) return;
      if (!w.write(chunk)) await writable(w);
      if (w.destroyed) return;
    }
    w.end();
  } catch (e) {
    w.destroy(e as Error);
  }
}

/** A transform: Node's zlib streams are the ones used here. */
export interface TransformLike extends WritableLike, AsyncIterable<Uint8Array> {}

/**
 * The output of `transform` fed with `input`. Stopping early destroys the transform and
 * closes `input`.
 */
export async function* pump(input: AsyncIterable<Uint8Array>, transform: TransformLike): AsyncGenerator<Uint8Array> {
  const feeding = feed(input, transform);
  try {
    for await (const chunk of transform) yield chunk;
  } finally {
    transform.destroy();
    await feeding;
  }
}
