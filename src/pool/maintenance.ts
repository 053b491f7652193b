/**
 * Looking after a pool's space, as LVM and dm-thin's tools do around the kernel target:
 * growing and shrinking the data file, punching free blocks out of it (trim), growing it
 * by itself past a threshold (autoextend), and refusing new work below a minimum of free
 * space. The callers (`Pool`) hold the pool's write lock.
 *
 * @module
 */
import fs from "node:fs/promises";
import { storeError } from "../common/errors.ts";
import type { CommitEngine } from "./commit.ts";
import type { PoolCore } from "./core.ts";
import type { IoOp } from "./iotask.ts";
import { blockDeviceSize } from "./blockdev.ts";
import { discardMethod, type DiscardMethod } from "./discard.ts";
import { type ByteRange, punchMethod, type PunchMethod } from "./punch.ts";
import type { BlockNo, PoolSettings } from "./types.ts";

/**
 * Most data blocks a pool takes: each has a 32-bit reference count in memory, and map
 * leaves hold block numbers plus one in 32 bits (2^31 keeps the counts to 8 GiB).
 */
export const MAX_DATA_BLOCKS = 2 ** 31;

/** What {@linkcode Pool.trim} did. */
export interface TrimResult {
  /** Free blocks whose space was given back to the host. */
  blocks: number;
  /** Contiguous ranges punched. */
  ranges: number;
  /** How the holes were punched (direct mode: how the ranges were discarded); `"none"` when no block was free. */
  method: PunchMethod | DiscardMethod | "none";
}

/** EINVAL for a data size of more blocks than a pool takes. */
export function checkBlocks(blocks: number, blockSize: number, syscall: string, dir: string): void {
  if (blocks > MAX_DATA_BLOCKS) {
    throw storeError("EINVAL", syscall, dir,
      `a data size of ${blocks} blocks is over the ${MAX_DATA_BLOCKS} blocks a pool takes; the largest with ${blockSize}-byte blocks is ${MAX_DATA_BLOCKS * blockSize} bytes (larger blocks allow more)`);
  }
}

/** `s` when every setting is in range; EINVAL naming the first that is not. */
export function checkSettings(s: PoolSettings, dir: string): PoolSettings {
  const pct = (v: number, name: string, max = 100) => {
    if (!Number.isFinite(v) || v < 0 || v > max) throw storeError("EINVAL", "configure", dir, `${name} '${v}' must be a percentage from 0 to ${max}`);
  };
  pct(s.minFreeSpacePercent, "minimum free space", 99);
  pct(s.autoextendThreshold, "autoextend threshold");
  pct(s.autoextendPercent, "autoextend percent", 1000);
  pct(s.lowWaterMarkPercent, "low water mark");
  pct(s.metadataLowWaterMarkPercent, "metadata low water mark");
  return s;
}

/** Grows or shrinks the data file to `dataSize` bytes (see {@linkcode Pool.resize}). */
export async function resize(core: PoolCore, engine: CommitEngine, dataSize?: number): Promise<void> {
  const { space, blockSize, dir, ctx, dataDevice } = core;
  const deviceSize = dataDevice === undefined ? undefined : await blockDeviceSize(dataDevice, "resize");
  if (dataSize === undefined && deviceSize === undefined) {
    throw storeError("EINVAL", "resize", dir, "a pool over a data file needs the new data size; only a pool on a data device follows its device's size");
  }
  dataSize ??= deviceSize!;
  if (!Number.isSafeInteger(dataSize) || dataSize < blockSize) {
    throw storeError("EINVAL", "resize", dir, `data size '${dataSize}' must be a whole number of bytes of at least one block`);
  }
  const blocks = Math.floor(dataSize / blockSize);
  checkBlocks(blocks, blockSize, "resize", dir);
  if (deviceSize !== undefined && blocks * blockSize > deviceSize) {
    throw storeError("EINVAL", "resize", dataDevice, `data size '${dataSize}' is more than the device's ${deviceSize} bytes; grow the device first (lvextend, or the loop device's file and 'losetup -c')`);
  }
  if (blocks >= space.total) {
    // The file grows first: a larger file than the record says is harmless at open.
    if (deviceSize === undefined) await fs.truncate(ctx.file, blocks * blockSize);
    space.grow(blocks);
    return;
  }
  for (let b = blocks; b < space.total; b++) {
    if (space.refs[b] !== 0 || space.pending.has(b)) {
      throw storeError("ENOSPC", "resize", dir, `block ${b} past the new end is in use; the pool cannot shrink below what it holds`);
    }
  }
  // The file loses its tail only once a commit records the smaller pool: a crash in
  // between must not leave a record that needs more file than there is.
  const release = engine.holdOrRefuse("resize");
  const total = space.total;
  space.shrink(blocks);
  try {
    await engine.commit();
  } catch (e) {
    space.grow(total);
    throw e;
  } finally {
    release();
  }
  if (deviceSize === undefined) await fs.truncate(ctx.file, blocks * blockSize);
}

