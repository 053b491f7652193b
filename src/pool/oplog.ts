/**
 * The log a recording of file operations writes (see `fileops.ts`): every mutating
 * operation on a recorded pool's files, in the order the operations completed, across
 * the main thread and the I/O workers. Tests replay it to rebuild what a disk would hold
 * after losing power at any point; nothing outside tests records.
 *
 * Order comes from one counter in a SharedArrayBuffer that the main thread hands every
 * worker at start: an operation takes its ticket after it completed, and a sync also
 * takes one before it starts, so a replay knows which writes a sync covers (those whose
 * ticket is below the sync's start) even when they ran on other threads.
 *
 * Each thread appends to a file of its own in the log directory, synchronously, so the
 * records of one thread are never interleaved with another's. A record is a 4-byte
 * header length, a 4-byte data length (both little-endian), the header as JSON and the
 * data (the bytes of a write).
 *
 * @module
 */
import fs from "node:fs";
import { Buffer } from "node:buffer";
import path from "node:path";
import { threadId } from "node:worker_threads";

/** What a record says; the fields beyond `op` and the tickets depend on `op`. */
export type OpRecord =
  /** A file was opened: `h` (its ticket) names the handle in later records. */
  | { op: "open"; t: number; path: string; flags: "w" | "wx" | "r+" }
  /** `data` was written at `pos` through handle `h` (`zero`: `len` zero bytes, no data). */
  | { op: "pwrite"; t: number; h: number; pos: number }
  | { op: "zero"; t: number; h: number; pos: number; len: number }
  /** A hole was punched (reads as zeros). */
  | { op: "punch"; t: number; h?: number; path?: string; pos: number; len: number }
  /** The file of handle `h`, or at `path`, was cut or grown to `len` bytes. */
  | { op: "truncate"; t: number; h?: number; path?: string; len: number }
  /** fsync or fdatasync of handle `h` (the model treats both alike: data and size). */
  | { op: "fsync"; t0: number; t: number; h: number }
  /** fsync of the directory at `path`. */
  | { op: "dirsync"; t0: number; t: number; path: string }
  | { op: "mkdir"; t: number; path: string }
  | { op: "rename"; t: number; from: string; to: string }
  | { op: "link"; t: number; from: string; to: string }
  | { op: "unlink"; t: number; path: string }
  /** A point the test marks (a commit starting or returning), for cut points. */
  | { op: "mark"; t: number; name: string; value: number };

/** A record with the bytes it carries (a write's). */
export interface LoggedOp { rec: OpRecord; data?: Uint8Array }

let counter = new Int32Array(new SharedArrayBuffer(4));

/** The counter's buffer, for the main thread to hand its workers. */
export function sequenceBuffer(): SharedArrayBuffer {
  return counter.buffer as SharedArrayBuffer;
}

/** In a worker: count with the main thread's counter. */
export function useSequence(buffer: SharedArrayBuffer | undefined): void {
  if (buffer) counter = new Int32Array(buffer);
}

/** The next ticket (1, 2, ...): take it right after an operation completed. */
export function ticket(): number {
  return Atomics.add(counter, 0, 1) + 1;
}

/**
 * The most a recorded sync waits before it starts, on the main thread and in the I/O
 * workers (each waits a random part of it). A sync that nothing awaits (a commit that
 * renames its root without waiting for the data file's fdatasync) finishes before the
 * rename anyway on a fast disk, and a replay could not tell; with syncs finishing in a
 * shuffled order, it sometimes finishes after, where a cut shows what it left undurable.
 * The workers' syncs (the data file's, which flushes the most and which a commit runs
 * alongside the metadata's) may wait longest. Only recorded syncs wait.
 */
export const RECORDED_SYNC_DELAY_MS = { main: 10, worker: 60 };

/** A random wait for a recorded sync, in milliseconds. */
export function recordedSyncDelay(where: "main" | "worker" = "main"): number {
  return Math.random() * RECORDED_SYNC_DELAY_MS[where];
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks the thread for a worker's {@linkcode recordedSyncDelay} (its syncs are synchronous). */
export function delayRecordedSyncSync(): void {
  Atomics.wait(sleeper, 0, 0, recordedSyncDelay("worker"));
}

/** Appends one record to this thread's log in `logDir`. */
export function appendOp(logDir: string, rec: OpRecord, data?: Uint8Array): void {
  const head = Buffer.from(JSON.stringify(rec));
  const frame = Buffer.alloc(8);
  frame.writeUInt32LE(head.byteLength, 0);
  frame.writeUInt32LE(data?.byteLength ?? 0, 4);
  const fd = fs.openSync(path.join(logDir, `thread-${threadId}.log`), "a");
  try {
    fs.writeSync(fd, frame);
    fs.writeSync(fd, head);
    if (data && data.byteLength) fs.writeSync(fd, data);
  } finally {
    fs.closeSync(fd);
  }
}

/** Every record of every thread's log in `logDir`, by ticket. */
export function readOps(logDir: string): LoggedOp[] {
  const out: LoggedOp[] = [];
  for (const name of fs.readdirSync(logDir)) {
    if (!name.endsWith(".log")) continue;
    const buf = fs.readFileSync(path.join(logDir, name));
    for (let at = 0; at < buf.byteLength;) {
      const headLen = buf.readUInt32LE(at);
      const dataLen = buf.readUInt32LE(at + 4);
      const rec = JSON.parse(buf.subarray(at + 8, at + 8 + headLen).toString("utf8")) as OpRecord;
      const start = at + 8 + headLen;
      out.push(dataLen ? { rec, data: new Uint8Array(buf.subarray(start, start + dataLen)) } : { rec });
      at = start + dataLen;
    }
  }
  return out.sort((a, b) => a.rec.t - b.rec.t);
}
