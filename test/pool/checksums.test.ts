/**
 * Checksummed metadata: one flipped byte in any metadata file — the pool root, the
 * previous root, a device record, a node segment, a layer's base, a layer's journal, an
 * image record — at each position class (first byte, in the checksum, in the body, last
 * byte) makes open fail with EIO naming the file (where open reads it) and check report
 * it, every time. And repair goes back one commit when a file only the current root
 * names is damaged.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { crc32c } from "../../src/common/crc32c.ts";
import { ImageStore } from "../../src/images/mod.ts";
import { LayerStore } from "../../src/layers/mod.ts";
import { checkPool, repairPool } from "../../src/pool/check.ts";
import { decodeMetaFile, encodeMetaFile, HEADER_SIZE } from "../../src/pool/metafile.ts";
import { namedFiles, type PoolRecord } from "../../src/pool/persist.ts";
import { Pool } from "../../src/pool/pool.ts";
import { withTmp } from "../helpers/tmp.ts";
import { thinstack } from "../cli/cli.ts";

const MiB = 2 ** 20;
const BS = 64 * 1024;
const demoImage = new URL("../../fixtures/demo-image", import.meta.url).pathname;

const rootOf = async (meta: string, name = "pool.cbor") => decodeMetaFile(await fs.readFile(path.join(meta, name)), name) as PoolRecord;

/** Damages `file`: flips the bits of `mask` in its byte `at` (from the end when negative). */
async function flip(file: string, at: number, mask: number): Promise<void> {
  const bytes = await fs.readFile(file);
  bytes[at < 0 ? bytes.length + at : at] ^= mask;
  await fs.writeFile(file, bytes);
}

/** A new layer store in `root` with one active layer "c" that holds `/f`, `versions` written and synced in turn. */
async function layerStore(root: string, ...versions: string[]): Promise<void> {
  const store = await LayerStore.open(root, { create: true, dataSize: 64 * MiB, baseSize: 16 * MiB });
  await store.prepare("c");
  for (const [i, v] of versions.entries()) {
    if (i > 0) await store.sync();
    await store.fs("c").writeFile("/f", v);
  }
  await store.close();
}

/** Runs `fn` on the pool in `dir`, open, and closes it whatever happens. */
async function withPool<T>(dir: string, fn: (pool: Pool) => Promise<T>): Promise<T> {
  const pool = await Pool.open(dir);
  try {
    return await fn(pool);
  } finally {
    await pool.close();
  }
}

/** Three-block pool with devices 1 and 2 of two blocks each, block 0 of device 1 written with ones. */
async function smallPool(dir: string): Promise<Pool> {
  const pool = await Pool.create(dir, { dataSize: 3 * BS });
  await pool.createThin(1, 2 * BS);
  await pool.createThin(2, 2 * BS);
  await pool.device(1).write(0, new Uint8Array(BS).fill(1));
  return pool;
}

describe("CRC-32C", () => {
  it("gives the standard check values and continues across pieces", () => {
    const enc = new TextEncoder();
    assert.equal(crc32c(enc.encode("123456789")), 0xe3069283);
    assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
    assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
    assert.equal(crc32c(new Uint8Array(0)), 0);
    const long = new Uint8Array(1000).map((_, i) => (i * 31) & 0xff);
    assert.equal(crc32c(long.subarray(300), crc32c(long.subarray(0, 300))), crc32c(long));
  });

  it("the file format: magic, checksum, CBOR; a damaged file is EIO naming it", () => {
    const bytes = encodeMetaFile({ a: 1, b: [1, 2, 3] });
    assert.deepEqual([...bytes.subarray(0, 4)], [0x54, 0x53, 0x4d, 0x46]);
    assert.deepEqual(decodeMetaFile(bytes, "/x/f.cbor"), { a: 1, b: [1, 2, 3] });
    for (let i = 0; i < bytes.length; i++) {
      const bad = bytes.slice();
      bad[i] ^= 0x01;
      assert.throws(() => decodeMetaFile(bad, "/x/f.cbor"), (e: { code?: string; message: string }) => e.code === "EIO" && e.message.includes("'/x/f.cbor'"), `byte ${i}`);
    }
    assert.throws(() => decodeMetaFile(bytes.subarray(0, HEADER_SIZE - 1), "/x/f.cbor"), /EIO/);
    assert.throws(() => decodeMetaFile(bytes.subarray(0, bytes.length - 1), "/x/f.cbor"), /EIO/);
    // A store of the format before checksums (bare CBOR) is refused, and said to be one.
    assert.throws(() => decodeMetaFile(bytes.subarray(HEADER_SIZE), "/x/f.cbor"), /earlier format/);
  });
});

