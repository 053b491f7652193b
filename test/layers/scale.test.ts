/**
 * Scale: a chain of 128 layers, a store of 1,000 layers, a layer of 100,000 files whose
 * one-file change commits in proportion to the change, and journal compaction.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { LayerStore } from "../../src/layers/mod.ts";
import { tempDir, withStore } from "./helpers.ts";

/** Sizes of the metadata files, by name. */
async function metadataFiles(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of await fs.readdir(path.join(dir, "metadata"))) out.set(name, (await fs.stat(path.join(dir, "metadata", name))).size);
  return out;
}

/** Bytes of files that are new (or rewritten, the root) since `before`. */
function written(before: Map<string, number>, after: Map<string, number>): number {
  let n = 0;
  for (const [name, size] of after) if (!before.has(name) || name === "pool.cbor") n += size;
  return n;
}

test("a chain of 128 layers: every layer sees the union, lookups through it are cached", async () => {
  const { store, cleanup } = await withStore();
  try {
    let parent: string | undefined;
    for (let i = 0; i < 128; i++) {
      await store.prepare(`p${i}`, parent);
      const f = store.fs(`p${i}`);
      if (i === 0) await f.mkdir("/etc");
      await f.writeFile(`/etc/layer-${i}`, `${i}`);
      await f.writeFile("/etc/shared", `written by ${i}`);
      if (i % 2 === 1) await f.unlink(`/etc/layer-${i - 1}`);
      await store.commit(`c${i}`, `p${i}`);
      parent = `c${i}`;
    }
    await store.view("top", parent);
    const top = store.fs("top");
    const names = await top.readdir("/etc");
    assert.equal(names.length, 65);
    assert.equal(await top.readFile("/etc/shared", "utf8"), "written by 127");
    assert.equal(await top.readFile("/etc/layer-0", "utf8").catch((e) => e.code), "ENOENT");
    assert.equal(await top.readFile("/etc/layer-1", "utf8"), "1");
    const before = store.cacheStats();
    for (let i = 0; i < 100; i++) await top.stat("/etc/layer-1");
    const after = store.cacheStats();
    assert.equal(after.misses, before.misses, "repeated lookups do not walk the chain");
    assert.ok(after.hits - before.hits >= 200);
    assert.deepEqual((await store.fsck()).problems, []);
  } finally {
    await cleanup();
  }
});

