/**
 * The process-wide block I/O executor: one piscina pool of worker threads and one
 * shared arena cut into slots, used by every open pool. It starts with the first open
 * pool and stops with the last, so an idle process keeps no threads.
 *
 * @module
 */
import os from "node:os";
import { setTimeout as later } from "node:timers";
import { Piscina } from "piscina";
import { storeError, type ErrorCode } from "../common/errors.ts";
import { workerExecArgv } from "../common/workerargs.ts";
import type { IoFailure, IoResult, IoTask } from "./iotask.ts";
import { recordingOf } from "./fileops.ts";
import { sequenceBuffer } from "./oplog.ts";

/** Bytes of one arena slot: the most data one task moves. */
export const SLOT_SIZE = 1024 * 1024;
const SLOTS = 32;
/**
 * Slots of the read arena: memory shared with the workers that reads fill for a caller
 * passing the bytes straight on ({@linkcode BlockIo.takeReadSlot}). A server holds one
 * per request it is answering, so there are as many as the kernel sends at once.
 */
const READ_SLOTS = 32;
const LINGER_MS = 1000;

/** Worker threads and the shared arena. */
export class BlockIo {
  static #shared: BlockIo | undefined;
  static #users = 0;
  static #stopping: ReturnType<typeof later> | undefined;

  /** Takes a reference to the shared executor, starting it if needed. */
  static acquire(threads?: number): BlockIo {
    BlockIo.#users++;
    if (BlockIo.#stopping) clearTimeout(BlockIo.#stopping);
    BlockIo.#stopping = undefined;
    BlockIo.#shared ??= new BlockIo(threads ?? Math.max(2, os.availableParallelism?.() ?? os.cpus().length));
    return BlockIo.#shared;
  }

  /**
   * Drops a reference. The workers stop a moment after the last one goes (closing the
   * data files they hold open), so a close followed by an open reuses warm threads.
   * Neither idle workers nor the timer keep the process alive.
   */
  static release(): Promise<void> {
    if (--BlockIo.#users > 0) return Promise.resolve();
    BlockIo.#stopping = later(() => {
      const io = BlockIo.#shared;
      BlockIo.#shared = undefined;
      BlockIo.#stopping = undefined;
      if (io) void io.#workers.destroy();
    }, LINGER_MS);
    BlockIo.#stopping.unref();
    return Promise.resolve();
  }

  readonly arena: Uint8Array;
  /** Where `readShared` steps put their bytes (see {@linkcode takeReadSlot}). */
  readonly readArena: Uint8Array;
  readonly #workers: Piscina;
  readonly #free: number[] = [];
  readonly #readFree: number[] = [];
  readonly #waiting: ((slot: number) => void)[] = [];

  private constructor(threads: number) {
    const sab = new SharedArrayBuffer(SLOT_SIZE * SLOTS);
    this.arena = new Uint8Array(sab);
    for (let i = 0; i < SLOTS; i++) this.#free.push(i * SLOT_SIZE);
    const readSab = new SharedArrayBuffer(SLOT_SIZE * READ_SLOTS);
    this.readArena = new Uint8Array(readSab);
    for (let i = READ_SLOTS - 1; i >= 0; i--) this.#readFree.push(i * SLOT_SIZE);
    this.#workers = new Piscina({
      filename: new URL("../../workers/blockio.ts", import.meta.url).href,
      minThreads: 1,
      maxThreads: threads,
      idleTimeout: 5_000,
      workerData: { arena: sab, readArena: readSab, seq: sequenceBuffer() },
      // Idle workers keep running their event loop (piscina's "sync" mode parks them in
      // Atomics.wait), so their timer can close descriptors of pools that were closed.
      atomics: "async",
      execArgv: workerExecArgv(),
    });
  }

  /** Runs `fn` with a slot of the arena (its byte offset) held; waits when all are taken. */
  async withSlot<T>(fn: (at: number) => Promise<T>): Promise<T> {
    const at = await this.takeSlot();
    try {
      return await fn(at);
    } finally {
      this.giveSlot(at);
    }
  }

  /** Takes a slot of the arena (its byte offset), waiting when all are taken. */
  takeSlot(): Promise<number> | number {
    return this.#free.pop() ?? new Promise<number>((r) => this.#waiting.push(r));
  }

  /** Gives back a slot from {@linkcode takeSlot}. */
  giveSlot(at: number): void {
    const next = this.#waiting.shift();
    if (next) next(at);
    else this.#free.push(at);
  }

  /**
   * Takes a slot of the read arena (its byte offset), or undefined when all are taken:
   * never waits, since its holders give slots back only when their callers are done
   * (the caller then reads into a buffer of its own).
   */
  takeReadSlot(): number | undefined {
    return this.#readFree.pop();
  }

  /** Gives back a slot from {@linkcode takeReadSlot}. */
  giveReadSlot(at: number): void {
    this.#readFree.push(at);
  }

  /** Runs one task on a worker; a failure is rethrown here with its code. */
  async run(task: IoTask): Promise<void> {
    tag(task);
    const result = await this.#workers.run(task) as IoResult;
    if (result) throw failure(task, result);
  }

  /**
   * Runs a task with an output buffer (`task.out` bytes, or `task.into`, which is
   * transferred to the worker and comes back) and returns that buffer.
   */
  async read(task: IoTask & { out: number }): Promise<ArrayBuffer> {
    tag(task);
    const result = await (task.into ? this.#workers.run(task, { transferList: [task.into] }) : this.#workers.run(task)) as IoResult;
    if (result instanceof ArrayBuffer) return result;
    throw failure(task, result ?? { message: "the worker returned no data" });
  }
}

/** A task on a recorded file carries the recording's log directory to the worker. */
function tag(task: IoTask): void {
  const rec = recordingOf(task.file);
  if (rec !== undefined) task.rec = rec;
}

function failure(task: IoTask, result: IoFailure | ArrayBuffer): Error {
  const f = result as IoFailure;
  const code = (f.code ?? "EIO") as ErrorCode;
  return storeError(code in codes ? code : "EIO", f.syscall ?? "io", task.file, f.message);
}

const codes: Record<string, true> = { ENOENT: true, ENOSPC: true, EIO: true, EACCES: true, EPERM: true, EBADF: true, EINVAL: true };
