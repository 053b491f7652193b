/**
 * Block I/O worker: runs batches of reads, writes, copies, zeroing and syncs against a
 * pool's data file. Written data comes through the shared arena the main thread gives
 * every worker at start; read data goes back in a buffer the worker transfers; copies
 * stay inside the worker.
 */
import fs from "node:fs";
import { Buffer } from "node:buffer";
import { move, workerData } from "piscina";
import { LRUCache } from "lru-cache";
import type { IoResult, IoTask } from "../src/pool/iotask.ts";
import { punchHolesSync } from "../src/pool/punch.ts";
import { appendOp, delayRecordedSyncSync, ticket, useSequence } from "../src/pool/oplog.ts";
import { discardSync } from "../src/pool/discard.ts";

const arena = Buffer.from(workerData.arena as SharedArrayBuffer);
const readArena = Buffer.from(workerData.readArena as SharedArrayBuffer);
useSequence(workerData.seq as SharedArrayBuffer | undefined);
const CHUNK = 1024 * 1024;
const scratch = Buffer.alloc(CHUNK);
const zeros = Buffer.alloc(CHUNK);

/** Descriptors unused this long are closed even if no task comes, so a closed pool's file is let go. */
const IDLE_MS = 2_000;
// Keyed by the pool's opening (a closed pool's key is never used again): bounded, and an
// entry unused for IDLE_MS expires on a timer, which runs while the worker idles (piscina's
// "async" atomics; see BlockIo).
const files = new LRUCache<string, number>({
  max: 8, ttl: IDLE_MS, ttlAutopurge: true, updateAgeOnGet: true, dispose: (fd) => fs.closeSync(fd),
});

function fdFor(task: IoTask): number {
  let fd = files.get(task.key);
  if (fd === undefined) {
    fd = fs.openSync(task.file, "r+");
    files.set(task.key, fd);
  }
  return fd;
}

/**
 * Handles (open records) of the descriptors a recording test's tasks use, by pool opening.
 * Only tasks that carry `rec` (a test recording this file, see fileops.ts) touch it.
 */
const recorded = new Map<string, number>();

function handleOf(task: IoTask, rec: string): number {
  let h = recorded.get(task.key);
  if (h === undefined) {
    h = ticket();
    appendOp(rec, { op: "open", t: h, path: task.file, flags: "r+" });
    recorded.set(task.key, h);
  }
  return h;
}

function writeAll(fd: number, buf: Uint8Array, pos: number): void {
  let done = 0;
  while (done < buf.byteLength) {
    done += fs.writeSync(fd, buf, done, buf.byteLength - done, pos + done);
  }
}

function readAll(fd: number, buf: Uint8Array, pos: number): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = fs.readSync(fd, buf, done, buf.byteLength - done, pos + done);
    if (n === 0) {
      buf.fill(0, done);
      return;
    }
    done += n;
  }
}

/** Zeroes the bytes of a reused output buffer that no `readOut` step fills (their `at` ranges ascend). */
function zeroGaps(out: Uint8Array, ops: IoTask["ops"]): void {
  let at = 0;
  for (const op of ops) {
    if (op.op !== "readOut") continue;
    if (op.at > at) out.fill(0, at, op.at);
    at = Math.max(at, op.at + op.len);
  }
  if (at < out.byteLength) out.fill(0, at);
}

export default function run(task: IoTask): IoResult | ReturnType<typeof move> {
  try {
    const fd = fdFor(task);
    const out = task.into ? new Uint8Array(task.into, 0, task.out) : task.out !== undefined ? new Uint8Array(task.out) : undefined;
    if (task.into) zeroGaps(out!, task.ops);
    const rec = task.rec;
    const h = rec === undefined ? 0 : handleOf(task, rec);
    for (const op of task.ops) {
      switch (op.op) {
        case "write":
          writeAll(fd, arena.subarray(op.at, op.at + op.len), op.pos);
          if (rec !== undefined) appendOp(rec, { op: "pwrite", t: ticket(), h, pos: op.pos }, arena.subarray(op.at, op.at + op.len));
          break;
        case "read":
          readAll(fd, arena.subarray(op.at, op.at + op.len), op.pos);
          break;
        case "readShared":
          readAll(fd, readArena.subarray(op.at, op.at + op.len), op.pos);
          break;
        case "readOut":
          readAll(fd, out!.subarray(op.at, op.at + op.len), op.pos);
          break;
        case "copy":
          for (let k = 0; k < op.len; k += CHUNK) {
            const piece = scratch.subarray(0, Math.min(CHUNK, op.len - k));
            readAll(fd, piece, op.src + k);
            writeAll(fd, piece, op.pos + k);
            if (rec !== undefined) appendOp(rec, { op: "pwrite", t: ticket(), h, pos: op.pos + k }, piece);
          }
          break;
        case "zero":
          for (let k = 0; k < op.len; k += CHUNK) {
            writeAll(fd, zeros.subarray(0, Math.min(CHUNK, op.len - k)), op.pos + k);
          }
          if (rec !== undefined) appendOp(rec, { op: "zero", t: ticket(), h, pos: op.pos, len: op.len });
          break;
        case "sync": {
          if (rec !== undefined) delayRecordedSyncSync();
          const t0 = rec === undefined ? 0 : ticket();
          fs.fdatasyncSync(fd);
          if (rec !== undefined) appendOp(rec, { op: "fsync", t0, t: ticket(), h });
          break;
        }
        case "punch":
          punchHolesSync(task.file, [{ offset: op.pos, length: op.len }]);
          if (rec !== undefined) appendOp(rec, { op: "punch", t: ticket(), h, pos: op.pos, len: op.len });
          break;
        case "discard":
          discardSync(task.file, [{ offset: op.pos, length: op.len }]);
          break;
      }
    }
    return out ? move(out.buffer) : null;
  } catch (e) {
    const err = e as { code?: string; message?: string; syscall?: string };
    return { code: err.code, message: String(err.message ?? e), syscall: err.syscall };
  }
}
