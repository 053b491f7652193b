/**
 * Block copy-on-write through the kernel (issue 11): `dd conv=notrunc` of 32 KiB into
 * the middle of a 1 GiB image file from a mounted container layer adds exactly one pool
 * block, while the image layer (mounted read-only beside it, and through the store)
 * still reads its old bytes. `thinstack usage` says the same once the store is closed.
 * Then the same from two more containers served with the image by ONE connection (a
 * served root, as a daemon serves containers), where the image file is one shared node
 * whose pages the kernel caches for all: each write must copy up in its container alone
 * and never enter the shared node's page cache, which the image keeps reading.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import type { LayerFs } from "../../src/layers/mod.ts";
import { LayerServer, mount } from "../../src/mount/mod.ts";
import { ts } from "../cli/cli.ts";
import { ok, pattern } from "./helpers.ts";
import { imageFixture, skipUnless } from "./programs-helpers.ts";

const GiB = 2 ** 30;
const CHUNK = 1 << 20;
/** 32 KiB pieces: the write lands in the second half of the 64 KiB block at 512 MiB + 128 KiB. */
const SEEK = GiB / 2 / 32768 + 5;
const PIECE = 32768;

/** MiB `i` of the image file: a shared pattern stamped with its index, so every MiB differs. */
function chunk(base: Uint8Array, i: number): Uint8Array {
  const c = Buffer.from(base);
  c.writeUInt32LE(i, 0);
  c.writeUInt32LE(i ^ 0x5a5a5a5a, CHUNK - 4);
  return c;
}

/** `length` bytes of /big at `position`, read through the store. */
async function readAt(lfs: LayerFs, position: number, length: number): Promise<Uint8Array> {
  const h = await lfs.open("/big", "r");
  try {
    const { buffer, bytesRead } = await h.read(new Uint8Array(length), 0, length, position);
    assert.equal(bytesRead, length);
    return buffer;
  } finally {
    await h.close();
  }
}

