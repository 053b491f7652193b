/**
 * Shared helpers for the benchmarks in bench/: timing, scratch directories on the
 * repository's disk, and the result lines `npm run bench` (scripts/bench.mjs) collects.
 *
 * ## The JSON-line convention
 *
 * A benchmark is a file `bench/NAME.bench.ts` that runs, unchanged, both as
 * `node --import tsx bench/NAME.bench.ts` and as `deno run -A bench/NAME.bench.ts`.
 * scripts/bench.mjs runs it under each runtime in turn and reads its stdout:
 *
 * - Every stdout line that is a JSON object with a string `bench` field is a record.
 *   Write them with {@linkcode emit} and {@linkcode note}; never print one by hand.
 * - A result record: `{"bench":"pool","name":"sequential write, 1 GiB","value":281.4,
 *   "unit":"MiB/s","baseline":290.7,"baselineLabel":"node:fs","ratio":0.97,
 *   "goal":"≥ 0.8","met":true,"runtime":"node"}`
 *   - `bench`: the file's NAME (`pool` for pool.bench.ts): one combined table per bench.
 *   - `name`: the row; it must be the same string under both runtimes (it is the key
 *     that puts the Node and the Deno figure side by side), so keep numbers that vary
 *     from run to run out of it.
 *   - `value` + `unit`: thinstack's figure (MiB/s, op/s, ms, µs, …).
 *   - `baseline` + `baselineLabel` (optional): the same measurement on the reference
 *     (node:fs, …) in the same run, same unit.
 *   - `ratio` (optional): the number the goal is about, in the direction the goal
 *     states it (thinstack/node:fs for throughputs, large/small for "does not depend
 *     on size", …). Say which in `name` or `detail` when it is not thinstack/baseline.
 *   - `goal` (optional): `"≥ 0.8"`, `"≤ 1.25"`, `"0.8..1.25"`, or any text; `met`
 *     (optional) says whether it was; {@linkcode emit} fills `met` in from `goal` and
 *     `ratio` for the three numeric forms unless you pass it.
 *   - `detail` (optional): a few words shown under the table (how it was measured).
 *   - `runtime`: added by {@linkcode emit}.
 * - A note record `{"bench":"pool","note":"…"}` is printed under that bench's table
 *   once (methodology: what is hot, what is fsynced, sizes).
 * - Anything else on stdout is passed through as is; progress belongs on stderr
 *   ({@linkcode progress}), which scripts/bench.mjs shows live.
 * - Exit non-zero when the benchmark itself failed (not when a goal was missed).
 *
 * Run by hand (not under scripts/bench.mjs, which sets BENCH_HARNESS=1), a benchmark
 * also prints its own markdown table at the end ({@linkcode finish}).
 *
 * Environment: BENCH_DIR picks the scratch disk (default bench/out, gitignored);
 * BENCH_QUICK=1 asks for a small, fast run (for checking the benchmark, not for figures).
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

declare const Deno: unknown;

/** The runtime this process is. */
export const runtime: "node" | "deno" = typeof Deno !== "undefined" ? "deno" : "node";
export const KiB = 1024;
export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;

/** The repository root. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** True for a small, fast run (BENCH_QUICK=1): sizes shrink, figures mean little. */
export const quick = process.env.BENCH_QUICK === "1";
const underHarness = process.env.BENCH_HARNESS === "1";

/** One measurement; see the module doc for the fields. */
export interface BenchResult {
  bench: string;
  name: string;
  value: number;
  unit: string;
  baseline?: number;
  baselineLabel?: string;
  ratio?: number;
  goal?: string;
  met?: boolean;
  detail?: string;
}

const emitted: (BenchResult & { runtime: string })[] = [];
const notes: string[] = [];

/** Checks a ratio against `"≥ x"`, `"≤ x"` or `"a..b"`; undefined for any other goal. */
export function goalMet(goal: string | undefined, ratio: number | undefined): boolean | undefined {
  if (!goal || ratio === undefined || !Number.isFinite(ratio)) return undefined;
  const g = goal.replace(/\s+/g, "");
  let m = /^(?:≥|>=)([\d.]+)$/.exec(g);
  if (m) return ratio >= Number(m[1]);
  m = /^(?:≤|<=)([\d.]+)$/.exec(g);
  if (m) return ratio <= Number(m[1]);
  m = /^([\d.]+)\.\.([\d.]+)$/.exec(g);
  if (m) return ratio >= Number(m[1]) && ratio <= Number(m[2]);
  return undefined;
}

/** Prints one result record (a JSON line on stdout). */
export function emit(r: BenchResult): void {
  const rec = { ...r, met: r.met ?? goalMet(r.goal, r.ratio), runtime };
  for (const k of ["value", "baseline", "ratio"] as const) {
    if (typeof rec[k] === "number") rec[k] = round(rec[k]!);
  }
  emitted.push(rec);
  console.log(JSON.stringify(rec));
}

/** Prints a note record: methodology shown once under the bench's table. */
export function note(bench: string, text: string): void {
  notes.push(text);
  console.log(JSON.stringify({ bench, note: text, runtime }));
}

