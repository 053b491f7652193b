/**
 * Byte sources: the shapes a layer or image blob can arrive in, read as one stream of
 * chunks.
 *
 * @module
 */
import fs from "node:fs";
import { storeError } from "../common/errors.ts";

/**
 * Where bytes come from: a file path (string or `file:` URL), bytes in memory, a Node
 * readable or any async iterable of byte chunks, or a web `ReadableStream`.
 */
export type ByteSource =
  | string
  | URL
  | Uint8Array
  | AsyncIterable<Uint8Array>
  | ReadableStream<Uint8Array>;

/** Chunk size of file reads: large enough that per-chunk overheads vanish. */
const READ_CHUNK = 1 << 20;

function isWebStream(s: unknown): s is ReadableStream<Uint8Array> {
  return typeof (s as ReadableStream)?.getReader === "function";
}

/** A short description of a source, for error messages. */
export function describeSource(source: ByteSource): string {
  if (typeof source === "string") return source;
  if (source instanceof URL) return source.href;
  if (source instanceof Uint8Array) return "<bytes>";
  return "<stream>";
}

/**
 * Reads `source` as a sequence of byte chunks. Each chunk is a fresh buffer the caller may
 * keep (tar parsing holds on to slices of them).
 *
 * @example
 * ```ts
 * import { byteChunks } from "./source.ts";
 * let n = 0;
 * for await (const chunk of byteChunks(new Uint8Array(10))) n += chunk.length;
 * console.log(n); // 10
 * ```
 */
export async function* byteChunks(source: ByteSource): AsyncGenerator<Uint8Array> {
  if (typeof source === "string" || source instanceof URL) {
    // createReadStream allocates a new buffer per chunk, which the consumers rely on.
    yield* fs.createReadStream(source, { highWaterMark: READ_CHUNK }) as AsyncIterable<Uint8Array>;
    return;
  }
  if (source instanceof Uint8Array) {
    if (source.length) yield source;
    return;
  }
  if (isWebStream(source)) {
    const reader = source.getReader();
    let done = false;
    try {
      for (let r = await reader.read(); !(done = r.done); r = await reader.read()) yield checkChunk(r.value);
    } finally {
      // A consumer that stops early (an error in the archive) has no more use for the rest.
      if (!done) await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
    return;
  }
  for await (const chunk of source as AsyncIterable<Uint8Array>) yield checkChunk(chunk);
}

function checkChunk(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  // A Node stream with an encoding set yields strings: the bytes are already lost.
  throw storeError("EINVAL", "read", undefined, "a byte source yielded something other than bytes (a stream with an encoding set?)");
}