test("dd conv=notrunc of 32 KiB into the middle of a 1 GiB image file from a mounted container adds one block; the image reads its old bytes (own mounts, then one connection sharing the node)", { skip: skipUnless("dd", "sha256sum") }, async (t) => {
  const f = await imageFixture();
  t.after(f.cleanup);
  const { store } = f;
  const base = pattern(CHUNK, 9);
  await store.prepare("img-x");
  const h = await store.fs("img-x").open("/big", "w");
  for (let i = 0; i < GiB / CHUNK; i++) await h.write(chunk(base, i), 0, CHUNK, i * CHUNK);
  await h.close();
  await store.commit("img", "img-x");
  await store.prepare("ctr", "img");
  const at = SEEK * PIECE;
  const patch = pattern(PIECE, 77);
  const patchFile = path.join(f.dir, "patch");
  await fs.writeFile(patchFile, patch);
  // The whole file as the container should see it afterwards, and the image's 64 KiB around the write.
  const want = createHash("sha256");
  for (let i = 0; i < GiB / CHUNK; i++) {
    const c = chunk(base, i);
    if (i === Math.floor(at / CHUNK)) c.set(patch, at % CHUNK);
    want.update(c);
  }
  const wantHash = want.digest("hex");
  const oldBlock = await readAt(store.fs("img"), at - PIECE, 2 * PIECE);
  const usedBefore = store.pool.status().dataBlocks.used;
  const imgBlocks = store.blockUsage("img");

  const sha = (p: string, skip: number, count = 1) => ok(`dd if=${p} bs=32K skip=${skip} count=${count} status=none | sha256sum | cut -c1-64`);
  const hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex") + "\n";

  const m = await mount(store, "ctr", await f.scratch("ctr"));
  const img = await mount(store, "img", await f.scratch("img"));
  try {
    assert.equal(img.readOnly, true);
    await ok(`dd if=${patchFile} of=${m.path}/big bs=32K count=1 seek=${SEEK} conv=notrunc,fsync status=none`);
    // fsync committed the store: the pool holds exactly one more block, the container's alone.
    assert.equal(store.pool.status().dataBlocks.used, usedBefore + 1, "one 64 KiB block added to the pool");
    const ctrBlocks = store.blockUsage("ctr");
    assert.equal(ctrBlocks.exclusive, 1);
    assert.equal(ctrBlocks.mapped, imgBlocks.mapped);
    assert.equal(ctrBlocks.shared, imgBlocks.mapped - 1);
    assert.equal(await sha(`${m.path}/big`, SEEK), hex(patch), "the container reads what it wrote");
    assert.equal(await sha(`${m.path}/big`, SEEK - 1), hex(oldBlock.subarray(0, PIECE)), "the other half of the block was copied from the image");
    assert.equal(await sha(`${img.path}/big`, SEEK - 1, 2), hex(oldBlock), "the image (mounted) reads its old bytes");
    assert.equal(await ok(`sha256sum < ${m.path}/big | cut -c1-64`), wantHash + "\n", "the whole 1 GiB as the container sees it");
  } finally {
    await img.unmount();
    await m.unmount();
  }
  assert.deepEqual(await readAt(store.fs("img"), at - PIECE, 2 * PIECE), oldBlock, "the image layer, read through the store, is unchanged");
  assert.deepEqual(await store.check(), []);

  // Two more containers and the image on one connection, where /big is one shared node.
  // ctr2 writes while it alone has looked the file up (the open itself is redirected to a
  // copy); ctr3 writes once the image has the name too (the kernel retries through a fresh lookup).
  await store.prepare("ctr2", "img");
  await store.prepare("ctr3", "img");
  const server = await LayerServer.start(store, await f.scratch("served"));
  try {
    const image = server.add("img");
    for (const key of ["ctr2", "ctr3"]) {
      const c = (await server.bind(key, await f.scratch(key))).path;
      const used = store.pool.status().dataBlocks.used;
      await sha(`${c}/big`, SEEK - 1, 2); // the block in the shared node's page cache
      const shared = await server.nodeOf(key, "/big");
      assert.ok(shared !== undefined);
      if (key === "ctr3") assert.equal(await server.nodeOf("img", "/big"), shared, "the container and the image see one node");
      await ok(`dd if=${patchFile} of=${c}/big bs=32K count=1 seek=${SEEK} conv=notrunc,fsync status=none`);
      assert.equal(store.pool.status().dataBlocks.used, used + 1, `${key}: one block added, also through a shared node`);
      assert.equal(store.blockUsage(key).exclusive, 1);
      assert.notEqual(await server.nodeOf(key, "/big"), shared, `${key} has a node of its own now`);
      assert.equal(await sha(`${c}/big`, SEEK), hex(patch), `${key} reads what it wrote`);
      assert.equal(await sha(`${image}/big`, SEEK - 1, 2), hex(oldBlock), `after ${key}'s write the image, through the shared node and its cached pages, reads its old bytes`);
    }
    assert.equal(await ok(`sha256sum < ${server.path}/ctr3/big | cut -c1-64`), wantHash + "\n");
  } finally {
    await server.unmount();
  }
  assert.deepEqual(await readAt(store.fs("img"), at - PIECE, 2 * PIECE), oldBlock);
  assert.deepEqual(await store.check(), []);
  await f.close();
  const rows = JSON.parse((await ts(["usage", "--json", "img", "ctr", "ctr2", "ctr3"], { root: f.root })).stdout) as { key: string; mapped: number; exclusive: number }[];
  assert.deepEqual(rows.map((r) => [r.key, r.mapped, r.exclusive]), [["img", imgBlocks.mapped, 1], ["ctr", imgBlocks.mapped, 1], ["ctr2", imgBlocks.mapped, 1], ["ctr3", imgBlocks.mapped, 1]], "thinstack usage: the block every container replaced is now the image's alone; each has its own");
});
