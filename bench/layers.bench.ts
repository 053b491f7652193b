/**
 * Layer store benchmarks, printed as markdown table rows:
 *
 * 1. A container writes 32 KiB into the middle of a 1 GiB file of its image: time and
 *    pool bytes added, against a file-level copy-up (copy the whole file, then write, as
 *    overlayfs and AUFS do) on the same disk. Goal: at least 100 times faster, one block.
 * 2. Creating 10,000 small files in a layer; stat and read of one file through 128
 *    layers against through 1.
 *
 * Results are JSON lines (bench/lib.ts); `npm run bench` puts Node and Deno side by side.
 *
 *   node --import tsx bench/layers.bench.ts        deno run -A bench/layers.bench.ts
 *   BENCH_DIR=/some/disk                           # where the pool and the baseline go
 */
import fs from "node:fs/promises";
import path from "node:path";
import { LayerStore } from "../src/layers/mod.ts";
import { emit, finish, GiB, KiB, median, MiB, note, runtime, syncAll, withScratchDir } from "./lib.ts";

/** First lookups timed on each side. */
const FIRST = 15;
/** Samples of the copy-on-write write, on each side. */
const SAMPLES = 5;

const B = "layers";

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
    // The baseline's lower file, on the same disk: copied up whole before each write.
    const lower = path.join(base, "lower-big");
    const upper = path.join(base, "upper-big");
    const lh = await fs.open(lower, "w");
    await fillGiB((buf, at) => lh.write(buf, 0, buf.byteLength, at));
    await lh.sync();
    await lh.close();
    // Five containers on the image, each writing once, and five copy-ups, in lockstep (who
    // goes first alternating): the median time of each side, the blocks each adds.
    const times: number[] = [];
    const adds: number[] = [];
    const copies: number[] = [];
    let copyAdded = 0;
    const container = async (c: number) => {
      await store.prepare(`container-${c}`, "image");
      const before = store.pool.status().dataBlocks.used;
      syncAll();
      const [, ms] = await timed(async () => {
        const fh = await store.fs(`container-${c}`).open("/big", "r+");
        await fh.write(patch, 0, patch.byteLength, middle);
        await fh.close();
        await store.sync(); // durable, as the baseline's fsync
      });
      times.push(ms);
      adds.push((store.pool.status().dataBlocks.used - before) * store.pool.blockSize);
    };
    const copyUp = async () => {
      syncAll();
      const [, ms] = await timed(async () => {
        await fs.copyFile(lower, upper);
        const uh = await fs.open(upper, "r+");
        await uh.write(patch, 0, patch.byteLength, middle);
        await uh.sync(); // overlayfs syncs copied-up data by default
        await uh.close();
      });
      copies.push(ms);
      copyAdded = (await fs.stat(upper)).blocks * 512;
      await fs.rm(upper);
    };
    for (let c = 0; c < SAMPLES; c++) {
      if (c % 2) {
        await copyUp();
        await container(c);
      } else {
        await container(c);
        await copyUp();
      }
    }
    const ms = median(times);
    const copyMs = median(copies);
    const added = Math.max(...adds);
    emit({
      bench: B, name: "32 KiB write into the middle of a 1 GiB image file from a container, with sync, vs file-level copy-up (speed-up)",
      value: ms, unit: "ms", baseline: copyMs, baselineLabel: "copy-up", ratio: copyMs / ms, goal: "≥ 100",
      detail: `medians of ${SAMPLES} samples on each side, in lockstep (who goes first alternating), sync(1) before each: ${SAMPLES} containers over one image; ` +
        `copy-up = copyFile of the 1 GiB lower file to a fresh upper file, the write, fsync (as overlayfs/AUFS); ratio = copy-up time / thinstack time; ` +
        `samples ${times.map((t) => t.toFixed(1)).join(", ")} ms vs ${copies.map((t) => t.toFixed(0)).join(", ")} ms`,
    });
    emit({
      bench: B, name: "pool bytes added by that 32 KiB write vs copy-up's bytes",
      value: added / KiB, unit: "KiB", baseline: copyAdded / KiB, baselineLabel: "copy-up", goal: "one block",
      met: added === store.pool.blockSize,
    });
    note(B, `Writing the 1 GiB image file through the layer store took ${(fillMs / 1000).toFixed(2)} s (${runtime}), for scale.`);
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
    const st = store.pool.status();
    const space = st.dataBlocks.used * store.pool.blockSize + st.metadataBytes.used;
    emit({
      bench: B, name: "create 10,000 files of 100 B in a layer, then commit", value: createMs + syncMs, unit: "ms",
      detail: `${createMs.toFixed(0)} ms to create, ${syncMs.toFixed(0)} ms to commit`,
    });
    emit({
      bench: B, name: "pool + metadata bytes of those 10,000 files (small files are kept inline)", value: space / MiB, unit: "MiB",
      goal: "< 5 MiB", met: space < 5 * MiB,
    });

    // A chain of 128 layers; the file read lives in the lowest one.
    let parent: string | undefined;
    for (let i = 0; i < 128; i++) {
      await store.prepare(`p${i}`, parent);
      const lf = store.fs(`p${i}`);
      if (i === 0) {
        await lf.mkdir("/etc");
        await lf.writeFile("/etc/hosts", "127.0.0.1 localhost\n");
        // Files looked up once each, for the first-lookup figure.
        for (let k = 0; k < 2 * FIRST; k++) await lf.writeFile(`/etc/first-${k}`, `${k}\n`);
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
    // A single first lookup is one sample of a few hundred microseconds, at the mercy of a GC
    // pause: the median of FIRST lookups, each of a file not looked up before, alternating.
    const firsts = { deep: [] as number[], shallow: [] as number[] };
    for (let k = 0; k < FIRST; k++) {
      firsts.deep.push((await timed(() => statRead("deep", `/etc/first-${2 * k}`)))[1]);
      firsts.shallow.push((await timed(() => statRead("shallow", `/etc/first-${2 * k + 1}`)))[1]);
    }
    const deepFirst = median(firsts.deep);
    const oneFirst = median(firsts.shallow);
    const best = { deep: Infinity, shallow: Infinity };
    for (let round = 0; round < 3; round++) {
      for (const key of ["deep", "shallow"] as const) {
        const [, ms] = await timed(async () => {
          for (let i = 0; i < N; i++) await statRead(key, "/etc/hosts");
        });
        best[key] = Math.min(best[key], ms / N);
      }
    }
    emit({
      bench: B, name: "stat + read one file, first lookup: 128 layers deep vs 1", value: deepFirst * 1000, unit: "µs",
      baseline: oneFirst * 1000, baselineLabel: "1 layer", ratio: deepFirst / oneFirst,
      detail: `median of ${FIRST} lookups on each side, each of a file not looked up before (its name's entry walks the chain; the directory's is cached)`,
    });
    emit({
      bench: B, name: "stat + read one file, cached (lru-cache): 128 layers deep vs 1", value: best.deep * 1000, unit: "µs",
      baseline: best.shallow * 1000, baselineLabel: "1 layer", ratio: best.deep / best.shallow,
      detail: "best of 3 rounds of 20,000 lookups; the file lives in the lowest layer",
    });
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

await withScratchDir(B, "cow", copyOnWrite);
await withScratchDir(B, "small", smallFilesAndDepth);
note(B, "Every benchmark runs on the repository's disk (bench/out) and removes its files when done.");
finish("Layer store benchmarks");
