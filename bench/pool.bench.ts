/**
 * Pool benchmarks, each against plain node:fs on the same disk in the same run (results
 * as JSON lines, see bench/lib.ts; `npm run bench -- --only pool` runs both runtimes):
 *
 * 1. Sequential write of 1 GiB into a new thin device vs node:fs writing the same bytes
 *    to a new plain file: 1 MiB calls, one at a time on both sides, then fsync (node:fs)
 *    and commit() (the pool, which fdatasyncs its data file). Goal ≥ 0.8.
 * 2. Sequential read of those bytes, hot (both sides read what they just wrote, from the
 *    page cache), from the device, from a 1-deep and a 128-deep snapshot (snapshot of
 *    snapshot … 128 times, each level rewriting one block of its own), and with node:fs from the plain file. Goals: 128-deep ≥ 0.9
 *    of 1-deep, and ≥ 0.8 of node:fs.
 * 3. 4 KiB random writes, one per distinct 64 KiB block (so each is a copy-on-write), into
 *    a fresh snapshot vs the same writes at the same offsets into the plain file. op/s.
 * 4. createSnapshot of an origin with 160 mapped blocks vs one with 163,840 (10 GiB at
 *    64 KiB, one 1-byte write per block): median of 1,000 calls each. Goal: ratio
 *    0.8..1.25, each under 5 ms.
 *
 * The disk of a shared VM speeds up and slows down by several times within minutes, so
 * 1 to 3 run the thinstack side and the node:fs side in lockstep (interleaved() in
 * lib.ts: 64 MiB or 512 operations of one, then of the other, order rotating) and report
 * medians of per-run ratios, rather than one side's whole run after the other's. Each of
 * the pool's turns ends with `pool.drain()`, timed as part of it, so its write-behind and
 * read-ahead finish in its own turn instead of running into node:fs's.
 *
 *   node --import tsx bench/pool.bench.ts        deno run -A bench/pool.bench.ts
 *   BENCH_QUICK=1 for a small, fast run that only checks the benchmark works.
 *   BENCH_SECTIONS=stream (1 to 3) or snapshot (4) runs one part.
 */
import { Buffer } from "node:buffer";
import fs from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { Pool } from "../src/pool/pool.ts";
import {
  emit, finish, GiB, interleaved, KiB, median, MiB, mibps, note, opsps, patternBytes, prng, progress, quantile, quick,
  runtime, syncAll, timeMs, withScratchDir,
} from "./lib.ts";

const B = "pool";
const BS = 64 * KiB;
const CHUNK = MiB;
const SIZE = quick ? 128 * MiB : GiB;
const REPS = quick ? 2 : 4;
const READ_REPS = quick ? 1 : 5;
const DEPTH = 128;
const RANDOM_WRITES = quick ? 512 : 8192;
const SNAP_CALLS = quick ? 100 : 1000;
/** Operations per turn when the sides run in lockstep (see interleaved() in lib.ts). */
const GROUP = 64;
const RANDOM_GROUP = 512;
const SNAP_COMMITS = quick ? 5 : 30;
const BIG_DEVICE = quick ? 640 * MiB : 10 * GiB;

const sizeLabel = quick ? `${SIZE / MiB} MiB` : `${SIZE / GiB} GiB`;

/** The bytes of chunk `i`: one shared pattern, stamped with the chunk's number. */
const base = patternBytes(CHUNK, 42);
function stamp(buf: Uint8Array, i: number): Uint8Array {
  const v = new DataView(buf.buffer, buf.byteOffset, 8);
  v.setUint32(0, i);
  v.setUint32(4, 0x7415_57ac);
  return buf;
}
function expected(off: number, len: number): Uint8Array {
  const i = Math.floor(off / CHUNK);
  const chunk = stamp(base.slice(), i);
  return chunk.subarray(off - i * CHUNK, off - i * CHUNK + len);
}

