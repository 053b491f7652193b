/**
 * check and repair of the layer store (thin_check / thin_repair for layers) against
 * metadata corrupted on purpose: the layers' CBOR files edited while the store is closed,
 * or the pool's devices changed behind the store's back.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { LayerStore } from "../../src/layers/mod.ts";
import { decodeMetaFile, encodeMetaFile } from "../../src/pool/metafile.ts";
import { tempDir } from "./helpers.ts";

const KiB = 1024;
const GiB = 2 ** 30;

type Stored = Record<string, unknown> & {
  record?: { name: string; parent: number };
  inodes?: [number, unknown[] | null][];
  alloc?: { free: number[]; own: number[] };
  allocLog?: number[];
};

/** The metadata files of the layer named `name` (base first, then its journal), by the records they hold. */
async function layerFiles(dir: string, name: string): Promise<string[]> {
  const meta = path.join(dir, "metadata");
  const files = (await fs.readdir(meta)).filter((f) => /^layer-\d+(-j)?\./.test(f));
  let id: string | undefined;
  for (const f of files) {
    const v = decodeMetaFile(await fs.readFile(path.join(meta, f)), "test") as Stored;
    if (v.record?.name === name) id = /^layer-(\d+)/.exec(f)![1];
  }
  assert.ok(id, `no metadata file holds layer '${name}'`);
  const mine = files.filter((f) => new RegExp(`^layer-${id}(-j)?\\.`).test(f));
  return mine.sort((a, b) => Number(a.includes("-j.")) - Number(b.includes("-j.")));
}

/** Rewrites every metadata file of layer `name` through `fn`. */
async function editLayer(dir: string, name: string, fn: (v: Stored) => void): Promise<void> {
  for (const f of await layerFiles(dir, name)) {
    const file = path.join(dir, "metadata", f);
    const v = decodeMetaFile(await fs.readFile(file), "test") as Stored;
    fn(v);
    await fs.writeFile(file, encodeMetaFile(v));
  }
}

/** Changes the stored form of inode `ino` wherever layer `name`'s files hold it. */
async function editInode(dir: string, name: string, ino: number, fn: (s: unknown[]) => void): Promise<number> {
  let n = 0;
  await editLayer(dir, name, (v) => {
    for (const [i, s] of v.inodes ?? []) {
      if (i === ino && s) {
        fn(s);
        n++;
      }
    }
  });
  assert.ok(n > 0, `layer '${name}' holds no inode ${ino}`);
  return n;
}

async function freshStore(): Promise<{ dir: string; store: LayerStore }> {
  const dir = await tempDir("fsck-");
  const store = await LayerStore.open(dir, { create: true, dataSize: 2 * GiB, baseSize: GiB });
  return { dir, store };
}

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return out;
}

async function read(store: LayerStore, key: string, p: string): Promise<Uint8Array> {
  return new Uint8Array(await store.fs(key).readFile(p) as Uint8Array);
}

