/**
 * Writing tar archives: entries go in one at a time with their data streamed through
 * (memory stays flat whatever the sizes), and the output has only what the entries say,
 * so the same entries always give the same bytes (tarheader.ts).
 *
 * Data chunks of a file pass through as they come, never copied; headers, padding and
 * small chunks are gathered into blocks of up to 64 KiB, so an archive of many small
 * files does not become a stream of 512-byte pieces.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { giveChunk } from "./chunks.ts";
import { BLOCK, encodeHeader, padding, type WriteEntry } from "./tarheader.ts";

export type { WriteEntry } from "./tarheader.ts";

/** Chunks at least this long pass through; shorter ones are gathered. */
const PASS = 32 * 1024;
/** Size of the block small pieces are gathered into. */
const GATHER = 64 * 1024;
/** Bytes an archive's writer may run ahead of its reader. */
const AHEAD = 2 * 1024 * 1024;
/** The end of an archive: two zero blocks. */
const END = new Uint8Array(2 * BLOCK);

/** Where a {@linkcode TarWriter} puts its output; a chunk handed over is the receiver's to keep. */
export type TarOutput = (chunk: Uint8Array) => void | Promise<void>;

/** Adds entries to an archive being written; see {@linkcode writeTar}. */
export class TarWriter {
  readonly #out: TarOutput;
  #gather = new Uint8Array(GATHER);
  #fill = 0;
  #bytes = 0;

  /** A writer handing its output to `out`, which may make it wait (backpressure). */
  constructor(out: TarOutput) {
    this.#out = out;
  }

  /** Bytes of archive written so far, gathered ones included. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Appends one entry; a file's `body` must yield exactly `size` bytes. */
  async add(entry: WriteEntry, body?: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    await this.#put(encodeHeader(entry));
    if (entry.type !== "file") return;
    const size = entry.size ?? 0;
    let written = 0;
    for await (const chunk of body ?? []) {
      if (written + chunk.byteLength > size) {
        written += chunk.byteLength;
        break;
      }
      written += chunk.byteLength;
      if (chunk.byteLength >= PASS) await this.#pass(chunk);
      else {
        await this.#put(chunk);
        giveChunk(chunk); // copied: the body's buffer may go back (chunks.ts)
      }
    }
    if (written !== size) {
      throw storeError("EIO", "tar", entry.name, `the file gave ${written > size ? "more" : "fewer"} bytes than its size (${size}); did it change while being read?`);
    }
    await this.#put(padding(size));
  }

  /** Writes the end-of-archive blocks and hands over what is gathered. */
  async end(): Promise<void> {
    await this.#put(END);
    await this.#flush();
  }

  /** Copies `bytes` into the gathering block, handing it over whenever it is full. */
  async #put(bytes: Uint8Array): Promise<void> {
    this.#bytes += bytes.byteLength;
    for (let at = 0; at < bytes.byteLength;) {
      const n = Math.min(bytes.byteLength - at, GATHER - this.#fill);
      this.#gather.set(bytes.subarray(at, at + n), this.#fill);
      this.#fill += n;
      at += n;
      if (this.#fill === GATHER) await this.#flush();
    }
  }

  /** Hands over what is gathered, then `chunk` itself. */
  async #pass(chunk: Uint8Array): Promise<void> {
    this.#bytes += chunk.byteLength;
    await this.#flush();
    await this.#out(chunk);
  }

  async #flush(): Promise<void> {
    if (this.#fill === 0) return;
    const full = this.#fill === GATHER;
    const chunk = full ? this.#gather : this.#gather.slice(0, this.#fill);
    // A full block goes as it is (the receiver keeps it) and a new one takes its place.
    if (full) this.#gather = new Uint8Array(GATHER);
    this.#fill = 0;
    await this.#out(chunk);
  }
}

/** Thrown into a producer whose reader has stopped reading. */
class Stopped extends Error {}

/**
 * A tar archive as a stream of chunks: `produce` adds the entries, the end-of-archive
 * blocks follow. An error thrown by `produce` fails the stream; a reader that stops
 * early stops `produce` at its next write. Chunks are the reader's to keep.
 *
 * @example
 * ```ts
 * import { writeTar } from "./tarwrite.ts";
 * const data = new TextEncoder().encode("hello\n");
 * let n = 0;
 * for await (const chunk of writeTar(async (w) => {
 *   await w.add({ name: "hi.txt", type: "file", size: data.length, mode: 0o644, uid: 0, gid: 0, mtimeMs: 0 }, [data]);
 * })) n += chunk.length;
 * console.log(n); // 2048: header, data block, two end blocks
 * ```
 */
export async function* writeTar(produce: (w: TarWriter) => Promise<void>): AsyncGenerator<Uint8Array> {
  const queue: Uint8Array[] = [];
  let queued = 0;
  let finished = false;
  let failure: { error: unknown } | undefined;
  let stopped = false;
  // Each side waits on the other through one of these (at most one waiter each).
  let wakeReader: (() => void) | undefined;
  let wakeWriter: (() => void) | undefined;
  const wake = (which: "reader" | "writer") => {
    const fn = which === "reader" ? wakeReader : wakeWriter;
    if (which === "reader") wakeReader = undefined;
    else wakeWriter = undefined;
    fn?.();
  };
  const out: TarOutput = async (chunk) => {
    if (stopped) throw new Stopped("the archive's reader stopped");
    queue.push(chunk);
    queued += chunk.byteLength;
    wake("reader");
    while (queued > AHEAD && !stopped) await new Promise<void>((r) => (wakeWriter = r));
    if (stopped) throw new Stopped("the archive's reader stopped");
  };
  const producing = (async () => {
    try {
      const w = new TarWriter(out);
      await produce(w);
      await w.end();
    } catch (e) {
      if (!(e instanceof Stopped)) failure = { error: e };
    } finally {
      finished = true;
      wake("reader");
    }
  })();
  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk) {
        queued -= chunk.byteLength;
        wake("writer");
        yield chunk;
        continue;
      }
      if (finished) {
        if (failure) throw failure.error;
        return;
      }
      await new Promise<void>((r) => (wakeReader = r));
    }
  } finally {
    stopped = true;
    queue.length = 0;
    wake("writer");
    await producing;
  }
}
