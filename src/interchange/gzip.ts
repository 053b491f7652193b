/**
 * Gzip of a layer's tar as it streams, off the main thread under both runtimes: Node's
 * node:zlib deflates on libuv's thread pool; Deno 2.9's deflates on the thread that
 * calls it, so there each stream is deflated on a worker thread (workers/gzip.ts, a
 * piscina pool of up to 4), which leaves the main thread to make the tar (and the
 * digests) while deflate runs.
 * Either way it is the same zlib with the same settings, and deflate's output does not
 * depend on how its input was cut up, so the bytes are the same.
 *
 * @module
 */
import os from "node:os";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import zlib from "node:zlib";
import { Piscina } from "piscina";
import { storeError } from "../common/errors.ts";
import { workerExecArgv } from "../common/workerargs.ts";
import { adoptChunk, giveChunk, takeChunk } from "./chunks.ts";
import { pump } from "./pump.ts";

/** Deflate level of exported layers (gzip's and Docker's default). */
export const GZIP_LEVEL = 6;

/**
 * Node's settings. Neither the output chunk size nor the buffering changes the bytes:
 * 256 KiB output chunks cut the thread-pool round trips (one per chunk) sixteenfold,
 * and the buffers let deflate go on while its output is written and its next input is
 * made.
 */
const ZLIB = { chunkSize: 256 * 1024, readableHighWaterMark: 4 * 1024 * 1024, writableHighWaterMark: 2 * 1024 * 1024 };

/** How a stream is deflated: on node:zlib's own threads, or in a worker thread of ours. */
export type GzipMode = "zlib" | "worker";

declare const Deno: unknown;

/** Where node:zlib deflates off the calling thread (Node), it is used as is. */
const DEFAULT_MODE: GzipMode = typeof Deno === "undefined" ? "zlib" : "worker";

/** Options of {@linkcode gzip}. */
export interface GzipOptions {
  /** Deflate level, 1 (fastest) to 9 (smallest). Default {@linkcode GZIP_LEVEL}, as `exportImage` writes layers (the same digests). */
  level?: number;
  /** Where deflate runs; default node:zlib's threads under Node, a worker thread of ours under Deno. */
  mode?: GzipMode;
}

/**
 * `input` gzipped with Node's fixed header (the same input and level give the same
 * bytes), deflated off the calling thread under both runtimes, so a caller that streams
 * a layer (a registry upload) makes the tar while deflate runs. Several streams at once
 * are deflated on as many threads (up to 4). Chunks of `input` are the gzip's to give
 * back (chunks.ts) once it has copied or consumed them; output chunks may be given back
 * by whoever is done with them.
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
  return (options.mode ?? DEFAULT_MODE) === "zlib" ? pump(input, zlib.createGzip({ level, ...ZLIB })) : workerGzip(input, level);
}

/** The task that runs one stream on a gzip worker; the stream's messages go over `port`. */
export interface GzipTask {
  port: MessagePort;
  level: number;
  chunkSize: number;
  /** Empty output buffers to begin with. */
  rooms: ArrayBuffer[];
}

/** Messages to the gzip worker: input (`length` bytes of `buf`), room for output, the end of input. */
export type GzipRequest =
  | { type: "data"; buf: ArrayBuffer; length: number }
  | { type: "room"; buf: ArrayBuffer }
  | { type: "end" };

/** Messages from the gzip worker: output, input buffers deflate is done with, the end (with unused room), a failure. */
export type GzipReply =
  | { type: "out"; buf: ArrayBuffer; length: number }
  | { type: "back"; buf: ArrayBuffer }
  | { type: "done"; rooms: ArrayBuffer[] }
  | { type: "error"; message: string };

/** Size of an input buffer sent to the worker, and how many may be out at once. */
const INPUT_SIZE = 1 << 20;
const INPUTS = 4;
/** Output buffers (chunks.ts chunks) the worker may fill before the reader takes one. */
const ROOMS = 4;
/** Streams deflated at once at most (more wait for a thread). */
const THREADS = Math.max(1, Math.min(4, os.availableParallelism?.() ?? os.cpus().length));

