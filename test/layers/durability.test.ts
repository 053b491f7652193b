/**
 * Durability of the layer store under power loss: the crash test's deterministic steps
 * (test/layers/crash-steps.ts) run in a layer with their file operations recorded, each
 * followed by a sync or a layer commit; then, at many cut points, the store's directory
 * is rebuilt from only what a disk must have kept (test/helpers/crashfs.ts) and must open
 * at a step at least as new as the last whose sync or commit returned, every layer equal
 * to the model of its step, with a clean fsck and pool check.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { LayerStore } from "../../src/layers/mod.ts";
import { checkPool } from "../../src/pool/check.ts";
import { startRecording } from "../../src/pool/fileops.ts";
import { chooseCuts, Recording, seeded, snapshot } from "../helpers/crashfs.ts";
import { runs, tmpDir } from "../helpers/tmp.ts";
import { commitsLayer, step } from "./crash-steps.ts";
import { describeLayer, plain } from "./helpers.ts";
import { MemFs } from "./memfs.ts";

const MiB = 2 ** 20;
/** Marks: -2 is the store created, -1 the work layer prepared, i ≥ 0 step i synced. */
const CREATED = -2;
const PREPARED = -1;

const models = new Map<number, Promise<ReturnType<MemFs["describe"]>>>();
function modelAt(last: number): Promise<ReturnType<MemFs["describe"]>> {
  let m = models.get(last);
  if (!m) {
    m = (async () => {
      const fsm = new MemFs();
      for (let i = 0; i <= last; i++) await step(fsm, i);
      return fsm.describe();
    })();
    models.set(last, m);
  }
  return m;
}

async function workload(root: string, logDir: string, steps: number): Promise<void> {
  const dir = path.join(root, "store");
  const rec = startRecording(root, logDir);
  let store: LayerStore | undefined;
  try {
    rec.mark("committing", CREATED);
    store = await LayerStore.open(dir, { create: true, dataSize: 256 * MiB, baseSize: 64 * MiB });
    rec.mark("committed", CREATED);
    rec.mark("committing", PREPARED);
    await store.prepare("work");
    rec.mark("committed", PREPARED);
    for (let i = 0; i < steps; i++) {
      await step(store.fs("work"), i);
      rec.mark("committing", i);
      if (commitsLayer(i)) {
        await store.commit(`img-${i}`, "work");
        await store.prepare("work", `img-${i}`);
      } else {
        await store.sync();
      }
      rec.mark("committed", i);
    }
    await store.close();
    store = undefined;
  } finally {
    rec.stop();
    await store?.close().catch(() => {});
  }
}

async function verify(dir: string, atLeast: number, atMost: number, what: string): Promise<void> {
  let s: LayerStore;
  try {
    s = await LayerStore.open(dir);
  } catch (e) {
    if (atLeast < CREATED) return; // the store's creation had not returned
    throw new Error(`${what}: the store does not open (${atLeast} had returned): ${(e as Error).message}`);
  }
  try {
    const layers = await s.list();
    const images = layers.filter((l) => l.kind === "committed").map((l) => Number(l.name.slice(4))).sort((a, b) => a - b);
    let at: number;
    if (layers.some((l) => l.name === "work")) {
      const counter = await s.fs("work").readFile("/counter", "utf8").catch(() => undefined);
      at = counter === undefined ? PREPARED : Number(counter);
      assert.deepEqual(plain(await describeLayer(s.fs("work"))), at === PREPARED ? plain(new MemFs().describe()) : plain(await modelAt(at)), `${what}: layer work at step ${at}`);
    } else {
      // Killed between a layer's commit and the next prepare, or before the first prepare.
      at = images.length ? images[images.length - 1] : CREATED;
    }
    assert.ok(at >= atLeast && at <= atMost, `${what}: opened at step ${at}; ${atLeast} had returned, ${atMost} had started`);
    for (const i of images) {
      assert.ok(commitsLayer(i), `${what}: image img-${i}`);
      assert.deepEqual(plain(await describeLayer(s.fs(`img-${i}`))), plain(await modelAt(i)), `${what}: image img-${i}`);
    }
    assert.deepEqual((await s.fsck()).problems, [], `${what}: fsck`);
  } finally {
    await s.close();
  }
  assert.deepEqual((await checkPool(dir)).faults, [], `${what}: pool check`);
}

test("a layer store rebuilt at any power cut opens at a step at least as new as the last that returned", async () => {
  // Cut points: tens in npm test, FUZZ_RUNS / 4 (hundreds) in npm run fuzz.
  const total = Math.max(30, Math.ceil(runs(30) / 4));
  const perWorkload = 120;
  let replays = 0;
  for (let w = 0; w * perWorkload < total; w++) {
    const seed = 1 + Math.floor(Math.random() * 2 ** 31);
    const root = await tmpDir("thinstack-ldur-");
    const logDir = await tmpDir("thinstack-llog-");
    const work = await tmpDir("thinstack-lreplay-");
    try {
      const initial = await snapshot(root);
      await workload(root, logDir, 16);
      const rec = Recording.read(initial, logDir);
      const rand = seeded(seed);
      for (const cut of chooseCuts(rec, Math.min(perWorkload, total - w * perWorkload), rand)) {
        const returned = rec.marksBefore(cut, "committed");
        const started = rec.marksBefore(cut, "committing");
        const atLeast = returned.length ? Math.max(...returned) : CREATED - 1;
        const atMost = started.length ? Math.max(...started) : CREATED - 1;
        for (const mode of ["strict", "torn"] as const) {
          const out = path.join(work, `${cut}-${mode}`);
          await fs.mkdir(out);
          await rec.materialize(cut, out, mode === "strict" ? undefined : () => {
            const r = rand();
            return r < 0.4 ? "all" : r < 0.55 ? "part" : "none";
          }, rand);
          await verify(path.join(out, "store"), atLeast, atMost, `seed ${seed}, cut ${cut} of ${rec.last} (${mode})`);
          await fs.rm(out, { recursive: true, force: true });
          replays++;
        }
      }
    } finally {
      for (const d of [root, logDir, work]) await fs.rm(d, { recursive: true, force: true });
    }
  }
  assert.ok(replays >= 2 * Math.min(total, 30), `replayed ${replays} states`);
});