test("a store of 1,000 layers opens and works", async () => {
  const dir = await tempDir();
  let store = await LayerStore.open(dir, { create: true, dataSize: 4 * 2 ** 30, baseSize: 2 ** 30 });
  try {
    const committed: string[] = [];
    const expect = new Map<string, string>();
    let seed = 1;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let i = 0; i < 1000; i++) {
      const parent = committed.length && rand(4) !== 0 ? committed[rand(committed.length)] : undefined;
      const key = `layer-${i}`;
      await store.prepare(key, parent);
      await store.fs(key).writeFile(`/own-${i}`, `layer ${i}`);
      if (i % 5 === 0) {
        await store.commit(`image-${i}`, key);
        committed.push(`image-${i}`);
        expect.set(`image-${i}`, `/own-${i}`);
      } else {
        expect.set(key, `/own-${i}`);
      }
    }
    await store.close();
    store = await LayerStore.open(dir);
    assert.equal((await store.list()).length, 1000);
    for (const [key, file] of expect) assert.equal(await store.fs(key).readFile(file, "utf8"), `layer ${file.slice(5)}`);
    await store.prepare("one-more", committed[committed.length - 1]);
    assert.deepEqual((await store.fsck()).problems, []);
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("100,000 files in a layer; changing one and committing costs the change, not the table", async () => {
  const { store, dir, cleanup } = await withStore();
  try {
    await store.prepare("big");
    const f = store.fs("big");
    for (let d = 0; d < 100; d++) {
      await f.mkdir(`/d${d}`);
      for (let i = 0; i < 1000; i++) await f.writeFile(`/d${d}/f${i}`, `file ${d}/${i}\n`);
    }
    let before = await metadataFiles(dir);
    await store.sync();
    let after = await metadataFiles(dir);
    const full = written(before, after);
    assert.ok(full > 2 * 2 ** 20, `the first commit writes the whole table (${full} bytes)`);

    before = after;
    await f.writeFile("/d42/f42", "changed\n");
    await store.sync();
    after = await metadataFiles(dir);
    const small = written(before, after);
    assert.ok(small < 8 * 1024, `a one-file commit wrote ${small} bytes`);

    before = after;
    await store.commit("big-image", "big");
    after = await metadataFiles(dir);
    assert.ok(written(before, after) < 8 * 1024, "committing the layer does not rewrite its table");

    await store.prepare("over", "big-image");
    await store.fs("over").writeFile("/d1/f1", "over\n");
    await store.close();
    const again = await LayerStore.open(dir);
    try {
      assert.equal(await again.fs("big-image").readFile("/d42/f42", "utf8"), "changed\n");
      assert.equal(await again.fs("over").readFile("/d1/f1", "utf8"), "over\n");
      assert.equal((await again.fs("over").readdir("/d99")).length, 1000);
    } finally {
      await again.close();
    }
  } finally {
    await cleanup();
  }
});

test("the journal is compacted now and then, and replays to the same state", async () => {
  const { store, dir, cleanup } = await withStore();
  try {
    await store.prepare("j");
    const f = store.fs("j");
    for (let i = 0; i < 100; i++) {
      await f.writeFile(`/f${i % 10}`, `version ${i}`);
      await store.sync();
    }
    const files = [...(await metadataFiles(dir)).keys()].filter((n) => n.startsWith("layer-"));
    assert.ok(files.length <= 33, `${files.length} layer files`);
    await store.close();
    const again = await LayerStore.open(dir);
    try {
      for (let k = 0; k < 10; k++) assert.equal(await again.fs("j").readFile(`/f${k}`, "utf8"), `version ${90 + k}`);
    } finally {
      await again.close();
    }
  } finally {
    await cleanup();
  }
});

test("in a fragmented layer, a commit that allocates or frees a few pages journals those steps, not the page map", async () => {
  const { store, dir, cleanup } = await withStore();
  try {
    await store.prepare("frag");
    const f = store.fs("frag");
    // 4,000 files of 3,000 bytes (a page each, past the inline limit), every other one deleted:
    // the free-page map has about 2,000 runs.
    for (let d = 0; d < 4; d++) {
      await f.mkdir(`/d${d}`);
      for (let i = 0; i < 1000; i++) await f.writeFile(`/d${d}/f${i}`, new Uint8Array(3000).fill(i & 0xff));
    }
    await store.sync();
    for (let d = 0; d < 4; d++) for (let i = 0; i < 1000; i += 2) await f.unlink(`/d${d}/f${i}`);
    await store.sync();
    let before = await metadataFiles(dir);
    await f.writeFile("/d0/f1", new Uint8Array(5000).fill(7)); // frees a page, takes two
    await f.unlink("/d3/f999"); // frees a page
    await store.sync();
    let after = await metadataFiles(dir);
    const bytes = written(before, after);
    assert.ok(bytes < 4 * 1024, `the commit wrote ${bytes} bytes`);
    before = after;
    await f.writeFile("/d1/new", new Uint8Array(9000).fill(9));
    await store.sync();
    assert.ok(written(before, await metadataFiles(dir)) < 4 * 1024);
    await store.close();
    const again = await LayerStore.open(dir);
    try {
      // The replayed allocator agrees with the files (fsck checks free pages against extents).
      assert.deepEqual((await again.fsck()).problems, []);
      assert.deepEqual(await again.fs("frag").readFile("/d0/f1"), Buffer.from(new Uint8Array(5000).fill(7)));
      assert.deepEqual(await again.fs("frag").readFile("/d1/new"), Buffer.from(new Uint8Array(9000).fill(9)));
      // New files still land in free pages without colliding with live ones.
      await again.fs("frag").writeFile("/d2/x", new Uint8Array(20000).fill(3));
      assert.deepEqual((await again.fsck()).problems, []);
      assert.deepEqual(await again.fs("frag").readFile("/d1/f1"), Buffer.from(new Uint8Array(3000).fill(1)));
    } finally {
      await again.close();
    }
  } finally {
    await cleanup();
  }
});
