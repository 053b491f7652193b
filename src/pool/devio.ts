/**
 * Reads, writes and discards of one thin device, planned on the main thread (which
 * pool block each byte goes to) and carried out by the I/O workers.
 *
 * A write to a block goes in place only when the block is this device's alone and was
 * allocated in the open transaction. Otherwise it is redirected to a new block: shared
 * blocks so the other devices never see the write (copy-on-write), committed blocks so
 * that the last commit's data stays intact until the next commit (a crash then reopens
 * exactly the committed bytes). Only a partial-block write copies the old block, inside
 * a worker; a whole-block write just writes the new block.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { BlockIo, SLOT_SIZE } from "./blockio.ts";
import type { Inflight } from "./inflight.ts";
import type { IoOp, IoTask } from "./iotask.ts";
import type { MapForest, Mapping } from "./maptree.ts";
import type { SpaceMap } from "./spacemap.ts";
import type { BlockNo, DeviceId, ReadLease, VBlock } from "./types.ts";

/** What device I/O needs from its pool. */
export interface IoContext {
  readonly io: BlockIo;
  readonly forest: MapForest;
  readonly space: SpaceMap;
  readonly blockSize: number;
  readonly file: string;
  readonly key: string;
  /** The pool's running tasks: orders tasks on the same blocks, keeps background failures. */
  readonly inflight: Inflight;
  /** Commits to make the open transaction's freed blocks allocatable; false if that frees nothing. */
  reclaim(): Promise<boolean>;
}

/** A data transfer between the file and a byte array: `pos` in the file, `at` in the array. */
export interface Piece { pos: number; at: number; len: number }

/** Checks that a range lies inside a device; EINVAL otherwise. */
export function checkRange(id: DeviceId, size: number, offset: number, length: number, syscall: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw storeError("EINVAL", syscall, `device ${id}`, `range [${offset}, ${offset}+${length}) is outside the device's ${size} bytes`);
  }
}

/** Appends a piece, merging it into the last one when both are contiguous. */
function push(pieces: Piece[], p: Piece): void {
  const last = pieces[pieces.length - 1];
  if (last && last.pos + last.len === p.pos && last.at + last.len === p.at) last.len += p.len;
  else pieces.push(p);
}

/** Splits pieces into batches of at most one arena slot of data each. */
function batches(pieces: Piece[]): Piece[][] {
  const out: Piece[][] = [];
  let cur: Piece[] = [];
  let fill = 0;
  for (const p of pieces) {
    for (let k = 0; k < p.len;) {
      const n = Math.min(p.len - k, SLOT_SIZE - fill);
      cur.push({ pos: p.pos + k, at: p.at + k, len: n });
      fill += n;
      k += n;
      if (fill === SLOT_SIZE) { out.push(cur); cur = []; fill = 0; }
    }
  }
  if (cur.length) out.push(cur);
  return out;
}

/** The mapped pieces of a range (`at` relative to `offset`); unmapped blocks have none. */
export function planRead(ctx: IoContext, m: Mapping, offset: number, length: number): Piece[] {
  const bs = ctx.blockSize;
  const pieces: Piece[] = [];
  for (let off = offset; off < offset + length;) {
    const vb: VBlock = Math.floor(off / bs);
    const inBlock = off - vb * bs;
    const len = Math.min(bs - inBlock, offset + length - off);
    const pb = ctx.forest.lookup(m, vb);
    if (pb >= 0) push(pieces, { pos: pb * bs + inBlock, at: off - offset, len });
    off += len;
  }
  return pieces;
}

/**
 * Reads a range; unmapped blocks read as zeros without I/O. One task reads every mapped
 * piece into a buffer of its own and hands it over, so the bytes are copied once, as
 * node:fs does, not once into the arena and again out of it.
 */
export async function readRange(ctx: IoContext, m: Mapping, offset: number, length: number): Promise<Uint8Array> {
  const pieces = planRead(ctx, m, offset, length);
  if (pieces.length === 0) return new Uint8Array(length);
  return new Uint8Array(await scheduleRead(ctx, readTask(ctx, pieces, length)));
}

/**
 * Reads a range into a slot of the read arena (see `BlockIo.takeReadSlot`); undefined,
 * reading nothing, when the range is larger than a slot or no slot is free.
 */