const same = (a: Uint8Array, b: Uint8Array) =>
  a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

async function writeAll(fh: fs.FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  for (let done = 0; done < buf.byteLength;) {
    const { bytesWritten } = await fh.write(buf, done, buf.byteLength - done, pos + done);
    done += bytesWritten;
  }
}

async function readAll(fh: fs.FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  for (let done = 0; done < buf.byteLength;) {
    const { bytesRead } = await fh.read(buf, done, buf.byteLength - done, pos + done);
    if (bytesRead === 0) throw new Error(`short read at ${pos + done}`);
    done += bytesRead;
  }
}

/** Sections 1 to 3: one pool and the plain files beside it. */
async function streaming(dir: string): Promise<void> {
  const chunks = SIZE / CHUNK;
  const pool = await Pool.create(path.join(dir, "pool"), { dataSize: 10 * SIZE, blockSize: BS });
  const plainPath = (r: number) => path.join(dir, `plain-${r}`);
  // Ends a pool side's turn in the lockstep runs: its write-behind and read-ahead finish inside its own time.
  const drain = () => pool.drain();
  try {
    // Warm-up: start the I/O workers and JIT both paths on a throwaway device and file.
    await pool.createThin(999, 16 * CHUNK);
    const warmFile = await fs.open(path.join(dir, "warm"), "w");
    for (let i = 0; i < 16; i++) {
      await pool.device(999).write(i * CHUNK, base);
      await pool.device(999).read(i * CHUNK, CHUNK);
      await writeAll(warmFile, base, i * CHUNK);
    }
    await warmFile.close();
    await pool.deleteDevice(999);
    await pool.commit();
    await fs.rm(path.join(dir, "warm"));

    // 1. Sequential write into a new device and a new file, in lockstep: 64 MiB to one, the
    //    same 64 MiB to the other (which goes first alternating); then each side's fsync/commit.
    const devId = (r: number) => 100 + r;
    const w = { pool: [] as number[], plain: [] as number[], poolLoop: [] as number[], plainLoop: [] as number[], ratio: [] as number[] };
    for (let r = 0; r < REPS; r++) {
      await pool.createThin(devId(r), SIZE);
      await pool.commit();
      const dev = pool.device(devId(r));
      const fh = await fs.open(plainPath(r), "w");
      const bufs = [base.slice(), base.slice()];
      try {
        syncAll();
        const [plainMs, poolMs] = await interleaved(chunks, GROUP, 1, [
          (i) => writeAll(fh, stamp(bufs[0], i), i * CHUNK),
          (i) => dev.write(i * CHUNK, stamp(bufs[1], i)),
        ], [undefined, drain]);
        // The second sync gets the writeback the first one started: alternate who goes second.
        let plainSync = 0;
        let poolSync = 0;
        for (const side of r % 2 ? ["pool", "plain"] : ["plain", "pool"]) {
          if (side === "plain") plainSync = await timeMs(() => fh.sync());
          else poolSync = await timeMs(() => pool.commit());
        }
        w.plain.push(plainMs + plainSync);
        w.pool.push(poolMs + poolSync);
        w.plainLoop.push(plainMs);
        w.poolLoop.push(poolMs);
        w.ratio.push((plainMs + plainSync) / (poolMs + poolSync));
      } finally {
        await fh.close();
      }
      progress(`sequential write ${r + 1}/${REPS}: pool ${mibps(SIZE, w.pool[r]).toFixed(0)} MiB/s, node:fs ${mibps(SIZE, w.plain[r]).toFixed(0)} MiB/s ` +
        `(before fsync/commit: ${mibps(SIZE, w.poolLoop[r]).toFixed(0)} vs ${mibps(SIZE, w.plainLoop[r]).toFixed(0)})`);
    }
    emit({
      bench: B, name: `sequential write ${sizeLabel}, new device vs new file (1 MiB writes, fsync/commit included)`,
      value: mibps(SIZE, median(w.pool)), unit: "MiB/s", baseline: mibps(SIZE, median(w.plain)), baselineLabel: "node:fs",
      ratio: median(w.ratio), goal: "≥ 0.8",
      detail: `${REPS} runs; in each, the two sides write in lockstep (64 MiB to one, the same 64 MiB to the other, who goes first alternating; each pool turn ends with pool.drain(), timed), ` +
        `then node:fs fsyncs and the pool commits (who goes first alternating by run); ratio = median of the per-run ratios`,
    });
    emit({
      bench: B, name: `sequential write ${sizeLabel}, new device vs new file, until the last write returns (before the fsync/commit)`,
      value: mibps(SIZE, median(w.poolLoop)), unit: "MiB/s", baseline: mibps(SIZE, median(w.plainLoop)), baselineLabel: "node:fs",
      ratio: median(w.poolLoop.map((p, i) => w.plainLoop[i] / p)),
      detail: "the same runs without the final fsync/commit: the write path's own cost, mostly into the page cache",
    });
    // Keep the last run's device and file; the others are not needed.
    const last = REPS - 1;
    const origin = devId(last);
    for (let r = 0; r < last; r++) {
      await pool.deleteDevice(devId(r));
      await fs.rm(plainPath(r));
    }
    await pool.commit();

    // 2. Sequential reads, hot: the last device and file were just written.
    let prev = origin;
    const plain = await fs.open(plainPath(last), "r");
    // Each level rewrites one block of its own (the same bytes the file holds there), so
    // every snapshot in the chain has a map of its own, not one root shared by all 128.
    const blockBuf = new Uint8Array(pool.blockSize);
    const levelBlocks = SIZE / pool.blockSize;
    for (let d = 1; d <= DEPTH; d++) {
      await pool.createSnapshot(1000 + d, prev);
      prev = 1000 + d;
      const vb = (d * 7919) % levelBlocks;
      await readAll(plain, blockBuf, vb * pool.blockSize);
      await pool.device(prev).write(vb * pool.blockSize, blockBuf);
    }
    await pool.commit();
    const oneDeep = 1001;
    const deep = 1000 + DEPTH;
    try {
      // Checks every byte of the deepest snapshot against the plain file (and warms both).
      const fbuf = new Uint8Array(CHUNK);
      for (let i = 0; i < chunks; i++) {
        await readAll(plain, fbuf, i * CHUNK);
        const got = await pool.device(deep).read(i * CHUNK, CHUNK);
        if (!same(got, fbuf) || !same(fbuf, stamp(base.slice(), i))) throw new Error(`chunk ${i}: the ${DEPTH}-deep snapshot or the file reads wrong bytes`);
      }
      const read = (id: number) => {
        const dev = pool.device(id);
        return (i: number) => dev.read(i * CHUNK, CHUNK);
      };
      // readInto gets a device of its own (a snapshot sharing every block of the origin, so
      // the same bytes of the data file), so its read-ahead stream is not the origin's.
      const intoId = 3000;
      await pool.createSnapshot(intoId, origin);
      const intoDev = pool.device(intoId);
      for (const depth of [1, 4]) {
        const reused = Array.from({ length: depth }, () => new Uint8Array(CHUNK));
        const reusedPool = Array.from({ length: depth }, () => new Uint8Array(CHUNK));
        const sides = [
          read(origin), read(oneDeep), read(deep),
          // node:fs into a new array per read, as the pool's read() returns one; and into one reused buffer per lane.
          (i: number) => readAll(plain, new Uint8Array(CHUNK), i * CHUNK),
          (i: number, lane: number) => readAll(plain, reused[lane], i * CHUNK),
          // The pool into one reused buffer per lane.
          (i: number, lane: number) => intoDev.readInto(i * CHUNK, reusedPool[lane]),
        ];
        // Each pool side's turn ends when its read-ahead has landed, so the fetches do not run in the next side's turn.
        const settle = [drain, drain, drain, undefined, undefined, drain];
        // Untimed pass first: piscina starts a second I/O thread only when tasks queue up
        // (and stops it after 5 s idle); that start-up is not what this measures.
        await interleaved(chunks, GROUP, depth, sides, settle);
        const passes: number[][] = [];
        for (let r = 0; r < READ_REPS; r++) passes.push(await interleaved(chunks, GROUP, depth, sides, settle));
        const col = (k: number) => passes.map((p) => p[k]);
        const [dev, one, dp, fresh, reuse, into] = [0, 1, 2, 3, 4, 5].map((k) => mibps(SIZE, median(col(k))));
        const ratio = (num: number, den: number) => median(passes.map((p) => p[num] / p[den])); // time ratio = throughput ratio inverted
        progress(`sequential read, ${depth} in flight: device ${dev.toFixed(0)}, 1-deep ${one.toFixed(0)}, ${DEPTH}-deep ${dp.toFixed(0)}, ` +
          `node:fs ${fresh.toFixed(0)} (new arrays) / ${reuse.toFixed(0)} (reused buffer), device readInto a reused buffer ${into.toFixed(0)} MiB/s`);
        const how = depth === 1 ? "1 MiB reads, one at a time" : `1 MiB reads, ${depth} in flight`;
        const goal = depth === 1 ? "≥ 0.8" : undefined;
        const fsNew = "node:fs new arrays";
        emit({ bench: B, name: `sequential read ${sizeLabel} hot, device vs node:fs, a new array per read on both sides (${how})`, value: dev, unit: "MiB/s", baseline: fresh, baselineLabel: fsNew, ratio: ratio(3, 0), goal });
        emit({ bench: B, name: `sequential read ${sizeLabel} hot, ${DEPTH}-deep snapshot vs node:fs, a new array per read on both sides (${how})`, value: dp, unit: "MiB/s", baseline: fresh, baselineLabel: fsNew, ratio: ratio(3, 2), goal });
        emit({ bench: B, name: `sequential read ${sizeLabel} hot, ${DEPTH}-deep vs 1-deep snapshot (${how})`, value: dp, unit: "MiB/s", baseline: one, baselineLabel: "1-deep", ratio: ratio(1, 2), goal: depth === 1 ? "≥ 0.9" : undefined });
        emit({ bench: B, name: `sequential read ${sizeLabel} hot, device readInto vs node:fs read, a reused buffer on both sides (${how})`, value: into, unit: "MiB/s", baseline: reuse, baselineLabel: "node:fs reused buffer", ratio: ratio(4, 5) });
        emit({ bench: B, name: `sequential read ${sizeLabel} hot, device read (new arrays) vs node:fs reading into a reused buffer (${how})`, value: dev, unit: "MiB/s", baseline: reuse, baselineLabel: "node:fs reused buffer", ratio: ratio(4, 0) });
      }
    } finally {
      await plain.close();
    }
    note(B, `Reads are hot on both sides: each reads the ${sizeLabel} it has just written, from the page cache (no cache drop). ` +
      `The six readers (device, 1-deep, ${DEPTH}-deep, node:fs into new arrays, node:fs into a reused buffer, device readInto a reused buffer) run in lockstep, ` +
      `64 MiB each in rotating order, ${READ_REPS} passes; figures are medians, ratios medians of per-pass ratios. ` +
      `The pool's read() returns a new array per call, so the goal compares it with node:fs reading into a new array per call; its readInto() fills the caller's buffer, compared with node:fs reading into a reused buffer ` +
      `(readInto reads a snapshot sharing every block of the device, so that its read-ahead stream is its own). Each pool reader's turn ends with pool.drain(), timed, so its read-ahead does not run into the next reader's turn. ` +
      `The ${DEPTH}-deep snapshot is a snapshot of a snapshot … ${DEPTH} times, each level rewriting one block of its own (the bytes the file holds there), so every level has a map of its own; every byte of it was checked against the plain file first.`);
    for (let d = DEPTH; d >= 1; d--) await pool.deleteDevice(1000 + d);
    await pool.deleteDevice(3000);

    // 3. 4 KiB random writes, one per distinct 64 KiB block: each a copy-on-write in a fresh snapshot.
    const rnd = prng(7);
    const blocks = Array.from({ length: SIZE / BS }, (_, i) => i);
    for (let i = blocks.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [blocks[i], blocks[j]] = [blocks[j], blocks[i]];
    }
    const offsets = blocks.slice(0, RANDOM_WRITES).map((b) => b * BS + Math.floor(rnd() * (BS / (4 * KiB))) * 4 * KiB);
    const small = patternBytes(4 * KiB, 9);
    const rw = { pool: [] as number[], plain: [] as number[], poolAll: [] as number[], plainAll: [] as number[] };
    await pool.commit();
    for (let r = 0; r < REPS; r++) {
      const snapId = 2000 + r;
      await pool.createSnapshot(snapId, origin);
      await pool.commit();
      const used = pool.status().dataBlocks.used;
      const snap = pool.device(snapId);
      const fh = await fs.open(plainPath(last), "r+");
      try {
        syncAll();
        const [plainMs, poolMs] = await interleaved(offsets.length, RANDOM_GROUP, 1, [
          (i) => writeAll(fh, small, offsets[i]),
          (i) => snap.write(offsets[i], small),
        ], [undefined, drain]);
        let plainSync = 0;
        let poolSync = 0;
        for (const side of r % 2 ? ["pool", "plain"] : ["plain", "pool"]) {
          if (side === "plain") plainSync = await timeMs(() => fh.sync());
          else poolSync = await timeMs(() => pool.commit());
        }
        rw.plain.push(plainMs);
        rw.pool.push(poolMs);
        rw.plainAll.push(plainMs + plainSync);
        rw.poolAll.push(poolMs + poolSync);
      } finally {
        await fh.close();
      }
      const copied = pool.status().dataBlocks.used - used;
      if (copied !== RANDOM_WRITES) throw new Error(`expected ${RANDOM_WRITES} copied blocks, the pool allocated ${copied}`);
      // The snapshot sees the new bytes over the rest of each copied block; the origin is untouched.
      for (const off of offsets.slice(0, 64)) {
        const blockStart = Math.floor(off / BS) * BS;
        const want = expected(blockStart, BS).slice();
        want.set(small, off - blockStart);
        if (!same(await snap.read(blockStart, BS), want)) throw new Error(`copy-on-write at ${off}: the snapshot reads wrong bytes`);
        if (!same(await pool.device(origin).read(blockStart, BS), expected(blockStart, BS))) throw new Error(`copy-on-write at ${off}: the origin changed`);
      }
      await pool.deleteDevice(snapId);
      await pool.commit();
      progress(`random 4 KiB writes ${r + 1}/${REPS}: pool ${opsps(RANDOM_WRITES, rw.pool[r]).toFixed(0)} op/s, node:fs ${opsps(RANDOM_WRITES, rw.plain[r]).toFixed(0)} op/s`);
    }
    const perOp = (xs: number[]) => opsps(RANDOM_WRITES, median(xs));
    const ratios = (a: number[], b: number[]) => median(a.map((x, i) => x / b[i]));
    emit({
      bench: B, name: "4 KiB random writes into a fresh snapshot, each a copy-on-write (no sync)",
      value: perOp(rw.pool), unit: "op/s", baseline: perOp(rw.plain), baselineLabel: "node:fs", ratio: ratios(rw.plain, rw.pool),
      detail: `${RANDOM_WRITES} writes at seeded random 4 KiB offsets, one per distinct 64 KiB block of ${sizeLabel}, one at a time, in lockstep (${RANDOM_GROUP} writes a turn) with ` +
        `node:fs writing the same offsets of the plain file in place; ${REPS} runs, a fresh snapshot each`,
    });
    emit({
      bench: B, name: "4 KiB random writes into a fresh snapshot, then commit (node:fs: then fsync)",
      value: perOp(rw.poolAll), unit: "op/s", baseline: perOp(rw.plainAll), baselineLabel: "node:fs", ratio: ratios(rw.plainAll, rw.poolAll),
      detail: `the commit flushes ${RANDOM_WRITES} new 64 KiB blocks (${(RANDOM_WRITES * BS / MiB).toFixed(0)} MiB), the fsync ${RANDOM_WRITES} dirty 4 KiB pages`,
    });
  } finally {
    await pool.close();
  }
}

