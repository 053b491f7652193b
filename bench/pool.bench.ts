/**
 * Pool benchmarks, each against raw node:fs on the same disk in the same run, printed as
 * a markdown table (and `RESULT` lines that scripts/bench.mjs gathers into one table
 * with a Node and a Deno column):
 *
 * 1. Sequential write of 1 GiB into a new thin device vs node:fs writing the same bytes
 *    to a plain file (4 MiB calls, fsync/commit at the end on both sides). Goal ≥ 0.8.
 * 2. Sequential read of it from the device, from a 128-deep snapshot, and from the plain
 *    file (all hot in the page cache). Goals: 128-deep ≥ 0.9 of 1-deep, ≥ 0.8 of node:fs.
 * 3. 4 KiB random writes into a fresh snapshot (each a copy-on-write) vs the same writes
 *    into the plain file.
 * 4. createSnapshot of an origin with 160 mapped blocks vs one with 163,840 (10 GiB at
 *    64 KiB, one small write per block). Goal: ratio 0.8..1.25, each under 5 ms.
 *
 *   node --import tsx bench/pool.bench.ts      deno run -A bench/pool.bench.ts
 *   BENCH_DIR=/some/disk picks the disk (default: bench/out in the repo).
 */
import fs from "node:fs/promises";
import path from "node:path";
import { Pool } from "../src/pool/pool.ts";

declare const Deno: unknown;
const runtime = typeof Deno !== "undefined" ? "deno" : "node";
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const BS = 64 * 1024;
const CHUNK = 4 * MiB;

const root = process.env.BENCH_DIR ?? path.join(path.dirname(new URL(import.meta.url).pathname), "out");
const rows: string[][] = [];

function result(name: string, value: string, ratio: string, goal: string, met: boolean | undefined) {
  rows.push([name, value, ratio, goal, met === undefined ? "" : met ? "met" : "missed"]);
  console.log(`RESULT\tpool\t${name}\t${value}\t${ratio}\t${goal}\t${met === undefined ? "" : met ? "met" : "missed"}`);
}

async function time<T>(fn: () => Promise<T>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

/** Best of `n` runs, each after `before` (disk noise on a shared VM is one-sided). */
async function best(n: number, fn: () => Promise<number>, before: () => Promise<unknown> = async () => {}): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < n; i++) {
    await before();
    min = Math.min(min, await fn());
  }
  return min;
}

/** Drops the page cache (root only); false where that is not allowed. */
async function dropCaches(): Promise<boolean> {
  try {
    const { execFileSync } = await import("node:child_process");
    execFileSync("sync");
    await fs.writeFile("/proc/sys/vm/drop_caches", "3");
    return true;
  } catch {
    return false;
  }
}

const rate = (bytes: number, s: number) => `${(bytes / MiB / s).toFixed(0)} MiB/s`;

function pattern(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 512) b[i] = (i >> 9) & 0xff;
  return b;
}

