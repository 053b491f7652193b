/**
 * A regular file's bytes: inline in the inode while small, otherwise pages of the
 * layer's device. Writes into mapped pages go in place, which is where the thin device
 * copies one shared block and no more (a 32 KiB write into a 1 GiB image file costs
 * one block); holes get fresh pages, zero-padded so that no stale device bytes can ever
 * be read back; holes read as zeros without device I/O.
 *
 * Every function here takes an inode the layer holds itself (copied up already).
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { ReadLease, ThinDevice } from "../pool/types.ts";
import { mapPages, mappedPages, segments, tailHint, unmapFrom } from "./filemap.ts";
import { INLINE_MAX, type Inode, PAGE } from "./inode.ts";
import type { Layer } from "./layer.ts";

/** What file I/O needs: the layer and its device. */
export interface DataContext {
  readonly layer: Layer;
  readonly device: ThinDevice;
  readonly blockSize: number;
}

/**
 * Bytes of data a file holds in the device (inline files hold none).
 *
 * @example
 * ```ts ignore
 * console.log(allocatedBytes(inode) / 512); // st_blocks
 * ```
 */
export function allocatedBytes(inode: Inode): number {
  return inode.extents ? mappedPages(inode.extents) * PAGE : 0;
}

/**
 * Reads up to `length` bytes at `position`, stopping at the end of the file.
 *
 * @example
 * ```ts ignore
 * const head = await readData(ctx, inode, 0, 16);
 * ```
 */
export async function readData(ctx: DataContext, inode: Inode, position: number, length: number): Promise<Uint8Array> {
  const end = Math.min(inode.size, position + length);
  if (end <= position) return new Uint8Array(0);
  if (inode.inline) {
    const out = new Uint8Array(end - position);
    out.set(inode.inline.subarray(position, Math.min(end, inode.inline.length)));
    return out;
  }
  const segs = segments(inode.extents ?? [], Math.floor(position / PAGE), Math.ceil(end / PAGE));
  if (segs.length === 1 && segs[0].dev >= 0) {
    // One contiguous run on the device (the usual case): its read is the answer, no second copy.
    const s = segs[0];
    return await ctx.device.read(s.dev * PAGE + (position - s.page * PAGE), end - position);
  }
  const out = new Uint8Array(end - position);
  await Promise.all(segs.filter((s) => s.dev >= 0).map(async (s) => {
    const from = Math.max(position, s.page * PAGE);
    const to = Math.min(end, (s.page + s.count) * PAGE);
    const bytes = await ctx.device.read(s.dev * PAGE + (from - s.page * PAGE), to - from);
    out.set(bytes, from - position);
  }));
  return out;
}

/**
 * Reads up to `length` bytes at `position` (stopping at the end of the file) into memory
 * shared with the I/O workers (`ThinDevice.lease`), when the range is one run of the
 * device's pages; undefined otherwise (inline data, holes, fragments, nothing to read,
 * or no shared memory free): read with {@linkcode readData} then.
 *
 * @example
 * ```ts ignore
 * const lease = await leaseData(ctx, inode, 0, 1 << 20);
 * if (lease) { send(lease.bytes); lease.release(); }
 * ```
 */
export function leaseData(ctx: DataContext, inode: Inode, position: number, length: number): Promise<ReadLease | undefined> | undefined {
  const end = Math.min(inode.size, position + length);
  if (end <= position || inode.inline) return undefined;
  const segs = segments(inode.extents ?? [], Math.floor(position / PAGE), Math.ceil(end / PAGE));
  if (segs.length !== 1 || segs[0].dev < 0) return undefined;
  const s = segs[0];
  return ctx.device.lease(s.dev * PAGE + (position - s.page * PAGE), end - position);
}

/**
 * Reads up to `target.byteLength` bytes at `position` into `target`, stopping at the end
 * of the file; returns the count. Allocates nothing: for readers that reuse a buffer.
 *
 * @example
 * ```ts ignore
 * const buf = new Uint8Array(1 << 20);
 * for (let at = 0, n; (n = await readDataInto(ctx, inode, at, buf)) > 0; at += n) sink(buf.subarray(0, n));
 * ```
 */
export async function readDataInto(ctx: DataContext, inode: Inode, position: number, target: Uint8Array): Promise<number> {
  const end = Math.min(inode.size, position + target.byteLength);
  if (end <= position) return 0;
  const n = end - position;
  if (inode.inline) {
    const from = inode.inline.subarray(Math.min(position, inode.inline.length), Math.min(end, inode.inline.length));
    target.set(from);
    target.fill(0, from.length, n);
    return n;
  }
  const segs = segments(inode.extents ?? [], Math.floor(position / PAGE), Math.ceil(end / PAGE));
  await Promise.all(segs.map((s) => {
    const from = Math.max(position, s.page * PAGE);
    const to = Math.min(end, (s.page + s.count) * PAGE);
    const part = target.subarray(from - position, to - position);
    if (s.dev < 0) {
      part.fill(0);
      return undefined;
    }
    return ctx.device.readInto(s.dev * PAGE + (from - s.page * PAGE), part);
  }));
  return n;
}

/**
 * Writes `bytes` at `position`, growing the file as needed. ENOSPC when the layer's device is full.
 *
 * @example
 * ```ts ignore
 * await writeData(ctx, tree.own(ino), 512 * 2 ** 20, new Uint8Array(32768)); // one block copied
 * ```
 */