/** The metadata files of a store that has every kind, by kind: the file of that kind the current root names. */
async function filesByKind(meta: string): Promise<Map<string, string>> {
  const live = namedFiles(await rootOf(meta));
  const kinds: [string, RegExp][] = [
    ["device record", /^dev-\d+\./], ["node segment", /^nodes\./], ["layer base", /^layer-\d+\.\d/],
    ["layer journal", /^layer-\d+-j\./], ["image record", /^record\./],
  ];
  const out = new Map<string, string>([["pool root", "pool.cbor"], ["previous root", "pool.prev.cbor"]]);
  const names = (await fs.readdir(meta)).sort();
  for (const [kind, re] of kinds) {
    const name = names.find((n) => re.test(n) && live.has(n));
    assert.ok(name, `the store has a ${kind} the current root names: ${names.join(" ")}`);
    out.set(kind, name);
  }
  return out;
}

describe("a flipped byte in any metadata file", () => {
  it("fails open with EIO naming the file, and check reports it, at every position class of every file kind", async () => {
    await withTmp(async (tmp) => {
      const dir = path.join(tmp, "store");
      const store = await ImageStore.open(dir, { create: true, dataSize: 256 * MiB, baseSize: 64 * MiB });
      try {
        await store.importImage(demoImage, { name: "demo" }); // layers with bases, and an image record
        const top = (await store.list()).filter((l) => l.kind === "committed").map((l) => l.name).pop()!;
        await store.prepare("c", top);
        await store.fs("c").writeFile("/a", "one");
        await store.sync();
        await store.fs("c").writeFile("/b", new Uint8Array(10_000).fill(3));
        await store.sync(); // journal files for c
      } finally {
        await store.close();
      }
      const meta = path.join(dir, "metadata");
      const kinds = await filesByKind(meta);
      assert.deepEqual((await checkPool(dir)).faults, []);
      let cases = 0;
      for (const [kind, name] of kinds) {
        const size = (await fs.stat(path.join(meta, name))).size;
        const positions: [string, number][] = [["first byte", 0], ["in the checksum", 5], ["in the body", HEADER_SIZE + Math.floor((size - HEADER_SIZE) / 2)], ["last byte", size - 1]];
        for (const [where, at] of positions) {
          const what = `${kind} '${name}', ${where} (byte ${at} of ${size})`;
          const copy = path.join(tmp, `copy-${cases++}`);
          await fs.cp(dir, copy, { recursive: true });
          try {
            const file = path.join(copy, "metadata", name);
            await flip(file, at, 0x20);
            const report = await checkPool(copy);
            assert.ok(report.faults.some((f) => f.includes(name)), `${what}: check reports it: ${JSON.stringify(report.faults)}`);
            if (kind === "previous root") {
              // Open does not need the previous root: it opens, and check still says.
              const s = await LayerStore.open(copy);
              await s.close();
            } else {
              await assert.rejects(LayerStore.open(copy), (e: { code?: string; message: string }) => {
                assert.equal(e.code, "EIO", `${what}: ${e.message}`);
                assert.ok(e.message.includes(file), `${what}: the error names the file: ${e.message}`);
                return true;
              });
            }
          } finally {
            await fs.rm(copy, { recursive: true, force: true });
          }
        }
      }
      assert.equal(cases, 7 * 4);
    });
  });

  it("`thinstack check` exits 1 naming the damaged file", async () => {
    await withTmp(async (tmp) => {
      const root = path.join(tmp, "store");
      await layerStore(root, "x");
      const meta = path.join(root, "metadata");
      const layer = [...namedFiles(await rootOf(meta))].find((n) => n.startsWith("layer-"))!;
      await flip(path.join(meta, layer), -1, 0xff);
      const r = await thinstack(["check"], { root });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`^fault: .*metadata file '[^']*${layer.replace(/\./g, "\\.")}' is damaged`, "m"));
    });
  });
});

