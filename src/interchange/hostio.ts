/**
 * Writing streamed bytes to host files, the same way under Node and Deno.
 *
 * @module
 */
import fsp from "node:fs/promises";

/**
 * Writes `chunks` to a new file at `path` (failing if it exists, unless `flag` says
 * otherwise) and returns the byte count.
 */
export async function writeChunks(path: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, mode = 0o644, flag = "wx"): Promise<number> {
  const fh = await fsp.open(path, flag, mode);
  let bytes = 0;
  try {
    for await (const chunk of chunks) {
      let at = 0;
      while (at < chunk.length) at += (await fh.write(chunk, at, chunk.length - at)).bytesWritten;
      bytes += chunk.length;
    }
  } finally {
    await fh.close();
  }
  return bytes;
}
