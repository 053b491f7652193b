/**
 * Layer store benchmarks, printed as markdown table rows:
 *
 * 1. A container writes 32 KiB into the middle of a 1 GiB file of its image: time and
 *    pool bytes added, against a file-level copy-up (copy the whole file, then write, as
 *    overlayfs and AUFS do) on the same disk. Goal: at least 100 times faster, one block.
 * 2. Creating 10,000 small files in a layer; stat and read of one file through 128
 *    layers against through 1.
 *
 *   npx tsx bench/layers.bench.ts                  # under Node
 *   BENCH_RUNTIME=deno npx tsx bench/layers.bench.ts   # under Deno (or "both")
 *   BENCH_DIR=/some/disk                           # where the pool and the baseline go
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { LayerStore } from "../src/layers/mod.ts";

declare const Deno: { execPath(): string } | undefined;
const runtime = typeof Deno !== "undefined" ? "deno" : "node";
const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** Re-runs this script under the runtimes BENCH_RUNTIME names, when that is not just this one. */
function dispatch(): boolean {
  const want = process.env.BENCH_RUNTIME;
  if (!want || want === runtime) return false;
  const root = path.join(path.dirname(new URL(import.meta.url).pathname), "..");
  const self = new URL(import.meta.url).pathname;
  const env = { ...process.env, BENCH_RUNTIME: "" };
  const runs: [string, string[]][] = [];
  if (want === "node" || want === "both") runs.push([process.execPath.includes("deno") ? "node" : process.execPath, ["--import", "tsx", self]]);
  if (want === "deno" || want === "both") runs.push([path.join(root, "node_modules", ".bin", "deno"), ["run", "-A", "--no-lock", self]]);
  let ok = true;
  for (const [cmd, args] of runs) ok = spawnSync(cmd, args, { stdio: "inherit", env, cwd: root }).status === 0 && ok;
  process.exitCode = ok ? 0 : 1;
  return true;
}