/** The blocks no device sees and no commit still references: free for reuse. */
export function freeBlocks(core: PoolCore): BlockNo[] {
  const { space } = core;
  const out: BlockNo[] = [];
  for (let b = 0; b < space.total; b++) if (space.refs[b] === 0 && !space.pending.has(b)) out.push(b);
  return out;
}

/** Punches the free blocks out of the data file (see {@linkcode Pool.trim}). */
export async function trim(core: PoolCore): Promise<TrimResult> {
  const { ctx, blockSize: bs } = core;
  // A block freed in this transaction may still have a write queued on it.
  await ctx.inflight.drain();
  const ranges: ByteRange[] = [];
  const free = freeBlocks(core);
  for (const b of free) {
    const last = ranges[ranges.length - 1];
    if (last && last.offset + last.length === b * bs) last.length += bs;
    else ranges.push({ offset: b * bs, length: bs });
  }
  if (ranges.length === 0) return { blocks: 0, ranges: 0, method: "none" };
  const direct = core.dataDevice !== undefined;
  // A discard drops the device's cached pages of the range, which it cannot do while one
  // is dirty (a block written and freed since the last sync): sync first.
  if (direct) await core.io.run({ file: ctx.file, key: ctx.key, ops: [{ op: "sync" }] });
  // In the workers, a batch of ranges a task, the batches in parallel.
  const PER_TASK = 256;
  const tasks: Promise<void>[] = [];
  for (let i = 0; i < ranges.length; i += PER_TASK) {
    const ops: IoOp[] = ranges.slice(i, i + PER_TASK).map((r) => ({ op: direct ? "discard" : "punch", pos: r.offset, len: r.length }));
    tasks.push(core.io.run({ file: ctx.file, key: ctx.key, ops }));
  }
  const results = await Promise.allSettled(tasks);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return { blocks: free.length, ranges: ranges.length, method: direct ? discardMethod() : punchMethod() };
}

/** Grows the data file by the autoextend percentage once use passes the threshold. */
export async function autoextend(core: PoolCore): Promise<void> {
  const { autoextendThreshold: threshold, autoextendPercent: percent } = core.settings;
  const { space } = core;
  const total = space.total;
  if (threshold >= 100 || percent <= 0 || space.used * 100 <= total * threshold) return;
  let grown = Math.min(MAX_DATA_BLOCKS, total + Math.max(1, Math.ceil(total * percent / 100)));
  // Direct mode: the pool grows into what the device has beyond it (LVM's autoextend
  // grows the device; here an operator's lvextend does), never past it.
  if (core.dataDevice !== undefined) grown = Math.min(grown, Math.floor(await blockDeviceSize(core.dataDevice, "autoextend") / core.blockSize));
  if (grown <= total) return;
  if (core.dataDevice === undefined) await fs.truncate(core.ctx.file, grown * core.blockSize);
  space.grow(grown);
  core.autoextended({ fromBlocks: total, toBlocks: grown, usedBlocks: space.used });
}

/** ENOSPC when free data space is below the minimum free space setting (see {@linkcode Pool.checkFreeSpace}). */
export function checkFreeSpace(core: PoolCore, syscall: string): void {
  const { used, total } = core.space;
  const free = total - used;
  const min = Math.ceil(total * core.settings.minFreeSpacePercent / 100);
  if (free < min) {
    throw storeError("ENOSPC", syscall, core.dir,
      `free data space is ${free} of ${total} blocks, below the minimum free space of ${core.settings.minFreeSpacePercent}% (dm.min_free_space); free space by removing layers, or grow the pool with resize`);
  }
}