let workers: Piscina | undefined;

/**
 * The gzip threads, started with the first stream. A thread idle for two seconds stops,
 * and idle threads do not keep the process alive.
 */
function pool(): Piscina {
  return workers ??= new Piscina({
    filename: new URL("../../workers/gzip.ts", import.meta.url).href,
    minThreads: 0,
    maxThreads: THREADS,
    idleTimeout: 2_000,
    execArgv: workerExecArgv(),
  });
}

async function* workerGzip(input: AsyncIterable<Uint8Array>, level: number): AsyncGenerator<Uint8Array> {
  const { port1: port, port2 } = new MessageChannel();
  const ready: Uint8Array[] = [];
  const free: ArrayBuffer[] = [];
  let inputs = 0;
  let done = false;
  let stopped = false;
  let failure: unknown;
  let waiters: (() => void)[] = [];
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const wait = () => new Promise<void>((r) => waiters.push(r));
  const fail = (e: unknown) => {
    failure ??= e;
    wake();
  };
  port.on("message", (m: GzipReply) => {
    if (m.type === "out") {
      adoptChunk(m.buf);
      ready.push(new Uint8Array(m.buf, 0, m.length));
    } else if (m.type === "back") free.push(m.buf);
    else if (m.type === "done") {
      for (const b of m.rooms) {
        adoptChunk(b);
        giveChunk(new Uint8Array(b));
      }
      done = true;
    } else fail(storeError("EIO", "gzip", "layer", `deflate failed: ${m.message}`));
    wake();
  });
  const send = (m: GzipRequest, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

  const rooms = Array.from({ length: ROOMS }, () => takeChunk().buffer as ArrayBuffer);
  const abort = new AbortController();
  const task: GzipTask = { port: port2, level, chunkSize: ZLIB.chunkSize, rooms };
  // The task ends once "done" (or "error") is posted; the port delivers it, maybe after.
  const running = pool().run(task, { transferList: [port2 as unknown as ArrayBuffer, ...rooms], signal: abort.signal }).then(
    () => {},
    (e: Error) => {
      if (!stopped) fail(storeError("EIO", "gzip", "layer", `the gzip worker failed: ${e.message}`));
    },
  );

  const feeding = (async () => {
    let stage: Uint8Array | undefined;
    let fill = 0;
    const flush = () => {
      const buf = stage!.buffer as ArrayBuffer;
      send({ type: "data", buf, length: fill }, [buf]);
      stage = undefined;
      fill = 0;
    };
    for await (const chunk of input) {
      for (let at = 0; at < chunk.byteLength;) {
        if (stopped || failure) return;
        if (!stage) {
          let buf = free.pop();
          if (!buf && inputs < INPUTS) {
            buf = new ArrayBuffer(INPUT_SIZE);
            inputs++;
          }
          if (!buf) {
            await wait();
            continue;
          }
          stage = new Uint8Array(buf);
        }
        const n = Math.min(chunk.byteLength - at, stage.byteLength - fill);
        stage.set(chunk.subarray(at, at + n), fill);
        fill += n;
        at += n;
        if (fill === stage.byteLength) flush();
      }
      giveChunk(chunk);
    }
    if (stopped || failure) return;
    if (stage && fill) flush();
    send({ type: "end" });
  })().catch(fail);

  let clean = false;
  try {
    for (;;) {
      const out = ready.shift();
      if (out) {
        yield out;
        const room = takeChunk().buffer as ArrayBuffer;
        send({ type: "room", buf: room }, [room]);
        continue;
      }
      if (failure) throw failure;
      if (done) break;
      await wait();
    }
    await feeding;
    if (failure) throw failure;
    clean = true;
  } finally {
    stopped = true;
    wake();
    await feeding;
    // A stream that ended early may still be deflating: its thread is stopped, not reused.
    if (!clean) abort.abort();
    await running;
    port.close();
  }
}
