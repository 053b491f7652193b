/**
 * Pool block accounting of layers: copy-on-write of one block, blocks given back when
 * files and layers go, and small files costing metadata rather than blocks.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { LayerStore } from "../../src/layers/mod.ts";
import { withStore } from "./helpers.ts";

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const used = (s: LayerStore) => s.pool.status().dataBlocks.used;

function chunk(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i += 4) out[i] = (seed + i / 4) & 0xff;
  return out;
}

test("a 32 KiB write into the middle of a 1 GiB image file adds exactly one block", async () => {
  const { store, cleanup } = await withStore({ baseSize: 2 * GiB, dataSize: 4 * GiB });
  try {
    await store.prepare("image-extract");
    const img = store.fs("image-extract");
    // A 1 GiB file: 1 MiB of data every 64 MiB plus 4 MiB around the middle; the rest holes.
    const fh = await img.open("/big", "w");
    await fh.truncate(GiB);
    for (let off = 0; off < GiB; off += 64 * MiB) await fh.write(chunk(off / MiB, MiB), 0, MiB, off);
    for (let off = 510 * MiB; off < 514 * MiB; off += MiB) await fh.write(chunk(off / MiB, MiB), 0, MiB, off);
    await fh.close();
    await store.commit("image", "image-extract");
    assert.equal((await store.fs("image").stat("/big")).size, GiB);

    await store.prepare("container", "image");
    const before = used(store);
    const at = 512 * MiB + 16 * 1024;
    const original = new Uint8Array(await store.fs("image").readFile("/big").then((b) => (b as Uint8Array).subarray(at, at + 32768)));
    const c = await store.fs("container").open("/big", "r+");
    await c.write(new Uint8Array(32768).fill(0xee), 0, 32768, at);
    await c.close();
    await store.sync();
    assert.equal(used(store) - before, 1, "exactly one block added");

    const imgHandle = await store.fs("image").open("/big");
    const old = new Uint8Array(32768);
    await imgHandle.read(old, 0, 32768, at);
    await imgHandle.close();
    assert.deepEqual(old, original, "the image still reads the old bytes");
    const ch = await store.fs("container").open("/big");
    const now = new Uint8Array(32768);
    await ch.read(now, 0, 32768, at);
    await ch.close();
    assert.ok(now.every((b) => b === 0xee));
    assert.equal((await store.fs("container").stat("/big")).size, GiB);
    assert.deepEqual((await store.fsck()).problems, []);
  } finally {
    await cleanup();
  }
});

test("a file a layer wrote and deleted gives all its blocks back; a lower file's deletion frees nothing", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l1");
    const l1 = store.fs("l1");
    await l1.writeFile("/small", "tiny");
    await l1.writeFile("/lower", chunk(1, 3 * MiB + 123));
    await store.commit("c1", "l1");
    const base = used(store);
    assert.equal(base, 49);

    await store.prepare("l2", "c1");
    const l2 = store.fs("l2");
    await l2.writeFile("/mine", chunk(2, 5 * MiB + 7));
    await l2.writeFile("/medium", chunk(3, 10_000));
    assert.equal(used(store), base + 81);
    await l2.unlink("/mine");
    await l2.unlink("/medium");
    assert.equal(used(store), base, "all blocks of the deleted files are back");

    await l2.unlink("/lower");
    assert.equal(used(store), base, "deleting a lower layer's file frees nothing");
    await assert.rejects(l2.stat("/lower"), { code: "ENOENT" });
    assert.equal((await store.fs("c1").readFile("/lower")).length, 3 * MiB + 123);

    // Truncation gives the cut blocks back too.
    await l2.writeFile("/t", chunk(4, 2 * MiB));
    await l2.truncate("/t", 64 * 1024);
    assert.equal(used(store), base + 1);
    await store.sync();
    assert.deepEqual((await store.fsck()).problems, []);
  } finally {
    await cleanup();
  }
});

test("removing a layer frees what only it held; removing every layer returns the pool to zero", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l1");
    await store.fs("l1").writeFile("/a", chunk(1, 2 * MiB));
    await store.commit("c1", "l1");
    await store.prepare("l2", "c1");
    await store.fs("l2").writeFile("/b", chunk(2, MiB));
    const c1 = store.fs("l2");
    const fh = await c1.open("/a", "r+");
    await fh.write(new Uint8Array(100), 0, 100, 0);
    await fh.close();
    await store.commit("c2", "l2");
    await store.view("v", "c2");
    await store.prepare("top", "c2");
    await store.fs("top").writeFile("/c", chunk(3, MiB));
    assert.equal(used(store), 32 + 17 + 16);
    await store.remove("top");
    assert.equal(used(store), 32 + 17);
    await store.remove("v");
    assert.equal(used(store), 32 + 17);
    await assert.rejects(store.remove("c1"), { code: "EBUSY" });
    assert.equal(used(store), 32 + 17, "a refused remove changes nothing");
    await store.remove("c2");
    assert.equal(used(store), 32);
    await store.remove("c1");
    assert.equal(used(store), 0);
  } finally {
    await cleanup();
  }
});

test("10,000 files of 100 bytes take less than 5 MiB of pool and metadata", async () => {
  const { store, dir, cleanup } = await withStore();
  try {
    const before = store.pool.status();
    await store.prepare("small");
    const f = store.fs("small");
    for (let d = 0; d < 10; d++) {
      await f.mkdir(`/d${d}`);
      for (let i = 0; i < 1000; i++) await f.writeFile(`/d${d}/file-${i}.txt`, chunk(d * 1000 + i, 100));
    }
    await store.commit("small-c", "small");
    const after = store.pool.status();
    const dataBytes = (after.dataBlocks.used - before.dataBlocks.used) * after.blockSize;
    let metaBytes = 0;
    for (const name of await fs.readdir(path.join(dir, "metadata"))) metaBytes += (await fs.stat(path.join(dir, "metadata", name))).size;
    assert.ok(dataBytes + metaBytes < 5 * MiB, `pool ${dataBytes} + metadata ${metaBytes} bytes`);
    assert.equal(dataBytes, 0, "inline: no blocks at all");
    assert.equal((await store.fs("small-c").readFile("/d7/file-123.txt")).length, 100);
  } finally {
    await cleanup();
  }
});

test("usage reports what a layer alone holds", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l1");
    await store.fs("l1").writeFile("/big", chunk(1, MiB));
    await store.fs("l1").writeFile("/small", "0123456789");
    await store.commit("c1", "l1");
    await store.prepare("l2", "c1");
    assert.deepEqual(await store.usage("l2"), { size: 0, inodes: 0 });
    await store.fs("l2").writeFile("/x", "abc");
    const u = await store.usage("l2");
    assert.equal(u.size, 3);
    assert.equal(u.inodes, 2); // the file and its directory (copied up for its times)
    const u1 = await store.usage("c1");
    assert.equal(u1.size, MiB + 10);
  } finally {
    await cleanup();
  }
});

test("a layer is bounded by the base size (ENOSPC)", async () => {
  const { store, cleanup } = await withStore({ baseSize: 4 * MiB });
  try {
    await store.prepare("l");
    await assert.rejects(store.fs("l").writeFile("/huge", new Uint8Array(5 * MiB)), { code: "ENOSPC" });
    await store.fs("l").rm("/huge", { force: true });
    await store.fs("l").writeFile("/fits", new Uint8Array(3 * MiB));
    assert.deepEqual((await store.fsck()).problems, []);
  } finally {
    await cleanup();
  }
});