/** A progress message on stderr. */
export function progress(msg: string): void {
  process.stderr.write(`  ${msg}\n`);
}

/** Four significant digits, enough for any figure here. */
function round(x: number): number {
  return Number(x.toPrecision(4));
}

/** A figure as a table shows it: `281 MiB/s`, `12.3 µs`. */
export function fmt(value: number, unit: string): string {
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : Math.abs(value) >= 1 ? 2 : 3;
  return `${value.toFixed(digits)} ${unit}`;
}

/**
 * Ends a benchmark. Run by hand, prints this runtime's markdown table (under the
 * harness, scripts/bench.mjs prints the combined one instead).
 */
export function finish(title: string): void {
  if (underHarness) return;
  console.log(`\n### ${title} (${runtime})\n`);
  console.log("| measurement | thinstack | baseline | ratio | goal | |\n|---|---|---|---|---|---|");
  for (const r of emitted) {
    const base = r.baseline === undefined ? "" : `${r.baselineLabel ?? "baseline"} ${fmt(r.baseline, r.unit)}`;
    const met = r.met === undefined ? "" : r.met ? "met" : "**missed**";
    console.log(`| ${r.name} | ${fmt(r.value, r.unit)} | ${base} | ${r.ratio ?? ""} | ${r.goal ?? ""} | ${met} |`);
  }
  for (const n of notes) console.log(`\n- ${n}`);
  const details = emitted.filter((r) => r.detail);
  for (const r of details) console.log(`- ${r.name}: ${r.detail}`);
}

/** Milliseconds `fn` takes. */
export async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** The `q` quantile (0..1) of `xs`, nearest rank. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** MiB/s for `bytes` moved in `ms`. */
export const mibps = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000);

/** Operations per second for `n` operations in `ms`. */
export const opsps = (n: number, ms: number): number => n / (ms / 1000);

/** A seeded PRNG (mulberry32): the same offsets under both runtimes and on both sides. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` bytes that are not all alike (and do not compress to nothing), from `seed`. */
export function patternBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  return out;
}

/** Flushes every dirty page of the machine (`sync`), so one side's writeback does not land on the other's clock. */
export function syncAll(): void {
  try {
    execFileSync("sync");
  } catch {
    /* no sync(1): nothing to do about it */
  }
}

/**
 * Runs `fn` with a fresh scratch directory on the repository's disk (BENCH_DIR, or
 * bench/out), and removes the directory afterwards, whatever happens.
 */
export async function withScratchDir<T>(bench: string, label: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const base = process.env.BENCH_DIR ?? path.join(repoRoot, "bench", "out");
  await fs.mkdir(base, { recursive: true });
  if (!process.env.BENCH_DIR) {
    // bench/out is under the repository, so on its disk by construction.
  } else if ((await fs.stat(base)).dev !== (await fs.stat(repoRoot)).dev) {
    progress(`note: BENCH_DIR ${base} is not on the repository's filesystem`);
  }
  const dir = await fs.mkdtemp(path.join(base, `${bench}-${label}-${runtime}-`));
  try {
    return await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Runs `count` operations keeping `depth` in flight; `fn` gets the operation's index and its lane (0..depth-1). */
export async function pipeline(depth: number, count: number, fn: (i: number, lane: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(depth, count) }, async (_, lane) => {
    while (next < count) await fn(next++, lane);
  }));
}

/**
 * A/B(/C…) in lockstep: runs operations 0..count-1 on every side, `group` operations of one
 * side at a time (`depth` of them in flight), then the same operations on the next side,
 * the order of the sides rotating from one group to the next. Returns each side's total ms.
 * Drift on a shared machine (writeback, GC, a noisy neighbour, a disk that bursts) then
 * lands on all sides alike instead of on whichever ran during it, which separate
 * back-to-back runs cannot promise. Keep `group` large enough (tens of ms of work) that
 * switching sides costs nothing measurable: switching after every small operation makes
 * each side pay the other's cold caches and thread wake-ups.
 *
 * `settle[s]`, when given, ends each of side `s`'s turns inside its timing: a side whose
 * operations return before their work is done (the pool's write-behind and read-ahead)
 * waits for that work there, so it does not run on into the next side's turn.
 */
export async function interleaved(
  count: number, group: number, depth: number, sides: ((i: number, lane: number) => Promise<unknown>)[],
  settle: ((() => Promise<unknown>) | undefined)[] = [],
): Promise<number[]> {
  const ms = sides.map(() => 0);
  for (let g = 0, n = 0; g < count; g += group, n++) {
    const len = Math.min(group, count - g);
    for (let k = 0; k < sides.length; k++) {
      const s = (k + n) % sides.length;
      const side = sides[s];
      const t = performance.now();
      if (depth === 1) for (let i = g; i < g + len; i++) await side(i, 0);
      else await pipeline(depth, len, (i, lane) => side(g + i, lane));
      await settle[s]?.();
      ms[s] += performance.now() - t;
    }
  }
  return ms;
}