/** Heap and array-buffer bytes in use (map leaves are typed arrays), after a GC when exposed (`npm run bench` does). */
function heapBytes(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Section 4: createSnapshot against the origin's size. */
async function snapshots(dir: string): Promise<void> {
  const blocks = BIG_DEVICE / BS;
  const fewBlocks = 160;
  const pool = await Pool.create(path.join(dir, "pool"), { dataSize: BIG_DEVICE + 2048 * BS, blockSize: BS });
  try {
    const SMALL = 1;
    const LARGE = 2;
    await pool.createThin(SMALL, BIG_DEVICE);
    await pool.createThin(LARGE, BIG_DEVICE);
    const one = new Uint8Array([0x5a]);
    const stride = blocks / fewBlocks;
    for (let k = 0; k < fewBlocks; k++) await pool.device(SMALL).write(k * stride * BS, one);
    const large = pool.device(LARGE);
    const BATCH = 256;
    const memBefore = heapBytes();
    const fillMs = await timeMs(async () => {
      for (let b = 0; b < blocks; b += BATCH) {
        const writes: Promise<void>[] = [];
        for (let k = b; k < Math.min(blocks, b + BATCH); k++) writes.push(large.write(k * BS, one));
        await Promise.all(writes);
        if ((b / BATCH) % 64 === 63) progress(`mapping the large origin: ${b + BATCH}/${blocks} blocks`);
      }
      await pool.commit();
    });
    progress(`mapped ${blocks} blocks in ${(fillMs / 1000).toFixed(1)} s`);
    const perBlock = (heapBytes() - memBefore) / blocks;
    // Snapshots that each write one block: each gets its own path of map nodes.
    const DIVERGED = 1000;
    const memSnap = heapBytes();
    for (let i = 0; i < DIVERGED; i++) {
      await pool.createSnapshot(20_000 + i, LARGE);
      await pool.device(20_000 + i).write(((i * 7919) % blocks) * BS, one);
    }
    const perSnapshot = (heapBytes() - memSnap) / DIVERGED;
    for (let i = 0; i < DIVERGED; i++) await pool.deleteDevice(20_000 + i);
    await pool.commit();
    emit({
      bench: B, name: `memory of the block maps: per snapshot that wrote one block (${DIVERGED} snapshots of an origin with ${blocks.toLocaleString("en")} mapped blocks)`,
      value: perSnapshot / 1024, unit: "KiB",
      detail: `heap + array buffers${(globalThis as { gc?: unknown }).gc ? " after a forced GC" : " (run with --expose-gc for a forced GC)"}, over ${DIVERGED} snapshots; ` +
        `per mapped block the maps hold one 4-byte leaf slot (leaves of 1,024 slots) and the space map a 4-byte count, ~12.5 MiB for a fully mapped 100 GiB pool at 64 KiB ` +
        `(the heap difference across mapping the origin, ${perBlock.toFixed(1)} B/block this run, is within the process's own noise)`,
    });
    if (pool.usage(SMALL).mapped !== fewBlocks || pool.usage(LARGE).mapped !== blocks) throw new Error("the origins are not mapped as planned");

    let nextId = 10_000;
    const samples: Record<number, number[]> = { [SMALL]: [], [LARGE]: [] };
    const once = async (origin: number, into?: number[]) => {
      const id = nextId++;
      const t = performance.now();
      await pool.createSnapshot(id, origin);
      const dt = performance.now() - t;
      into?.push(dt);
      await pool.deleteDevice(id);
    };
    for (let i = 0; i < 200; i++) { await once(SMALL); await once(LARGE); } // warm-up
    for (let i = 0; i < SNAP_CALLS; i++) {
      const order = i % 2 ? [SMALL, LARGE] : [LARGE, SMALL];
      for (const o of order) await once(o, samples[o]);
    }
    const mS = median(samples[SMALL]);
    const mL = median(samples[LARGE]);
    const tail = (xs: number[]) => `p90 ${(quantile(xs, 0.9) * 1000).toFixed(1)} µs, max ${(Math.max(...xs) * 1000).toFixed(1)} µs`;
    emit({
      bench: B, name: `createSnapshot, origin with ${fewBlocks} mapped blocks (median)`, value: mS * 1000, unit: "µs",
      goal: "< 5 ms", met: mS < 5, detail: `${tail(samples[SMALL])}`,
    });
    emit({
      bench: B, name: `createSnapshot, origin with ${blocks.toLocaleString("en")} mapped blocks (median)`, value: mL * 1000, unit: "µs",
      goal: "< 5 ms", met: mL < 5, detail: `${tail(samples[LARGE])}`,
    });
    emit({
      bench: B, name: `createSnapshot, ${blocks.toLocaleString("en")} vs ${fewBlocks} mapped blocks (ratio of medians, large / small)`,
      value: mL * 1000, unit: "µs", baseline: mS * 1000, baselineLabel: `${fewBlocks} blocks`, ratio: mL / mS, goal: "0.8..1.25",
      detail: `${SNAP_CALLS} calls on each origin, alternating, each timed alone, the snapshot deleted (untimed) after each; ` +
        `both origins are ${BIG_DEVICE / GiB} GiB devices, the small one mapped at every ${stride}th block; mapping the large one took ${(fillMs / 1000).toFixed(0)} s`,
    });

    // The same, made durable: createSnapshot + commit (informative).
    const durable: Record<number, number[]> = { [SMALL]: [], [LARGE]: [] };
    for (let i = 0; i < SNAP_COMMITS; i++) {
      for (const o of i % 2 ? [SMALL, LARGE] : [LARGE, SMALL]) {
        const id = nextId++;
        durable[o].push(await timeMs(async () => {
          await pool.createSnapshot(id, o);
          await pool.commit();
        }));
        await pool.deleteDevice(id);
        await pool.commit();
      }
    }
    const dS = median(durable[SMALL]);
    const dL = median(durable[LARGE]);
    emit({
      bench: B, name: `createSnapshot + commit, ${blocks.toLocaleString("en")} vs ${fewBlocks} mapped blocks (ratio of medians, large / small)`,
      value: dL, unit: "ms", baseline: dS, baselineLabel: `${fewBlocks} blocks`, ratio: dL / dS,
      detail: `median of ${SNAP_COMMITS} each; a commit fsyncs the data file and writes the new device record and the root record (fsync + rename + directory fsync)`,
    });
  } finally {
    await pool.close();
  }
}

progress(`pool benchmarks under ${runtime}${quick ? " (BENCH_QUICK: small sizes, figures not meaningful)" : ""}`);
// BENCH_SECTIONS=stream or =snapshot runs one part (a quicker re-measure of one figure).
const sections = (process.env.BENCH_SECTIONS ?? "stream,snapshot").split(",");
if (sections.includes("stream")) await withScratchDir(B, "stream", streaming);
if (sections.includes("snapshot")) await withScratchDir(B, "snapshot", snapshots);
note(B, "Every benchmark runs on the repository's disk (bench/out) and removes its files when done.");
finish("Pool benchmarks");