export async function leaseRange(ctx: IoContext, m: Mapping, offset: number, length: number): Promise<ReadLease | undefined> {
  if (length > SLOT_SIZE) return undefined;
  const slot = ctx.io.takeReadSlot();
  if (slot === undefined) return undefined;
  let held = true;
  const release = () => {
    if (held) ctx.io.giveReadSlot(slot);
    held = false;
  };
  const bytes = ctx.io.readArena.subarray(slot, slot + length);
  try {
    const pieces = planRead(ctx, m, offset, length);
    // Unmapped blocks read as zeros; the slot holds an earlier read's bytes.
    let at = 0;
    for (const p of pieces) {
      if (p.at > at) bytes.fill(0, at, p.at);
      at = p.at + p.len;
    }
    if (at < length) bytes.fill(0, at);
    if (pieces.length) {
      const task: IoTask = { file: ctx.file, key: ctx.key, ops: pieces.map((p) => ({ op: "readShared", pos: p.pos, at: slot + p.at, len: p.len })) };
      await ctx.inflight.schedule(task.ops, () => ctx.io.run(task));
    }
  } catch (e) {
    release();
    throw e;
  }
  return { bytes, release };
}

/** Runs a read task after the writes queued before it on the same blocks. */
export function scheduleRead(ctx: IoContext, task: IoTask & { out: number }): Promise<ArrayBuffer> {
  return ctx.inflight.schedule(task.ops, () => ctx.io.read(task));
}

/**
 * The task that reads `pieces` into an output buffer of `length` bytes: a new one, or
 * the start of `into` (of at least `length` bytes) to reuse.
 */
export function readTask(ctx: IoContext, pieces: Piece[], length: number, into?: ArrayBuffer): IoTask & { out: number } {
  const task: IoTask & { out: number } = { file: ctx.file, key: ctx.key, out: length, ops: pieces.map((p) => ({ op: "readOut", pos: p.pos, at: p.at, len: p.len })) };
  if (into) task.into = into;
  return task;
}

/** How one block of a write is carried out. */
interface BlockPlan {
  vb: VBlock;
  /** The block written; a new one unless the write goes in place. */
  target: BlockNo;
  fresh: boolean;
  /** Block to copy first (partial write over mapped data). */
  copyFrom: BlockNo;
  inBlock: number;
  len: number;
  /** Offset of this block's bytes in the caller's buffer. */
  at: number;
}

/** A range of a device to write from the caller's buffer: `at` is where its bytes start there. */
export interface WriteSpan { offset: number; length: number; at: number }

/** Plans every block of `spans`; `needed` counts the new blocks the plan takes. */
function planWrite(ctx: IoContext, m: Mapping, spans: WriteSpan[]): { plans: BlockPlan[]; needed: number } {
  const bs = ctx.blockSize;
  const plans: BlockPlan[] = [];
  let needed = 0;
  for (const span of spans) {
    const end = span.offset + span.length;
    for (let off = span.offset; off < end;) {
      const vb = Math.floor(off / bs);
      const inBlock = off - vb * bs;
      const len = Math.min(bs - inBlock, end - off);
      const { block, exclusive } = ctx.forest.resolve(m, vb);
      const inPlace = block >= 0 && exclusive && ctx.space.isFresh(block);
      if (!inPlace) needed++;
      plans.push({ vb, target: inPlace ? block : -1, fresh: !inPlace, copyFrom: inPlace || len === bs ? -1 : block, inBlock, len, at: span.at + off - span.offset });
      off += len;
    }
  }
  return { plans, needed };
}

/** Writes a range: allocate-on-demand, copy-on-write, redirect-on-write. ENOSPC changes nothing. */
export function writeRange(ctx: IoContext, id: DeviceId, m: Mapping, offset: number, bytes: Uint8Array): Promise<void> {
  return writeSpans(ctx, id, m, [{ offset, length: bytes.byteLength, at: 0 }], bytes, "write");
}

/**
 * Writes several ranges of one device as one operation: every block is planned and
 * allocated before any byte moves, so ENOSPC changes nothing at all.
 */