async function main() {
  await fs.mkdir(root, { recursive: true });
  const dir = await fs.mkdtemp(path.join(root, `pool-${runtime}-`));
  try {
    const data = pattern(CHUNK);
    const size = GiB;
    const plainPath = path.join(dir, "plain");
    const pool = await Pool.create(path.join(dir, "pool"), { dataSize: 16 * GiB });

    // 1. Sequential write.
    const plainWrite = await time(async () => {
      const fh = await fs.open(plainPath, "w");
      for (let off = 0; off < size; off += CHUNK) await fh.write(data, 0, CHUNK, off);
      await fh.sync();
      await fh.close();
    });
    await pool.createThin(1, size);
    const dev = pool.device(1);
    const poolWrite = await time(async () => {
      for (let off = 0; off < size; off += CHUNK) await dev.write(off, data);
      await pool.commit();
    });
    result("sequential write 1 GiB", `${rate(size, poolWrite)} vs node:fs ${rate(size, plainWrite)}`,
      (plainWrite / poolWrite).toFixed(2), "≥ 0.8", plainWrite / poolWrite >= 0.8);

    // 2. Sequential reads: device, 128-deep snapshot, plain file (all hot).
    for (let d = 2; d <= 129; d++) await pool.createSnapshot(d, d - 1);
    const readDev = (id: number) => time(async () => {
      const h = pool.device(id);
      for (let off = 0; off < size; off += CHUNK) await h.read(off, CHUNK);
    });
    const readPlain = () => time(async () => {
      const fh = await fs.open(plainPath, "r");
      const buf = new Uint8Array(CHUNK);
      for (let off = 0; off < size; off += CHUNK) await fh.read(buf, 0, CHUNK, off);
      await fh.close();
    });
    // Cold: the page cache dropped before each side (needs root; skipped otherwise), so both read the disk.
    if (await dropCaches()) {
      const c1 = await best(3, () => readDev(1), dropCaches);
      const c128 = await best(3, () => readDev(129), dropCaches);
      const cPlain = await best(3, readPlain, dropCaches);
      result("sequential read, cold cache, 1-deep", `${rate(size, c1)} vs node:fs ${rate(size, cPlain)}`, (cPlain / c1).toFixed(2) + " of node:fs", "≥ 0.8", cPlain / c1 >= 0.8);
      result("sequential read, cold cache, 128-deep", rate(size, c128), (c1 / c128).toFixed(2) + " of 1-deep", "≥ 0.9", c1 / c128 >= 0.9);
    }
    // Hot: everything in the page cache; node:fs is then a memcpy loop on the main thread.
    await readDev(1);
    await readPlain();
    const [r1, r128, rPlain] = [await best(3, () => readDev(1)), await best(3, () => readDev(129)), await best(3, readPlain)];
    result("sequential read, hot cache, 1-deep", `${rate(size, r1)} vs node:fs ${rate(size, rPlain)}`, (rPlain / r1).toFixed(2) + " of node:fs", "≥ 0.8", rPlain / r1 >= 0.8);
    result("sequential read, hot cache, 128-deep", rate(size, r128), (r1 / r128).toFixed(2) + " of 1-deep", "≥ 0.9", r1 / r128 >= 0.9);

    // 3. 4 KiB random writes into a fresh snapshot vs the plain file.
    await pool.createSnapshot(200, 1);
    const n = 4000;
    const offsets = Array.from({ length: n }, (_, i) => ((i * 2654435761) % (size / 4096)) * 4096);
    const small = pattern(4096);
    const snap = pool.device(200);
    const tPool = await time(async () => {
      for (const off of offsets) await snap.write(off, small);
      await pool.commit();
    });
    const tPlain = await time(async () => {
      const fh = await fs.open(plainPath, "r+");
      for (const off of offsets) await fh.write(small, 0, 4096, off);
      await fh.sync();
      await fh.close();
    });
    result("4 KiB random writes into a fresh snapshot (copy-on-write)", `${(n / tPool).toFixed(0)} op/s vs node:fs ${(n / tPlain).toFixed(0)} op/s`,
      (tPlain / tPool).toFixed(2), "", undefined);
    await pool.close();

    // 4. createSnapshot cost against the origin's size.
    const pool2 = await Pool.create(path.join(dir, "pool2"), { dataSize: 11 * GiB });
    await pool2.createThin(1, 10 * GiB);
    await pool2.createThin(2, 10 * GiB);
    const one = new Uint8Array([1]);
    for (let b = 0; b < 160; b++) await pool2.device(1).write(b * BS, one);
    for (let b = 0; b < 163_840; b++) await pool2.device(2).write(b * BS, one);
    await pool2.commit();
    // Single calls take microseconds, under the timer's resolution: time batches of 1,000.
    const batch = async (origin: number) => {
      const t = performance.now();
      for (let i = 0; i < 1000; i++) await pool2.createSnapshot(10_000 + i, origin);
      const ms = (performance.now() - t) / 1000;
      for (let i = 0; i < 1000; i++) await pool2.deleteDevice(10_000 + i);
      return ms;
    };
    const mean = async (origin: number) => {
      let min = Infinity;
      for (let k = 0; k < 5; k++) min = Math.min(min, await batch(origin));
      return min;
    };
    await batch(1); // warm up
    const small160 = await mean(1);
    const large = await mean(2);
    const ratio = large / small160;
    result("createSnapshot, 160 vs 163,840 mapped blocks (mean of 1,000, best of 5)", `${(small160 * 1000).toFixed(1)} µs vs ${(large * 1000).toFixed(1)} µs`,
      ratio.toFixed(2), "0.8..1.25, each < 5 ms", ratio >= 0.8 && ratio <= 1.25 && large < 5 && small160 < 5);
    await pool2.close();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  console.log(`\n### Pool (${runtime})\n`);
  console.log("| benchmark | thinstack | ratio | goal | |\n|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
}

await main();