export async function writeData(ctx: DataContext, inode: Inode, position: number, bytes: Uint8Array): Promise<void> {
  const end = position + bytes.byteLength;
  if (bytes.byteLength === 0) return;
  if (inode.inline) {
    if (end <= INLINE_MAX) {
      const size = Math.max(inode.size, end);
      const next = new Uint8Array(size);
      next.set(inode.inline.subarray(0, inode.size));
      next.set(bytes, position);
      inode.inline = next;
      inode.size = size;
      return;
    }
    await materialize(ctx, inode);
  }
  await writePages(ctx, inode, position, bytes);
  inode.size = Math.max(inode.size, end);
}

/** Moves inline bytes into device pages, before the file outgrows the inline limit. */
async function materialize(ctx: DataContext, inode: Inode): Promise<void> {
  const old = inode.inline!.subarray(0, inode.size);
  inode.inline = undefined;
  inode.extents = [];
  if (old.some((b) => b !== 0)) await writePages(ctx, inode, 0, old);
}

async function writePages(ctx: DataContext, inode: Inode, position: number, bytes: Uint8Array): Promise<void> {
  const { layer, device } = ctx;
  const extents = inode.extents!;
  const end = position + bytes.byteLength;
  const ppb = layer.alloc.pagesPerBlock;
  for (const s of segments(extents, Math.floor(position / PAGE), Math.ceil(end / PAGE))) {
    const from = Math.max(position, s.page * PAGE);
    const to = Math.min(end, (s.page + s.count) * PAGE);
    if (s.dev >= 0) {
      const at = s.dev * PAGE + (from - s.page * PAGE);
      await device.write(at, bytes.subarray(from - position, to - position));
      layer.alloc.markOwn(Math.floor(at / PAGE), Math.ceil((at + to - from) / PAGE) - Math.floor(at / PAGE));
      continue;
    }
    const runs = layer.alloc.allocate(s.count, { near: tailHint(extents, s.page), align: s.page % ppb });
    if (!runs) {
      throw storeError("ENOSPC", "write", undefined,
        `the layer's device has ${layer.alloc.freePages * PAGE} bytes free, fewer than ${s.count * PAGE} usable; the base size (dm.basesize) bounds a layer`);
    }
    layer.allocDirty = true;
    let page = s.page;
    for (const [i, r] of runs.entries()) {
      const pFrom = page * PAGE;
      const pTo = (page + r.count) * PAGE;
      const lo = Math.max(from, pFrom);
      const hi = Math.min(to, pTo);
      let buf: Uint8Array;
      if (lo === pFrom && hi === pTo) buf = bytes.subarray(lo - position, hi - position);
      else {
        // Fresh pages are padded with zeros: the device may hold an earlier file's bytes there.
        buf = new Uint8Array(pTo - pFrom);
        if (hi > lo) buf.set(bytes.subarray(lo - position, hi - position), lo - pFrom);
      }
      try {
        await device.write(r.start * PAGE, buf);
      } catch (e) {
        // Pages that got no data go back, so nothing is allocated without a file.
        await freeRuns(ctx, runs.slice(i).map((x) => ({ dev: x.start, count: x.count })));
        throw e;
      }
      mapPages(extents, page, r.start, r.count);
      page += r.count;
    }
  }
}

/**
 * Sets the file's size: cut pages go back to the layer, a grown tail is a hole.
 *
 * @example
 * ```ts ignore
 * await truncateData(ctx, tree.own(ino), 0);
 * ```
 */
export async function truncateData(ctx: DataContext, inode: Inode, length: number): Promise<void> {
  if (inode.inline) {
    if (length <= INLINE_MAX) {
      const next = new Uint8Array(length);
      next.set(inode.inline.subarray(0, Math.min(length, inode.size)));
      inode.inline = next;
      inode.size = length;
      return;
    }
    await materialize(ctx, inode);
  }
  if (length === 0) {
    await freeData(ctx, inode);
    return;
  }
  if (length < inode.size) {
    const extents = inode.extents!;
    await freeRuns(ctx, unmapFrom(extents, Math.ceil(length / PAGE)));
    const tail = length % PAGE;
    const [last] = segments(extents, Math.floor(length / PAGE), Math.floor(length / PAGE) + 1);
    if (tail > 0 && last.dev >= 0) {
      // Bytes past the end must read as zeros if the file grows again.
      await ctx.device.write(last.dev * PAGE + tail, new Uint8Array(PAGE - tail));
      ctx.layer.alloc.markOwn(last.dev, 1);
    }
  }
  inode.size = length;
}

/**
 * Gives every page of the file back to the layer; the file becomes empty.
 *
 * @example
 * ```ts ignore
 * await freeData(ctx, inode); // before the inode is dropped
 * ```
 */
export async function freeData(ctx: DataContext, inode: Inode): Promise<void> {
  if (inode.extents) await freeRuns(ctx, unmapFrom(inode.extents, 0));
  inode.extents = undefined;
  inode.inline = new Uint8Array(0);
  inode.size = 0;
}

/**
 * Frees device pages; blocks left wholly free are discarded, so the pool gets them back.
 *
 * @example
 * ```ts ignore
 * await freeRuns(ctx, unmapFrom(inode.extents!, 16));
 * ```
 */
export async function freeRuns(ctx: DataContext, runs: { dev: number; count: number }[]): Promise<void> {
  if (runs.length === 0) return;
  const blocks: number[] = [];
  for (const r of runs) blocks.push(...ctx.layer.alloc.free(r.dev, r.count));
  ctx.layer.allocDirty = true;
  blocks.sort((a, b) => a - b);
  for (let i = 0; i < blocks.length;) {
    let j = i + 1;
    while (j < blocks.length && blocks[j] === blocks[j - 1] + 1) j++;
    await ctx.device.discard(blocks[i] * ctx.blockSize, (j - i) * ctx.blockSize);
    i = j;
  }
}
