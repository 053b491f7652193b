/**
 * Gzip of a layer's tar as it streams, deflated on every core even within one layer
 * (pigz's way): the input is cut into blocks of {@linkcode GZIP_BLOCK} bytes, each block
 * is deflated raw on a thread of its own with the 32 KiB before it as its history and a
 * sync flush at its end (deflateblock.ts), and the blocks are joined, in order, behind
 * one gzip header; the trailer's CRC-32 is combined from the blocks' (crc32.ts).
 *
 * The bytes depend on the input, the block size and the level only, never on how many
 * threads there are or how the input was cut into chunks, so an export and a push of a
 * layer make the same blob, with the same digest, on every machine with the same zlib.
 * They are not the bytes of a one-stream `gzip` (a sync flush per MiB adds 4 bytes and
 * each block starts its match search anew), and Deno's node:zlib deflates into other,
 * equally valid bytes than Node's. Any gunzip reads them: it is one gzip member.
 *
 * Where blocks deflate: under Node on node:zlib's own threads (libuv's pool), at most one
 * per core at once so the pool keeps threads for file I/O; under Deno 2.9, whose node:zlib
 * deflates on the calling thread, on worker threads of ours (workers/gzip.ts, a piscina
 * pool of one per core, up to 4).
 *
 * @module
 */
import os from "node:os";
import { Piscina } from "piscina";
import { storeError } from "../common/errors.ts";
import { workerExecArgv } from "../common/workerargs.ts";
import { giveChunk } from "./chunks.ts";
import { crc32, crc32Combine } from "./crc32.ts";
import { deflateBlock, WINDOW } from "./deflateblock.ts";

/** Deflate level of exported layers (gzip's and Docker's default). */
export const GZIP_LEVEL = 6;

/**
 * Bytes of the tar deflated as one block. Part of the blob's bytes: another size gives
 * other digests for the same layer, so it is fixed, not tuned per machine.
 */
export const GZIP_BLOCK = 1 << 20;

/** Where blocks are deflated: on node:zlib's own threads, or in worker threads of ours. */
export type GzipMode = "zlib" | "worker";

declare const Deno: unknown;

/** Where node:zlib deflates off the calling thread (Node), it is used as is. */
const DEFAULT_MODE: GzipMode = typeof Deno === "undefined" ? "zlib" : "worker";

/** Options of {@linkcode gzip}. */
export interface GzipOptions {
  /** Deflate level, 1 (fastest) to 9 (smallest). Default {@linkcode GZIP_LEVEL}, as `exportImage` writes layers (the same digests). */
  level?: number;
  /** Where deflate runs; default node:zlib's threads under Node, worker threads of ours under Deno. The bytes are the same. */
  mode?: GzipMode;
}

/** A block sent to a gzip worker: `length` bytes of `buf`, the first `window` of them the history before the block. */
export interface BlockTask {
  buf: ArrayBuffer;
  length: number;
  window: number;
  level: number;
  last: boolean;
}

/** What a gzip worker gives back: the deflated block, and the CRC-32 of its bytes. */
export interface WorkerResult {
  out: ArrayBuffer;
  crc: number;
}

/** A deflated block and the CRC-32 of its (uncompressed) bytes. */
export interface BlockResult {
  out: Uint8Array;
  crc: number;
}

/** Threads deflating at once, over all streams: one per core, up to 4. */
const THREADS = Math.max(1, Math.min(4, os.availableParallelism?.() ?? os.cpus().length));
/** Blocks of one stream being deflated or waiting for their turn to be read, at most. */
const AHEAD = THREADS + 2;

let workers: Piscina | undefined;

/** The gzip threads, started with the first block. A thread idle for two seconds stops, and idle threads do not keep the process alive. */
function pool(): Piscina {
  return workers ??= new Piscina({
    filename: new URL("../../workers/gzip.ts", import.meta.url).href,
    minThreads: 0,
    maxThreads: THREADS,
    idleTimeout: 2_000,
    execArgv: workerExecArgv(),
  });
}

/** node:zlib's jobs under way, and those waiting for a thread (first come, first served). */
let zlibRunning = 0;
const zlibWaiting: (() => void)[] = [];

async function onZlib(buf: Uint8Array, window: number, level: number, last: boolean): Promise<BlockResult> {
  if (zlibRunning >= THREADS) await new Promise<void>((r) => zlibWaiting.push(r));
  zlibRunning++;
  try {
    const crc = crc32(buf.subarray(window));
    return { out: await deflateBlock({ buf, window, level, last }), crc };
  } finally {
    zlibRunning--;
    zlibWaiting.shift()?.();
  }
}

