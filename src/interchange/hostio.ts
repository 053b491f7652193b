/**
 * Writing streamed bytes to host files, the same way under Node and Deno.
 *
 * @module
 */
import fsp from "node:fs/promises";

/** An open file as both runtimes' `node:fs/promises` give it: only the call used here. */
export interface Writable {
  write(buffer: Uint8Array, offset: number, length: number): Promise<{ bytesWritten: number }>;
}

/** Writes `chunks` to the open file `fh` at its current position; returns the byte count. */
export async function writeAll(fh: Writable, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<number> {
  let bytes = 0;
  for await (const chunk of chunks) {
    let at = 0;
    while (at < chunk.length) at += (await fh.write(chunk, at, chunk.length - at)).bytesWritten;
    bytes += chunk.length;
  }
  return bytes;
}

/**
 * Writes `chunks` to a new file at `path` (failing if it exists, unless `flag` says
 * otherwise) and returns the byte count.
 */
export async function writeChunks(path: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, mode = 0o644, flag = "wx"): Promise<number> {
  const fh = await fsp.open(path, flag, mode);
  try {
    return await writeAll(fh, chunks);
  } finally {
    await fh.close();
  }
}
