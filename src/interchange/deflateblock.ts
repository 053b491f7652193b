/**
 * One block of the parallel gzip (gzip.ts): its bytes deflated raw on their own, as if
 * they came right after the 32 KiB before them (deflate's window), and ended with a sync
 * flush (byte-aligned, not final) or, for the last block, as the stream's end. Blocks
 * made so, concatenated, are one deflate stream: a decoder has the previous block's
 * bytes in its window when the next one refers back into them.
 *
 * The bytes depend on the block's bytes, its window and the level only. node:zlib takes
 * the window as a preset dictionary (Node does); Deno 2.9's node:zlib ignores
 * `dictionary` when deflating, so there the window is deflated first and its output
 * dropped up to the sync flush after it, which leaves deflate's history as the
 * dictionary would. Which way is used is found once, by trying the dictionary.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import zlib from "node:zlib";

/** Deflate's window: how far back a block may refer. */
export const WINDOW = 32 * 1024;

/** A block to deflate: `buf` holds `window` bytes of what came before, then the block. */
export interface DeflateBlock {
  buf: Uint8Array;
  window: number;
  level: number;
  /** The stream's last block: ends with the final deflate block, not a sync flush. */
  last: boolean;
}

/** The empty stored block a sync flush ends with. */
const SYNC_MARK = [0, 0, 0xff, 0xff];

let presetWorks: boolean | undefined;

/** Whether node:zlib's deflate uses a preset dictionary (it shortens output that repeats the dictionary). */
export function dictionaryWorks(): boolean {
  if (presetWorks === undefined) {
    const sample = new Uint8Array(2048);
    for (let i = 0, x = 12345; i < sample.length; i++) sample[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
    presetWorks = zlib.deflateRawSync(sample, { dictionary: sample }).length < zlib.deflateRawSync(sample).length / 2;
  }
  return presetWorks;
}

/** Room for a block's output in one piece (deflate adds at most a few bytes per 16 KiB stored). */
const outputRoom = (n: number) => n + (n >> 8) + 1024;

/** The raw deflate of `block` (see the module doc). */
export function deflateBlock(block: DeflateBlock): Promise<Uint8Array> {
  const { buf, window, level, last } = block;
  const data = buf.subarray(window);
  const finishFlush = last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH;
  if (window === 0 || dictionaryWorks()) {
    return new Promise((resolve, reject) => {
      zlib.deflateRaw(data, { level, finishFlush, chunkSize: outputRoom(data.length), ...(window ? { dictionary: buf.subarray(0, window) } : {}) }, (e, out) => {
        if (e) reject(e);
        else resolve(out);
      });
    });
  }
  return primed(buf, window, level, last);
}

/** Deflates the window, sync-flushes, deflates the block, and keeps the output after the flush. */
function primed(buf: Uint8Array, window: number, level: number, last: boolean): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const z = zlib.createDeflateRaw({ level, chunkSize: outputRoom(buf.length) });
    const parts: Buffer[] = [];
    let skip = -1;
    z.on("data", (d: Buffer) => parts.push(d));
    z.on("error", reject);
    const output = () => Buffer.concat(parts);
    z.write(buf.subarray(0, window));
    z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
      const head = output();
      skip = head.length;
      // The history is the window only if all of it went out before this point.
      if (skip < 4 || SYNC_MARK.some((b, i) => head[skip - 4 + i] !== b)) {
        reject(new Error("deflate did not end the window with a sync flush"));
        z.destroy();
        return;
      }
      if (last) z.end(buf.subarray(window));
      else {
        z.write(buf.subarray(window));
        z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          resolve(new Uint8Array(output().subarray(skip)));
          z.destroy();
        });
      }
    });
    z.on("end", () => resolve(new Uint8Array(output().subarray(skip))));
  });
}
