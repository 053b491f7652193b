/**
 * Writing streamed bytes to host files, the same way under Node and Deno.
 *
 * @module
 */
import fsp from "node:fs/promises";
import { giveChunk } from "./chunks.ts";

/**
 * A host file written front to back, with room left for bytes that are known only
 * later (a tar header that needs a size or a digest). One write runs while the caller
 * prepares the next chunk; each chunk is given back (chunks.ts) once written, so pass
 * only chunks nothing else still reads.
 *
 * @example
 * ```ts ignore
 * const f = await HostFile.create("out.tar");
 * const header = f.skip(512);
 * for await (const c of data) await f.append(c);
 * await f.writeAt(header, makeHeader());
 * await f.close();
 * ```
 */
export class HostFile {
  #position = 0;
  #writing: Promise<void> | undefined;

  private constructor(readonly path: string, private readonly fh: fsp.FileHandle) {}

  /** Opens `path` for writing (by default a new file: EEXIST if there is one). */
  static async create(path: string, mode = 0o644, flag = "wx"): Promise<HostFile> {
    return new HostFile(path, await fsp.open(path, flag, mode));
  }

  /** Bytes appended or skipped so far: where the next append goes. */
  get position(): number {
    return this.#position;
  }

  /** Appends `chunk`; returns once the previous write is done and this one has started. */
  async append(chunk: Uint8Array): Promise<void> {
    await this.#writing;
    const at = this.#position;
    this.#position += chunk.byteLength;
    this.#writing = this.#write(chunk, at).then(() => giveChunk(chunk));
    // Reported by the next call; meanwhile not an unhandled rejection.
    this.#writing.catch(() => {});
  }

  /** Leaves `length` bytes to be written later with {@linkcode writeAt}; returns where they start. */
  skip(length: number): number {
    const at = this.#position;
    this.#position += length;
    return at;
  }

  /** Writes `bytes` at `position`, after the write in progress. */
  async writeAt(position: number, bytes: Uint8Array): Promise<void> {
    await this.#writing;
    await this.#write(bytes, position);
  }

  /** Waits for the last write and closes the file; a write that failed fails this. */
  async close(): Promise<void> {
    try {
      await this.#writing;
    } finally {
      await this.#writing?.catch(() => {});
      await this.fh.close();
    }
  }

  async #write(bytes: Uint8Array, position: number): Promise<void> {
    for (let at = 0; at < bytes.byteLength;) at += (await this.fh.write(bytes, at, bytes.byteLength - at, position + at)).bytesWritten;
  }
}

/** An open file as both runtimes' `node:fs/promises` give it: only the call used here. */
export interface Writable {
  write(buffer: Uint8Array, offset: number, length: number): Promise<{ bytesWritten: number }>;
}

/**
 * Writes `chunks` to the open file `fh` at its current position and returns the byte
 * count; each chunk is given back (chunks.ts) once written, so pass only chunks nothing
 * else still reads.
 */
export async function writeAll(fh: Writable, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<number> {
  let bytes = 0;
  for await (const chunk of chunks) {
    let at = 0;
    while (at < chunk.length) at += (await fh.write(chunk, at, chunk.length - at)).bytesWritten;
    bytes += chunk.length;
    giveChunk(chunk);
  }
  return bytes;
}

/**
 * Writes `chunks` to a new file at `path` (failing if it exists, unless `flag` says
 * otherwise) and returns the byte count. The next chunk is asked for while the last one
 * is being written; each chunk is given back (chunks.ts) once written, so pass only
 * chunks nothing else still reads.
 */
export async function writeChunks(path: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, mode = 0o644, flag = "wx"): Promise<number> {
  const f = await HostFile.create(path, mode, flag);
  try {
    for await (const chunk of chunks) await f.append(chunk);
  } finally {
    await f.close();
  }
  return f.position;
}
