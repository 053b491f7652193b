/**
 * Ordering of the I/O tasks of one pool that are still running on the workers.
 *
 * A write returns once its bytes are in the shared arena and its task is queued (write-
 * behind, as a page cache does): the caller's next write is planned while the workers
 * write the last one, which hides the round trip to a worker (about 30 µs on Node and
 * 160 µs on Deno). Two workers may run tasks in any order, so every task waits for the
 * earlier tasks that touch any of the same pool blocks; tasks on different blocks run
 * side by side. Reads take part too, so a read sees every write queued before it and a
 * later write never overtakes a read queued before it.
 *
 * A write that fails in the background cannot be reported to its caller, who has moved
 * on. The failure is kept: every later operation and the next commit fail with it, and
 * nothing is committed after it, so the pool reopens at its last commit (as after a
 * crash; dm-thin's fail mode, or a page cache's write-back error at fsync).
 *
 * @module
 */
import { storeError, type ErrorCode } from "../common/errors.ts";
import type { IoOp } from "./iotask.ts";
import type { BlockNo } from "./types.ts";

const settle = () => {};
const KNOWN = new Set(["ENOSPC", "EIO", "EACCES", "EPERM", "EBADF", "ENOENT", "EINVAL"]);

/** The pool blocks a task's steps touch (read or write). */
export function blocksOf(ops: readonly IoOp[], blockSize: number): Set<BlockNo> {
  const out = new Set<BlockNo>();
  const add = (pos: number, len: number) => {
    for (let b = Math.floor(pos / blockSize); b * blockSize < pos + len; b++) out.add(b);
  };
  for (const op of ops) {
    if (op.op === "sync") continue;
    add(op.pos, op.len);
    if (op.op === "copy") add(op.src, op.len);
  }
  return out;
}

/** The running tasks of one pool, by the blocks they touch. */
export class Inflight {
  /** The last task scheduled on each block; it settles after every earlier one there. */
  readonly #tails = new Map<BlockNo, Promise<void>>();
  readonly #running = new Set<Promise<void>>();
  #failure: Error | undefined;

  constructor(readonly blockSize: number, readonly file: string) {}

  /** Tasks still running. */
  get size(): number {
    return this.#running.size;
  }

  /**
   * Starts `start` once every task scheduled earlier on any of `ops`' blocks has
   * settled, and tracks it until it settles. Resolves or rejects as `start` does.
   */
  schedule<T>(ops: readonly IoOp[], start: () => Promise<T>): Promise<T> {
    const blocks = blocksOf(ops, this.blockSize);
    const before = new Set<Promise<void>>();
    for (const b of blocks) {
      const tail = this.#tails.get(b);
      if (tail) before.add(tail);
    }
    const task = before.size ? Promise.all(before).then(start) : start();
    const done = task.then(settle, settle);
    for (const b of blocks) this.#tails.set(b, done);
    this.#running.add(done);
    void done.then(() => {
      this.#running.delete(done);
      for (const b of blocks) if (this.#tails.get(b) === done) this.#tails.delete(b);
    });
    return task;
  }

  /** Schedules a write its caller will not wait for; a failure is kept for {@linkcode check}. */
  behind(ops: readonly IoOp[], start: () => Promise<void>): void {
    this.schedule(ops, start).catch((e) => {
      this.#failure ??= backgroundFailure(e, this.file);
    });
  }

  /** Throws the failure of a write that failed in the background, if one did. */
  check(): void {
    if (this.#failure) throw this.#failure;
  }

  /** True once a background write has failed. */
  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Waits until no task is running, then throws a background failure if there was one. */
  async drain(): Promise<void> {
    while (this.#running.size) await Promise.all([...this.#running]);
    this.check();
  }
}

function backgroundFailure(e: unknown, file: string): Error {
  const err = e as { code?: string; message?: string };
  const code = (err.code && KNOWN.has(err.code) ? err.code : "EIO") as ErrorCode;
  return storeError(code, "write", file,
    `a write to the data file failed after it returned (${String(err.message ?? e)}); ` +
      `the changes since the last commit are lost: close the pool and open it again`);
}