describe("repair goes back one commit", () => {
  it("when a file only the current root names is damaged: the pool opens at the commit before, with its data", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 64 * BS });
      await pool.createThin(1, 8 * BS);
      await pool.device(1).write(0, new Uint8Array(BS).fill(1));
      await pool.commit(); // 1
      await pool.device(1).write(BS, new Uint8Array(BS).fill(2));
      await pool.commit(); // 2: a new segment and device file, only this root names them
      await pool.close(); // nothing changed since: no commit
      const meta = path.join(dir, "metadata");
      const current = await rootOf(meta);
      const previous = await rootOf(meta, "pool.prev.cbor");
      assert.equal(current.transactionId, 2);
      assert.equal(previous.transactionId, 1);
      const only = [...namedFiles(current)].filter((f) => !namedFiles(previous).has(f));
      assert.ok(only.some((f) => f.startsWith("nodes.")), `root 2 has a segment of its own: ${only}`);
      const seg = only.find((f) => f.startsWith("nodes."))!;
      await flip(path.join(meta, seg), HEADER_SIZE + 3, 0x10);
      await assert.rejects(Pool.open(dir), (e: { code?: string; message: string }) => e.code === "EIO" && e.message.includes(seg));
      const faults = (await checkPool(dir)).faults;
      assert.ok(faults.some((f) => f.includes(seg)), JSON.stringify(faults));

      const changes = await repairPool(dir);
      assert.match(changes[0], /^went back to the previous commit \(transaction 1\) from transaction 2: it lost '/);
      assert.equal(changes.length, 1, `the commit freed nothing the previous one maps: ${changes}`);
      assert.deepEqual((await checkPool(dir)).faults, []);
      await withPool(dir, async (again) => {
        assert.equal(again.status().transactionId, 1);
        assert.deepEqual(await again.device(1).read(0, 2 * BS), new Uint8Array(2 * BS).fill(1, 0, BS));
        await again.device(1).write(0, new Uint8Array(10).fill(9)); // and it works on
        await again.commit();
      });
      assert.equal(await withPool(dir, async (p) => p.status().transactionId), 2);
    });
  });

  it("when the root itself is damaged; and says which blocks of the previous commit later writes may have reused", async () => {
    await withTmp(async (tmp) => {
      const dir = path.join(tmp, "pool");
      const pool = await smallPool(dir);
      await pool.device(2).write(0, new Uint8Array(BS).fill(2));
      await pool.commit(); // 1: blocks 0 and 1 used
      await pool.device(1).discard(0, BS);
      await pool.commit(); // 2: freed device 1's block
      // Uses the only blocks there are: the one commit 2 freed is taken again.
      await pool.device(2).write(BS, new Uint8Array(BS).fill(3));
      await pool.device(2).write(0, new Uint8Array(BS).fill(4));
      assert.deepEqual(await pool.device(2).read(0, BS), new Uint8Array(BS).fill(4)); // the writes are in the file
      const crash = path.join(tmp, "crash");
      await fs.cp(dir, crash, { recursive: true }); // as a crash now leaves it
      await pool.close();
      const root = path.join(crash, "metadata", "pool.cbor");
      await flip(root, 0, 0xff);
      await assert.rejects(Pool.open(crash), (e: { code?: string; message: string }) => e.code === "EIO" && e.message.includes(root));
      const report = await checkPool(crash);
      assert.ok(report.faults[0].includes(root), JSON.stringify(report.faults));
      assert.match(report.faults[1], /repair goes back to the previous commit \(transaction 1\)/);
      const changes = await repairPool(crash);
      assert.match(changes[0], /^went back to the previous commit \(transaction 1\) from the current root: /);
      assert.match(changes[1], /the blocks the abandoned commit freed are unknown/);
      await withPool(crash, async (again) => {
        assert.equal(again.status().transactionId, 1);
        assert.deepEqual(again.devices().map((d) => d.id), [1, 2]);
      });
    });
  });

  it("with the root readable, names the blocks the abandoned commit freed", async () => {
    await withTmp(async (tmp) => {
      const dir = path.join(tmp, "pool");
      const pool = await smallPool(dir);
      await pool.commit(); // 1
      await pool.device(1).discard(0, BS);
      await pool.device(2).write(0, new Uint8Array(BS).fill(2));
      await pool.commit(); // 2: frees device 1's block, maps a new one for device 2
      await pool.device(2).write(BS, new Uint8Array(BS).fill(3));
      await pool.device(2).write(0, new Uint8Array(BS).fill(4)); // copy-on-write: takes the freed block
      assert.deepEqual(await pool.device(2).read(0, BS), new Uint8Array(BS).fill(4));
      const crash = path.join(tmp, "crash");
      await fs.cp(dir, crash, { recursive: true });
      await pool.close();
      const meta = path.join(crash, "metadata");
      const seg = [...namedFiles(await rootOf(meta))].find((f) => f.startsWith("nodes.2."))!;
      await flip(path.join(meta, seg), -1, 1);
      const changes = await repairPool(crash);
      assert.match(changes[0], /^went back to the previous commit \(transaction 1\) from transaction 2/);
      assert.deepEqual(changes.slice(1), ["device 1: 1 block(s) (virtual 0) were freed by the abandoned commit; writes after it may have reused them"]);
      await withPool(crash, async (again) => {
        assert.equal(again.status().transactionId, 1);
        // What the report warns of: the block holds a later write now.
        assert.deepEqual(await again.device(1).read(0, BS), new Uint8Array(BS).fill(4));
      });
    });
  });

  it("`thinstack repair` takes a layer store back one commit when a layer's journal is damaged", async () => {
    await withTmp(async (tmp) => {
      const root = path.join(tmp, "store");
      await layerStore(root, "first", "second");
      const meta = path.join(root, "metadata");
      const prev = namedFiles(await rootOf(meta, "pool.prev.cbor"));
      const journal = [...namedFiles(await rootOf(meta))].find((n) => /^layer-\d+-j\./.test(n) && !prev.has(n));
      assert.ok(journal, "the last commit has a journal file of its own");
      await flip(path.join(meta, journal), HEADER_SIZE, 0x40);
      assert.equal((await thinstack(["check"], { root })).code, 1);
      const r = await thinstack(["repair"], { root });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^went back to the previous commit/m);
      const again = await LayerStore.open(root);
      try {
        assert.equal(await again.fs("c").readFile("/f", "utf8"), "first");
        assert.deepEqual((await again.fsck()).problems, []);
      } finally {
        await again.close();
      }
      assert.match((await thinstack(["check"], { root })).stdout, /: no faults\n$/);
    });
  });
});