test("check reports an inline file whose size disagrees with its inline data; repair sets the size, in committed and active layers", async () => {
  let { dir, store } = await freshStore();
  try {
    await store.prepare("base");
    await store.fs("base").mkdir("/etc");
    await store.fs("base").writeFile("/etc/hostname", "hello");
    await store.commit("img", "base");
    await store.prepare("ctr", "img");
    await store.fs("ctr").writeFile("/note", "abc");
    const hostname = (await store.fs("img").stat("/etc/hostname")).ino;
    const note = (await store.fs("ctr").stat("/note")).ino;
    await store.close();
    await editInode(dir, "img", hostname, (s) => (s[3] = 50));
    await editInode(dir, "ctr", note, (s) => (s[3] = 1));

    store = await LayerStore.open(dir);
    assert.equal((await read(store, "img", "/etc/hostname")).length, 50, "the damage shows: 45 zeros after the data");
    const problems = await store.check();
    assert.deepEqual(problems, [
      `img: inode ${hostname} (/etc/hostname): size 50 disagrees with its 5 byte(s) of inline data`,
      `ctr: inode ${note} (/note): size 1 disagrees with its 3 byte(s) of inline data`,
    ]);
    const changes = await store.repair();
    assert.deepEqual(changes, [
      `img: inode ${hostname} (/etc/hostname): size 50 -> 5, the length of its inline data`,
      `ctr: inode ${note} (/note): size 1 -> 3, the length of its inline data`,
    ]);
    assert.deepEqual(await store.check(), []);
    assert.equal(await store.fs("img").readFile("/etc/hostname", "utf8"), "hello");
    assert.equal(await store.fs("ctr").readFile("/etc/hostname", "utf8"), "hello");
    assert.equal(await store.fs("ctr").readFile("/note", "utf8"), "abc");
    await store.close();
    store = await LayerStore.open(dir);
    assert.deepEqual(await store.check(), [], "the repair was committed");
    assert.deepEqual(await store.repair(), []);
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("an extent outside the device is reported once per file; repair drops it and cuts the file there", async () => {
  let { dir, store } = await freshStore();
  try {
    await store.prepare("base");
    const b = store.fs("base");
    const first = bytes(128 * KiB, 1);
    const second = bytes(128 * KiB, 2);
    await b.writeFile("/big", first);
    await b.writeFile("/other", bytes(64 * KiB, 3)); // so that /big's next pages go elsewhere
    await b.appendFile("/big", second);
    await b.writeFile("/far", bytes(64 * KiB, 4));
    await store.commit("img", "base");
    await store.prepare("ctr", "img");
    const big = (await store.fs("img").stat("/big")).ino;
    const far = (await store.fs("img").stat("/far")).ino;
    await store.close();
    let extents = 0;
    await editInode(dir, "img", big, (s) => {
      const flat = s[10] as number[];
      extents = flat.length / 3;
      flat[4] = 99_999_999; // the second extent's device page
    });
    assert.ok(extents >= 2, `/big has ${extents} extent(s); the test needs two`);
    await editInode(dir, "img", far, (s) => {
      const flat = s[10] as number[];
      flat[1] = 262_144 - 1; // the last page of the device: the extent runs past its end
    });

    store = await LayerStore.open(dir);
    const problems = await store.check();
    const outside = problems.filter((p) => p.includes("extent outside the device"));
    assert.deepEqual(outside, [
      `img: inode ${big} (/big): extent outside the device: file page 32 at device pages 99999999+32; the device has 262144 pages`,
      `img: inode ${far} (/far): extent outside the device: file page 0 at device pages 262143+16; the device has 262144 pages`,
    ]);
    assert.ok(!problems.some((p) => /holds file data but is not mapped/.test(p)), problems.join("\n"));

    const changes = await store.repair();
    assert.ok(changes.includes(`img: inode ${big} (/big): extent outside the device: file page 32 at device pages 99999999+32; the device has 262144 pages: dropped it and the file's pages from page 32 on; size 262144 -> 131072`), changes.join("\n"));
    assert.ok(changes.includes(`img: inode ${far} (/far): extent outside the device: file page 0 at device pages 262143+16; the device has 262144 pages: dropped it and the file's pages from page 0 on; size 65536 -> 0`), changes.join("\n"));
    assert.deepEqual(await store.check(), []);
    for (const key of ["img", "ctr"]) {
      assert.deepEqual(await read(store, key, "/big"), first, `${key}: /big keeps what came before the bad extent`);
      assert.equal((await store.fs(key).stat("/far")).size, 0);
    }
    await store.close();
    store = await LayerStore.open(dir);
    assert.deepEqual(await store.check(), []);
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("a layer whose parent is missing: open fails, a salvage open checks it, repair drops it and the layers above it", async () => {
  let { dir, store } = await freshStore();
  try {
    await store.prepare("base");
    await store.fs("base").writeFile("/a", bytes(200 * KiB, 5));
    await store.commit("img", "base");
    await store.prepare("mid-x", "img");
    await store.fs("mid-x").writeFile("/b", bytes(100 * KiB, 6));
    await store.commit("mid", "mid-x");
    await store.prepare("ctr", "mid");
    await store.fs("ctr").writeFile("/c", "c");
    await store.view("look", "mid");
    await store.prepare("solo");
    await store.fs("solo").writeFile("/s", bytes(70 * KiB, 7));
    const before = store.pool.status().dataBlocks.used;
    await store.close();
    await editLayer(dir, "mid", (v) => {
      if (v.record) v.record.parent = 99;
    });

    await assert.rejects(LayerStore.open(dir), { code: "EIO", message: /layer 'mid' names parent 99, which is missing/ });
    store = await LayerStore.open(dir, { salvage: true });
    assert.deepEqual((await store.check()).sort(), [
      "ctr: it is based on 'mid', which names parent layer 99, which is missing",
      "look: it is based on 'mid', which names parent layer 99, which is missing",
      "mid: names parent layer 99, which is missing",
    ]);
    const changes = await store.repair();
    assert.deepEqual(changes, [
      "mid: dropped the layer and its device: names parent layer 99, which is missing",
      "ctr: dropped the layer and its device: it is based on 'mid', which names parent layer 99, which is missing",
      "look: dropped the layer and its device: it is based on 'mid', which names parent layer 99, which is missing",
    ]);
    assert.deepEqual(await store.check(), []);
    assert.deepEqual((await store.list()).map((l) => l.name).sort(), ["img", "solo"]);
    assert.ok(store.pool.status().dataBlocks.used < before, "the dropped devices' own blocks went back to the pool");
    await store.close();
    store = await LayerStore.open(dir);
    assert.deepEqual(await store.check(), []);
    assert.deepEqual(await read(store, "img", "/a"), bytes(200 * KiB, 5));
    assert.deepEqual(await read(store, "solo", "/s"), bytes(70 * KiB, 7));
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("repair rebuilds a committed layer's free-page map and block ownership and discards blocks no file needs", async () => {
  let { dir, store } = await freshStore();
  try {
    await store.prepare("base");
    await store.fs("base").writeFile("/a", bytes(256 * KiB, 8));
    await store.commit("img", "base");
    await store.prepare("ctr", "img");
    await store.fs("ctr").writeFile("/c", bytes(64 * KiB, 9));
    const used = store.pool.status().dataBlocks.used;
    const imgDev = store.blockUsage("img").device;
    await store.close();
    // img's free-page map loses its allocations and its own blocks, and claims pages far away.
    // (A journal may hold the allocator's steps rather than its map: the map replaces them.)
    await editLayer(dir, "img", (v) => {
      if (!v.alloc && !v.allocLog) return;
      delete v.allocLog;
      v.alloc = { free: [0, 100_000, 100_016, 262_144 - 100_016], own: [] };
    });

    store = await LayerStore.open(dir);
    // A block of img's device no file uses (written behind the store's back).
    await store.pool.device(imgDev).write(5000 * 64 * KiB, new Uint8Array(64 * KiB).fill(1));
    await store.pool.commit();
    const problems = await store.check();
    assert.ok(problems.includes("img: pages 100000+16 are allocated but no file uses them"), problems.join("\n"));
    assert.ok(problems.some((p) => /^img: inode \d+ uses pages 0\+64, some of them marked free$/.test(p)), problems.join("\n"));
    assert.ok(problems.includes("img: blocks 0-3 hold the layer's own copies but the free-page map does not mark them as the layer's own"), problems.join("\n"));
    assert.ok(problems.includes(`img: device ${imgDev} maps 5 blocks, its files need 4`), problems.join("\n"));

    const changes = await store.repair();
    assert.deepEqual(changes.filter((c) => !c.startsWith("img: ")), []);
    assert.ok(changes.includes("img: discarded 1 device block(s) no file needs"), changes.join("\n"));
    assert.ok(changes.includes("img: freed pages 100000+16, which no file used"), changes.join("\n"));
    assert.ok(changes.some((c) => /^img: marked pages 0\+64 as used: inode \d+ \(\/a\) uses them$/.test(c)), changes.join("\n"));
    assert.ok(changes.includes("img: marked 4 block(s) the device holds its own copy of as the layer's own"), changes.join("\n"));
    assert.ok(!changes.some((c) => /left alone|cannot repair/.test(c)), changes.join("\n"));
    assert.deepEqual(await store.check(), []);
    assert.equal(store.pool.status().dataBlocks.used, used);
    assert.deepEqual(await read(store, "ctr", "/a"), bytes(256 * KiB, 8));
    // The rebuilt map allocates as before: a new layer on img takes fresh blocks, never img's.
    await store.prepare("ctr2", "img");
    await store.fs("ctr2").writeFile("/n", bytes(8 * KiB, 10));
    assert.deepEqual(await read(store, "img", "/a"), bytes(256 * KiB, 8));
    assert.deepEqual(await store.check(), []);
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("what repair cannot fix is not counted as a change and check still reports it", async () => {
  let { dir, store } = await freshStore();
  try {
    await store.prepare("base");
    await store.fs("base").writeFile("/a", bytes(64 * KiB, 11));
    await store.fs("base").writeFile("/b", bytes(64 * KiB, 12));
    await store.commit("img", "base");
    const a = (await store.fs("img").stat("/a")).ino;
    const b = (await store.fs("img").stat("/b")).ino;
    await store.close();
    let aExtents: number[] = [];
    await editInode(dir, "img", a, (s) => (aExtents = [...s[10] as number[]]));
    await editInode(dir, "img", b, (s) => (s[10] = [...aExtents]));

    store = await LayerStore.open(dir);
    const share = (await store.check()).filter((p) => p.includes("share device page"));
    assert.equal(share.length, 1);
    assert.ok([`img: inodes ${a} and ${b} share device page ${aExtents[1]}`, `img: inodes ${b} and ${a} share device page ${aExtents[1]}`].includes(share[0]), share[0]);
    const changes = await store.repair();
    // /b's own pages are no longer used by any file: derived, so freed. The sharing stays.
    assert.ok(!changes.some((c) => /left alone|cannot repair|share/.test(c)), changes.join("\n"));
    assert.ok(changes.every((c) => c.startsWith("img: ")), changes.join("\n"));
    assert.deepEqual(await store.check(), share);
    assert.deepEqual(await store.repair(), [], "a second repair has nothing it can change");
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("blocks a device lost: file data from lower layers is copied from the parent, the layer's own files lose those pages", async () => {
  const { dir, store } = await freshStore();
  try {
    const bs = store.pool.blockSize;
    await store.prepare("base");
    await store.fs("base").writeFile("/big", bytes(4 * bs, 13));
    await store.commit("img", "base");
    await store.prepare("ctr", "img");
    await store.fs("ctr").writeFile("/own", bytes(2 * bs, 14));
    const img = store.blockUsage("img").device;
    const ctr = store.blockUsage("ctr").device;
    const shared: number[] = [];
    const mine: number[] = [];
    for (let b = 0; b < 64; b++) {
      const p = store.pool.lookup(ctr, b);
      if (p === undefined) continue;
      if (p === store.pool.lookup(img, b)) shared.push(b);
      else mine.push(b);
    }
    assert.equal(shared.length, 4);
    assert.equal(mine.length, 2);
    await store.pool.device(ctr).discard(shared[1] * bs, bs);
    await store.pool.device(ctr).discard(mine[1] * bs, bs);
    await store.sync();

    const problems = await store.check();
    assert.ok(problems.includes(`ctr: block ${shared[1]} holds file data but is not mapped`), problems.join("\n"));
    assert.ok(problems.includes(`ctr: block ${mine[1]} holds file data but is not mapped`), problems.join("\n"));
    const changes = await store.repair();
    assert.ok(changes.some((c) => /^ctr: inode \d+ \(\/own\): its data in device blocks that are not mapped is lost: dropped 16 page\(s\) of it, which read as zeros now$/.test(c)), changes.join("\n"));
    assert.ok(changes.includes(`ctr: copied 1 block(s) holding data of files from lower layers from the parent's device: ${shared[1]}`), changes.join("\n"));
    assert.deepEqual(await store.check(), []);
    assert.deepEqual(await read(store, "ctr", "/big"), bytes(4 * bs, 13));
    const own = await read(store, "ctr", "/own");
    const want = bytes(2 * bs, 14);
    want.fill(0, bs, 2 * bs);
    assert.deepEqual(own, want, "the lost block reads as zeros, the rest is intact");
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
