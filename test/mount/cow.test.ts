/**
 * Block copy-on-write through the kernel (issue 11): `dd conv=notrunc` of 32 KiB into
 * the middle of a 1 GiB image file from a mounted container layer adds exactly one pool
 * block, while the image layer (mounted read-only beside it, and through the store)
 * still reads its old bytes. `thinstack usage` says the same once the store is closed.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import type { LayerFs } from "../../src/layers/mod.ts";
import { mount } from "../../src/mount/mod.ts";
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

test("dd conv=notrunc of 32 KiB into the middle of a 1 GiB image file from a mounted container adds one block; the image reads its old bytes", { skip: skipUnless("dd", "sha256sum") }, async (t) => {
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
    const sha = (p: string, skip: number, count = 1) => ok(`dd if=${p} bs=32K skip=${skip} count=${count} status=none | sha256sum | cut -c1-64`);
    const hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex") + "\n";
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
  await f.close();
  const rows = JSON.parse((await ts(["usage", "--json", "img", "ctr"], { root: f.root })).stdout) as { key: string; mapped: number; exclusive: number }[];
  assert.deepEqual(rows.map((r) => [r.key, r.mapped, r.exclusive]), [["img", imgBlocks.mapped, 1], ["ctr", imgBlocks.mapped, 1]], "thinstack usage: the block the container replaced is now the image's alone");
});
