/**
 * The messages between the pool and its I/O workers. Tasks carry file positions and
 * offsets into a shared arena, never block data: under Deno, cloning bytes through
 * worker messages runs at ~18 MiB/s, while the shared arena moves them at memory speed.
 * Reads go the other way without a copy: the worker reads into a buffer of its own, or
 * into one the task transfers to it for reuse, and transfers it back (piscina's `move`),
 * which both runtimes do at memory speed.
 *
 * @module
 */

/** One step of a task, run in order. Positions are byte offsets in the data file. */
export type IoOp =
  /** Write `len` bytes from the arena at `at` to the file at `pos`. */
  | { op: "write"; pos: number; at: number; len: number }
  /** Read `len` bytes at `pos` into the arena at `at`. */
  | { op: "read"; pos: number; at: number; len: number }
  /** Read `len` bytes at `pos` into the read arena at `at` (see `BlockIo.takeReadSlot`). */
  | { op: "readShared"; pos: number; at: number; len: number }
  /** Read `len` bytes at `pos` into the task's output buffer at `at`. */
  | { op: "readOut"; pos: number; at: number; len: number }
  /** Copy `len` bytes inside the file, from `src` to `pos`. */
  | { op: "copy"; src: number; pos: number; len: number }
  /** Write `len` zero bytes at `pos`. */
  | { op: "zero"; pos: number; len: number }
  /** fdatasync the file. */
  | { op: "sync" }
  /** Punch `len` bytes at `pos` out of the file (they read as zeros and take no space). */
  | { op: "punch"; pos: number; len: number }
  /** Discard `len` bytes at `pos` of a block device (BLKDISCARD; direct mode's punch). */
  | { op: "discard"; pos: number; len: number };

/** A batch of steps on one data file. */
export interface IoTask {
  /** Path of the data file; each worker opens it itself (Deno gives workers their own fd tables). */
  file: string;
  /** Distinguishes two openings of the same path, so a worker never writes through a stale descriptor. */
  key: string;
  ops: IoOp[];
  /** Bytes of a zeroed output buffer that `readOut` steps fill and the worker transfers back. */
  out?: number;
  /** Set only while a test records this file's operations (see `fileops.ts`): the log directory. */
  rec?: string;
  /**
   * A buffer of at least `out` bytes whose first `out` bytes are the output buffer,
   * instead of a new one (transferred to the worker and back): the worker zeroes what no
   * `readOut` step fills there. Reusing
   * buffers spares the receiving thread an external allocation per read, which costs it
   * garbage collection (a full mark-compact every few tens of MiB on Node).
   */
  into?: ArrayBuffer;
}

/** A failure's fields, as data: an error's `code` does not survive the worker boundary. */
export interface IoFailure { code?: string; message: string; syscall?: string }

/** A worker's answer: null (or the output buffer, for a task with `out`), or the failure. */
export type IoResult = null | ArrayBuffer | IoFailure;