const fmtMs = (ms: number) => (ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`);
const fmtBytes = (n: number) => (n >= GiB ? `${(n / GiB).toFixed(2)} GiB` : n >= MiB ? `${(n / MiB).toFixed(2)} MiB` : `${(n / 1024).toFixed(0)} KiB`);
const row = (...cells: string[]) => console.log(`| ${cells.join(" | ")} |`);

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const v = await fn();
  return [v, performance.now() - t];
}

/** Fills a 1 GiB file through `write`, 16 MiB at a time, with bytes that are not all alike. */
async function fillGiB(write: (buf: Uint8Array, at: number) => Promise<unknown>): Promise<void> {
  const chunk = new Uint8Array(16 * MiB);
  for (let at = 0; at < GiB; at += chunk.byteLength) {
    for (let i = 0; i < chunk.byteLength; i += 4096) chunk[i] = (at / MiB + i) & 0xff;
    await write(chunk, at);
  }
}

async function copyOnWrite(base: string): Promise<void> {
  const dir = path.join(base, "cow");
  const store = await LayerStore.open(dir, { create: true, dataSize: 4 * GiB, baseSize: 2 * GiB });
  const middle = 512 * MiB + 16 * 1024;
  const patch = new Uint8Array(32 * 1024).fill(0xee);
  try {
    await store.prepare("image-extract");
    const [, fillMs] = await timed(async () => {
      const fh = await store.fs("image-extract").open("/big", "w");
      await fillGiB((buf, at) => fh.write(buf, 0, buf.byteLength, at));
      await fh.close();
      await store.commit("image", "image-extract");
    });
    // Five containers on the image, each writing once: the median time, the blocks each adds.
    const times: number[] = [];
    const adds: number[] = [];
    for (let c = 0; c < 5; c++) {
      await store.prepare(`container-${c}`, "image");
      const before = store.pool.status().dataBlocks.used;
      const [, ms] = await timed(async () => {
        const fh = await store.fs(`container-${c}`).open("/big", "r+");
        await fh.write(patch, 0, patch.byteLength, middle);
        await fh.close();
        await store.sync(); // durable, as the baseline's fsync
      });
      times.push(ms);
      adds.push((store.pool.status().dataBlocks.used - before) * store.pool.blockSize);
    }
    const ms = times.sort((a, b) => a - b)[2];
    const added = Math.max(...adds);
    // The baseline: a lower file on the same disk, copied up whole before the write.
    const lower = path.join(base, "lower-big");
    const upper = path.join(base, "upper-big");
    const lh = await fs.open(lower, "w");
    await fillGiB((buf, at) => lh.write(buf, 0, buf.byteLength, at));
    await lh.sync();
    await lh.close();
    const [, copyMs] = await timed(async () => {
      await fs.copyFile(lower, upper);
      const uh = await fs.open(upper, "r+");
      await uh.write(patch, 0, patch.byteLength, middle);
      await uh.sync(); // overlayfs syncs copied-up data by default
      await uh.close();
    });
    const copyAdded = (await fs.stat(upper)).blocks * 512;
    row(`32 KiB write into a 1 GiB image file, with sync (${runtime}; median of 5 containers)`, fmtMs(ms), fmtMs(copyMs), `${(copyMs / ms).toFixed(0)}x faster`);
    row(`  pool bytes added by that write (${runtime})`, `${fmtBytes(added)} (${added / store.pool.blockSize} block)`, fmtBytes(copyAdded), `${(copyAdded / Math.max(added, 1)).toFixed(0)}x less`);
    row(`  (writing the 1 GiB image layer, for scale)`, fmtMs(fillMs), "", "");
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function smallFilesAndDepth(base: string): Promise<void> {
  const dir = path.join(base, "small");
  const store = await LayerStore.open(dir, { create: true, dataSize: 4 * GiB, baseSize: GiB });
  try {
    await store.prepare("many");
    const f = store.fs("many");
    const body = new Uint8Array(100).fill(0x61);
    const [, createMs] = await timed(async () => {
      for (let d = 0; d < 10; d++) {
        await f.mkdir(`/d${d}`);
        for (let i = 0; i < 1000; i++) await f.writeFile(`/d${d}/f${i}`, body);
      }
    });
    const [, syncMs] = await timed(() => store.sync());
    row(`create 10,000 files of 100 B in a layer (${runtime})`, fmtMs(createMs), `+ ${fmtMs(syncMs)} to commit`, `${(10_000 / ((createMs + syncMs) / 1000)).toFixed(0)} files/s`);

    // A chain of 128 layers; the file read lives in the lowest one.
    let parent: string | undefined;
    for (let i = 0; i < 128; i++) {
      await store.prepare(`p${i}`, parent);
      const lf = store.fs(`p${i}`);
      if (i === 0) {
        await lf.mkdir("/etc");
        await lf.writeFile("/etc/hosts", "127.0.0.1 localhost\n");
      }
      await lf.writeFile(`/etc/layer-${i}`, `${i}`);
      await store.commit(`c${i}`, `p${i}`);
      parent = `c${i}`;
    }
    await store.view("deep", parent);
    await store.view("shallow", "c0");
    const N = 20_000;
    const statRead = async (key: string, file: string) => {
      const lf = store.fs(key);
      await lf.stat(file);
      await lf.readFile(file);
    };
    // Warm the code paths (not the caches of the measured file) so the JIT does not skew the first rows.
    for (let i = 0; i < 2000; i++) for (const key of ["deep", "shallow"]) await statRead(key, `/etc/layer-0`);
    const [, deepFirst] = await timed(() => statRead("deep", "/etc/hosts"));
    const [, oneFirst] = await timed(() => statRead("shallow", "/etc/hosts"));
    const best = { deep: Infinity, shallow: Infinity };
    for (let round = 0; round < 3; round++) {
      for (const key of ["deep", "shallow"] as const) {
        const [, ms] = await timed(async () => {
          for (let i = 0; i < N; i++) await statRead(key, "/etc/hosts");
        });
        best[key] = Math.min(best[key], ms / N);
      }
    }
    row(`stat + read one file, first lookup: 128 layers vs 1 (${runtime})`, fmtMs(deepFirst), fmtMs(oneFirst), `${(deepFirst / oneFirst).toFixed(1)}x`);
    row(`stat + read one file, cached: 128 layers vs 1 (${runtime})`, fmtMs(best.deep), fmtMs(best.shallow), `${(best.deep / best.shallow).toFixed(2)}x`);
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

if (!dispatch()) {
  const base = await fs.mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), "thinstack-bench-"));
  try {
    console.log(`\n### Layer store (${runtime})\n`);
    row("benchmark", "thinstack", "baseline", "ratio");
    row("---", "---", "---", "---");
    await copyOnWrite(base);
    await smallFilesAndDepth(base);
  } finally {
    await fs.rm(base, { recursive: true, force: true });
  }
}