export async function writeSpans(ctx: IoContext, id: DeviceId, m: Mapping, spans: WriteSpan[], bytes: Uint8Array, syscall: string): Promise<void> {
  let { plans, needed } = planWrite(ctx, m, spans);
  if (needed > ctx.space.allocatable) {
    // Blocks freed in this transaction become usable once it commits, as dm-thin does when
    // it runs out. The commit makes every block committed, so the plan is made again: a
    // block planned to be written in place is now part of the committed state.
    if (await ctx.reclaim()) ({ plans, needed } = planWrite(ctx, m, spans));
    if (needed > ctx.space.allocatable) {
      const pending = ctx.space.pending.size;
      throw storeError("ENOSPC", syscall, `device ${id}`,
        `the pool needs ${needed} free block(s) and has ${ctx.space.allocatable}` +
        (pending ? ` (${pending} more once the open transaction commits)` : "") +
        "; discard or delete devices, or resize the pool");
    }
  }
  for (const p of plans) if (p.fresh) p.target = ctx.space.allocate();
  try {
    await carryOut(ctx, plans, bytes);
  } catch (e) {
    for (const p of plans) if (p.fresh) ctx.space.unref(p.target);
    throw e;
  }
  for (const p of plans) {
    if (!p.fresh) continue;
    const old = ctx.forest.set(m, p.vb, p.target);
    if (old >= 0) ctx.space.unref(old);
  }
}

async function carryOut(ctx: IoContext, plans: BlockPlan[], bytes: Uint8Array): Promise<void> {
  const bs = ctx.blockSize;
  // Copies first: the partial write that follows lands on top of the copied block.
  const copies: IoOp[] = [];
  const zeros: IoOp[] = [];
  const pieces: Piece[] = [];
  for (const p of plans) {
    const base = p.target * bs;
    if (p.copyFrom >= 0) copies.push({ op: "copy", src: p.copyFrom * bs, pos: base, len: bs });
    else if (p.fresh && p.len < bs) {
      // A new block may hold an earlier owner's bytes: zero what this write does not cover.
      if (p.inBlock > 0) zeros.push({ op: "zero", pos: base, len: p.inBlock });
      const end = p.inBlock + p.len;
      if (end < bs) zeros.push({ op: "zero", pos: base + end, len: bs - end });
    }
    push(pieces, { pos: base + p.inBlock, at: p.at, len: p.len });
  }
  // Write-behind (see inflight.ts): each task is queued behind earlier tasks on its blocks
  // and the write returns once its bytes are in the arena; a slot is given back when its
  // task is done, so at most the arena's size is in flight. Copies go first: in the same
  // task as a write of up to one slot (a task's steps run in order), else in a task of
  // their own that the writes on those blocks then queue behind.
  const parts = batches(pieces);
  const inline = parts.length <= 1;
  const task = (ops: IoOp[]): IoTask => ({ file: ctx.file, key: ctx.key, ops });
  if (copies.length && !inline) ctx.inflight.behind(copies, () => ctx.io.run(task(copies)));
  if (parts.length === 0 && (zeros.length || copies.length)) {
    const ops = [...copies, ...zeros];
    ctx.inflight.behind(ops, () => ctx.io.run(task(ops)));
  }
  for (let i = 0; i < parts.length; i++) {
    const slot = await ctx.io.takeSlot();
    let fill = 0;
    const ops: IoOp[] = i === 0 ? (inline ? [...copies, ...zeros] : zeros) : [];
    for (const p of parts[i]) {
      ctx.io.arena.set(bytes.subarray(p.at, p.at + p.len), slot + fill);
      ops.push({ op: "write", pos: p.pos, at: slot + fill, len: p.len });
      fill += p.len;
    }
    ctx.inflight.behind(ops, () => ctx.io.run(task(ops)).finally(() => ctx.io.giveSlot(slot)));
  }
}

/**
 * Discards a range: whole blocks are unmapped, the partial edges are zeroed. The edges are
 * written first, as one operation, so a pool too full to zero them fails with ENOSPC
 * before anything changes.
 */
export async function discardRange(ctx: IoContext, id: DeviceId, m: Mapping, offset: number, length: number): Promise<void> {
  const bs = ctx.blockSize;
  const end = offset + length;
  const first = Math.ceil(offset / bs);
  const last = Math.floor(end / bs);
  const edges: { offset: number; length: number }[] = first > last
    ? [{ offset, length }]
    : [{ offset, length: first * bs - offset }, { offset: last * bs, length: end - last * bs }];
  const spans: WriteSpan[] = [];
  let at = 0;
  for (const e of edges) {
    // An unmapped edge already reads as zeros.
    if (e.length === 0 || ctx.forest.lookup(m, Math.floor(e.offset / bs)) < 0) continue;
    spans.push({ ...e, at });
    at += e.length;
  }
  if (spans.length) await writeSpans(ctx, id, m, spans, new Uint8Array(at), "discard");
  for (let vb = first; vb < last; vb++) {
    const old = ctx.forest.set(m, vb, -1);
    if (old >= 0) ctx.space.unref(old);
  }
}
