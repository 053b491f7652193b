/**
 * Crash consistency: a child process works on a layer and is killed with SIGKILL at
 * random moments; the store must reopen at a commit the child reached (or the one it
 * was making), every layer equal to the model at that point, and the pool's blocks
 * exactly those the files need.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import { test } from "node:test";
import { LayerStore } from "../../src/layers/mod.ts";
import { spawnScript } from "../helpers/runtime.ts";
import { commitsLayer, step } from "./crash-steps.ts";
import { describeLayer, plain, tempDir } from "./helpers.ts";
import { MemFs } from "./memfs.ts";

const child = new URL("./crash-child.ts", import.meta.url).pathname;

/** The model after steps 0..last. */
async function modelAt(last: number): Promise<MemFs> {
  const m = new MemFs();
  for (let i = 0; i <= last; i++) await step(m, i);
  return m;
}

/** Runs the child from step `from` and kills it after it announced `durable` points; returns the last announced. */
async function runAndKill(dir: string, from: number, durable: number, extraMs: number): Promise<number> {
  const proc = spawnScript(child, [dir, String(from)]);
  let out = "";
  let err = "";
  proc.stderr!.on("data", (c) => (err += c));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on("data", (c) => {
      out += c;
      if ((out.match(/^durable /gm) ?? []).length >= durable) setTimeout(resolve, extraMs);
    });
    exited.then((code) => reject(new Error(`child exited with ${code}: ${err}`)));
  });
  proc.kill("SIGKILL");
  assert.equal(await exited, null, `the child should die of the signal: ${err}`);
  const last = [...out.matchAll(/^durable (\d+)$/gm)].map((m) => Number(m[1])).pop();
  return last ?? from - 1;
}

test("a store killed with SIGKILL reopens at its last commit, every layer consistent", async () => {
  const dir = await tempDir("crash-");
  try {
    const store = await LayerStore.open(dir, { create: true, dataSize: 2 * 2 ** 30, baseSize: 256 * 2 ** 20 });
    await store.close();
    let from = 0;
    let seed = 7;
    for (let round = 0; round < 4; round++) {
      seed = (seed * 48271) % 2147483647;
      const announced = await runAndKill(dir, from, 3 + (seed % 12), seed % 7);
      const s = await LayerStore.open(dir);
      try {
        const layers = await s.list();
        const work = layers.find((l) => l.name === "work");
        // The layer being worked on, or (killed between commit and prepare) the last image.
        const key = work ? "work" : layers.filter((l) => l.kind === "committed").map((l) => l.name).sort((a, b) => Number(a.slice(4)) - Number(b.slice(4))).pop()!;
        const counter = Number(await s.fs(key).readFile("/counter", "utf8"));
        assert.ok(counter >= announced && counter <= announced + 1, `reopened at step ${counter}, the child announced ${announced}`);
        assert.deepEqual(plain(await describeLayer(s.fs(key))), plain((await modelAt(counter)).describe()), `layer ${key} at step ${counter}`);
        for (const l of layers) {
          if (l.kind !== "committed") continue;
          const at = Number(l.name.slice(4));
          assert.ok(commitsLayer(at));
          assert.deepEqual(plain(await describeLayer(s.fs(l.name))), plain((await modelAt(at)).describe()), `image ${l.name}`);
        }
        assert.deepEqual((await s.fsck()).problems, [], "pool blocks and tables agree");
        from = counter + 1;
      } finally {
        await s.close();
      }
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("a full pool: blocks a deleted file freed are reused only through a commit of the whole store, and a crash image stays consistent", async () => {
  const MiB = 2 ** 20;
  const dir = await tempDir();
  const copy = `${dir}-crash`;
  try {
    const store = await LayerStore.open(dir, { create: true, dataSize: 4 * MiB, baseSize: 16 * MiB });
    await store.prepare("l");
    const f = store.fs("l");
    await f.writeFile("/F", new Uint8Array(2 * MiB).fill(0x46));
    await store.sync();
    await f.unlink("/F"); // its blocks are pending until a commit
    // Needs F's blocks: the pool may not commit in the middle of the write (its tables
    // are half-changed), so the store commits between operations and writes again.
    await f.writeFile("/G", new Uint8Array(3 * MiB).fill(0x47));
    const g = await f.readFile("/G") as Uint8Array;
    assert.equal(g.length, 3 * MiB);
    assert.ok(g.every((b) => b === 0x47), "G reads what was written");
    await fs.cp(dir, copy, { recursive: true }); // the disk as a crash now leaves it
    await store.close();
    const again = await LayerStore.open(copy);
    try {
      assert.deepEqual((await again.fsck()).problems, []);
      const names = await again.fs("l").readdir("/");
      assert.ok(!names.includes("F"), `F was deleted before the commit: ${names}`);
      const blocks = again.pool.status().dataBlocks.used;
      assert.ok(blocks <= 48, `at most G's blocks and the base's: ${blocks}`);
    } finally {
      await again.close();
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rm(copy, { recursive: true, force: true });
  }
});