async function onWorker(buf: Uint8Array, window: number, level: number, last: boolean): Promise<BlockResult> {
  const task: BlockTask = { buf: buf.buffer as ArrayBuffer, length: buf.byteLength, window, level, last };
  try {
    const r = await pool().run(task, { transferList: [task.buf] }) as WorkerResult;
    return { out: new Uint8Array(r.out), crc: r.crc };
  } catch (e) {
    throw storeError("EIO", "gzip", "layer", `the gzip worker failed: ${(e as Error).message}`);
  }
}

/** The gzip header Node's zlib writes: no name, no time, the level's XFL, OS Unix. */
function header(level: number): Uint8Array {
  return Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, level === 9 ? 2 : level === 1 ? 4 : 0, 3);
}

/** The gzip trailer: CRC-32 and length modulo 2^32, little-endian. */
function trailer(crc: number, length: number): Uint8Array {
  const t = new Uint8Array(8);
  const v = new DataView(t.buffer);
  v.setUint32(0, crc >>> 0, true);
  v.setUint32(4, length % 2 ** 32, true);
  return t;
}

/**
 * `input` gzipped (see the module doc for the format), its blocks deflated on several
 * threads while the next ones are read; a reader that stops reading stops the input a
 * few blocks ahead. Chunks of `input` are the gzip's to give back (chunks.ts) once it
 * has copied them; output chunks are the reader's.
 *
 * @throws EINVAL: a level that is not a whole number from 1 to 9.
 *
 * @example
 * ```ts ignore
 * import { interchange } from "thinstack";
 * for await (const chunk of interchange.gzip(store.diff("ctr-1"))) upload(chunk);
 * ```
 */
export function gzip(input: AsyncIterable<Uint8Array>, options: GzipOptions = {}): AsyncGenerator<Uint8Array> {
  const level = options.level ?? GZIP_LEVEL;
  if (!Number.isInteger(level) || level < 1 || level > 9) throw storeError("EINVAL", "gzip", "layer", `gzip level '${level}' is not a whole number from 1 to 9`);
  return blocks(input, level, (options.mode ?? DEFAULT_MODE) === "zlib" ? onZlib : onWorker);
}

type Deflate = (buf: Uint8Array, window: number, level: number, last: boolean) => Promise<BlockResult>;

async function* blocks(input: AsyncIterable<Uint8Array>, level: number, deflate: Deflate): AsyncGenerator<Uint8Array> {
  /** Blocks sent to deflate, in order, with their uncompressed lengths. */
  const queue: { result: Promise<BlockResult>; length: number }[] = [];
  let fed = false;
  let stopped = false;
  let failure: { e: unknown } | undefined;
  let waiters: (() => void)[] = [];
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const wait = () => new Promise<void>((r) => waiters.push(r));

  const feeding = (async () => {
    // A block's buffer: the window (the last bytes of the block before), then the block.
    let stage = new Uint8Array(GZIP_BLOCK);
    let window = 0;
    let fill = 0;
    const send = async (last: boolean) => {
      while (!last && queue.length >= AHEAD && !stopped) await wait();
      if (stopped) return;
      const buf = stage.subarray(0, fill);
      const next = new Uint8Array(WINDOW + GZIP_BLOCK);
      const keep = Math.min(WINDOW, fill); // the next block's history
      next.set(buf.subarray(fill - keep), 0);
      const result = deflate(buf, window, level, last);
      result.catch(() => {}); // read (and thrown) in order by the reader
      queue.push({ result, length: fill - window });
      wake();
      stage = next;
      window = keep;
      fill = keep;
    };
    for await (const chunk of input) {
      for (let at = 0; at < chunk.byteLength;) {
        if (stopped) return;
        const n = Math.min(chunk.byteLength - at, window + GZIP_BLOCK - fill);
        stage.set(chunk.subarray(at, at + n), fill);
        fill += n;
        at += n;
        if (fill === window + GZIP_BLOCK) await send(false);
      }
      giveChunk(chunk);
    }
    // Always a last block, empty if the input ended on a block's end: it ends the deflate stream.
    if (!stopped) await send(true);
  })().then(() => {
    fed = true;
    wake();
  }, (e) => {
    failure ??= { e };
    wake();
  });

  try {
    yield header(level);
    let crc = 0;
    let length = 0;
    for (;;) {
      if (failure) throw failure.e;
      const head = queue[0];
      if (head) {
        const r = await head.result;
        queue.shift();
        wake();
        crc = crc32Combine(crc, r.crc, head.length);
        length += head.length;
        if (r.out.byteLength) yield r.out;
        continue;
      }
      if (fed) break;
      await wait();
    }
    yield trailer(crc, length);
  } finally {
    stopped = true;
    wake();
    await feeding;
    await Promise.allSettled(queue.map((q) => q.result));
  }
}
