/**
 * Gzip worker: deflates one block of the parallel gzip per task (src/interchange/gzip.ts)
 * with its CRC-32, off the main thread (Deno's node:zlib deflates on the thread that
 * calls it). The block's buffer comes transferred; the output goes back as an
 * `ArrayBuffer` of its own (Deno 2.9 passes a returned `Uint8Array` so slowly that it held
 * the main thread for ~100 ms a MiB; a plain `ArrayBuffer` goes at memcpy speed).
 */
import { crc32 } from "../src/interchange/crc32.ts";
import { deflateBlock } from "../src/interchange/deflateblock.ts";
import type { BlockTask, WorkerResult } from "../src/interchange/gzip.ts";

/** Deflates `task`'s block; its CRC-32 is of the block's bytes (not of the window before them). */
export default async function deflate(task: BlockTask): Promise<WorkerResult> {
  const buf = new Uint8Array(task.buf, 0, task.length);
  const out = await deflateBlock({ buf, window: task.window, level: task.level, last: task.last });
  return { out: out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength) as ArrayBuffer, crc: crc32(buf.subarray(task.window)) };
}
