/**
 * thin_delta benchmarks (Pool.delta), in one run against the comparison the maps allow
 * without node sharing (results as JSON lines, see bench/lib.ts):
 *
 * 1. delta of an origin with 16,384 mapped blocks (1 GiB at 64 KiB) and a snapshot that
 *    rewrote one block, vs the same comparison block by block (`lookup` of every virtual
 *    block on both sides, what a walk that does not skip shared nodes costs at least):
 *    medians, alternating. Goal: delta ≤ 0.1 of block by block.
 * 2. The same delta on an origin of 1,024 mapped blocks vs the 16,384-block one: the cost
 *    is what differs, not what is mapped. Goal: ratio 0.5..2.
 * 3. delta with same ranges (it walks the shared nodes too): informative.
 *
 *   node --import tsx bench/delta.bench.ts        deno run -A bench/delta.bench.ts
 *   BENCH_QUICK=1 for a small, fast run that only checks the benchmark works.
 */
import path from "node:path";
import { Pool } from "../src/pool/pool.ts";
import { emit, finish, KiB, median, MiB, note, progress, quick, runtime, withScratchDir } from "./lib.ts";

const B = "delta";
const BS = 64 * KiB;
const BIG = quick ? 2048 : 16_384;
const SMALL = 1024;
const CALLS = quick ? 20 : 200;
const SLOW_CALLS = quick ? 5 : 20;

/** Times `fn` once, in ms. */
async function time(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function run(dir: string): Promise<void> {
  const pool = await Pool.create(path.join(dir, "pool"), { dataSize: (BIG + SMALL + 64) * BS, blockSize: BS });
  try {
    const chunk = new Uint8Array(MiB).fill(0x5a);
    // Two origins, each with a snapshot that rewrote one block in the middle.
    const setup = async (origin: number, snap: number, blocks: number) => {
      await pool.createThin(origin, 4 * BIG * BS);
      for (let b = 0; b < blocks; b += MiB / BS) await pool.device(origin).write(b * BS, chunk);
      await pool.commit();
      await pool.createSnapshot(snap, origin);
      await pool.device(snap).write(Math.floor(blocks / 2) * BS + 17, new Uint8Array([1]));
      progress(`mapped ${blocks} blocks of device ${origin}`);
    };
    await setup(1, 2, BIG);
    await setup(3, 4, SMALL);
    const want = JSON.stringify([{ kind: "different", begin: BIG / 2, length: 1 }]);
    if (JSON.stringify(await pool.delta(1, 2)) !== want) throw new Error("delta of the large origin and its snapshot is not the one block");
    const blocks = (4 * BIG * BS) / BS;
    const byBlock = () => {
      const out: number[] = [];
      for (let vb = 0; vb < blocks; vb++) if (pool.lookup(1, vb) !== pool.lookup(2, vb)) out.push(vb);
      if (out.length !== 1) throw new Error("the block-by-block comparison disagrees");
    };
    for (let i = 0; i < 20; i++) { await pool.delta(1, 2); await pool.delta(3, 4); } // warm-up
    const fast: number[] = [];
    const small: number[] = [];
    const slow: number[] = [];
    const same: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      for (const side of i % 2 ? ["big", "small"] : ["small", "big"]) {
        if (side === "big") fast.push(await time(() => pool.delta(1, 2)));
        else small.push(await time(() => pool.delta(3, 4)));
      }
      if (i < SLOW_CALLS) {
        slow.push(await time(byBlock));
        same.push(await time(() => pool.delta(1, 2, { same: true })));
      }
    }
    const mF = median(fast);
    const mS = median(slow);
    const mSm = median(small);
    const label = `${BIG.toLocaleString("en")} mapped blocks`;
    emit({
      bench: B, name: `delta of an origin with ${label} and a snapshot that rewrote one block, vs lookup of every block (median)`,
      value: mF * 1000, unit: "µs", baseline: mS * 1000, baselineLabel: "block by block", ratio: mF / mS, goal: "≤ 0.1",
      detail: `devices of ${blocks.toLocaleString("en")} blocks (two map levels); medians of ${CALLS} delta calls and ${SLOW_CALLS} block-by-block comparisons, alternating`,
    });
    emit({
      bench: B, name: `delta, one block rewritten: origin of ${label} vs ${SMALL.toLocaleString("en")} (ratio of medians)`,
      value: mF * 1000, unit: "µs", baseline: mSm * 1000, baselineLabel: `${SMALL.toLocaleString("en")} blocks`, ratio: mF / mSm, goal: "0.5..2",
      detail: `${CALLS} calls each, alternating`,
    });
    emit({
      bench: B, name: `delta with same ranges, origin of ${label} (walks the shared nodes; median)`,
      value: median(same) * 1000, unit: "µs", detail: `${SLOW_CALLS} calls`,
    });
  } finally {
    await pool.close();
  }
}

progress(`delta benchmarks under ${runtime}${quick ? " (BENCH_QUICK: small sizes, figures not meaningful)" : ""}`);
await withScratchDir(B, "delta", run);
note(B, "The maps only: delta reads no data. Every benchmark runs on the repository's disk (bench/out) and removes its files when done.");
finish("Delta benchmarks");
