/**
 * Reads into the caller's buffers (`device.readInto`), which run on read buffers the pool
 * reuses, and `pool.drain()`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import { Pool } from "../../src/pool/pool.ts";
import { ReadBuffers } from "../../src/pool/readbuffers.ts";
import { withTmp } from "../helpers/tmp.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const BS = 64 * KiB;
const SIZE = 8 * MiB;

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (seed * 31 + i * 7 + (i >> 12)) & 0xff;
  return out;
}

/** Equal bytes; a difference is reported by its first offset (a diff of MiBs would not help). */
function same(got: Uint8Array, want: Uint8Array, what = "bytes"): void {
  assert.equal(got.byteLength, want.byteLength, `${what}: length`);
  const i = got.findIndex((b, k) => b !== want[k]);
  assert.ok(i < 0, `${what}: first difference at byte ${i} (got ${got[i]}, want ${want[i]})`);
}

async function withPool<T>(fn: (pool: Pool, dir: string) => Promise<T>, options: { readahead?: number } = {}): Promise<T> {
  return await withTmp(async (dir) => {
    await (await Pool.create(dir, { dataSize: 32 * MiB })).close();
    const pool = await Pool.open(dir, options);
    try {
      return await fn(pool, dir);
    } finally {
      await pool.close();
    }
  });
}

/**
 * Device 1: the first half written whole; in the second half only the first block of
 * each MiB, the rest never written (reads as zeros). Returns what it holds.
 */
async function holey(pool: Pool): Promise<Uint8Array> {
  await pool.createThin(1, SIZE);
  const want = new Uint8Array(SIZE);
  for (let at = 0; at < SIZE; at += MiB) {
    const b = bytes(at < SIZE / 2 ? MiB : BS, at / MiB + 1);
    await pool.device(1).write(at, b);
    want.set(b, at);
  }
  return want;
}

/** Reads the whole device with readInto in chunks of `chunk`, `depth` at a time, each into a stale buffer of its lane. */
async function readAllInto(pool: Pool, chunk: number, depth = 1): Promise<Uint8Array> {
  const out = new Uint8Array(SIZE);
  const lanes = Array.from({ length: depth }, () => new Uint8Array(chunk));
  let next = 0;
  await Promise.all(lanes.map(async (buf) => {
    while (next < SIZE) {
      const at = next;
      next += chunk;
      const target = buf.subarray(0, Math.min(chunk, SIZE - at));
      target.fill(0xa5); // stale bytes: every one must be overwritten
      await pool.device(1).readInto(at, target);
      out.set(target, at);
    }
  }));
  return out;
}

describe("readInto", () => {
  it("fills the caller's buffer as read would, holes with zeros, over reused read buffers, in any chunk size and depth", async () => {
    await withPool(async (pool) => {
      const want = await holey(pool);
      // The first pass leaves read buffers full of data behind; later passes reuse them for windows with holes.
      for (const [chunk, depth] of [[MiB, 1], [MiB, 1], [64 * KiB, 1], [100_000, 2], [3 * MiB, 1], [MiB, 4], [4 * KiB, 3]]) {
        same(await readAllInto(pool, chunk, depth), want, `chunks of ${chunk}, ${depth} in flight`);
      }
    });
  });

  it("reads exactly with read-ahead off", async () => {
    await withPool(async (pool) => {
      const want = await holey(pool);
      same(await readAllInto(pool, MiB), want);
      same(await readAllInto(pool, 256 * KiB, 2), want);
    }, { readahead: 0 });
  });

  it("never reuses a buffer a read handed over, and never hands over one it reuses", async () => {
    await withPool(async (pool) => {
      const want = await holey(pool);
      const dev = pool.device(1);
      const kept: Uint8Array[] = [];
      const target = new Uint8Array(MiB);
      // Alternate: whole windows go to read()'s callers, parts and readInto leave buffers for reuse.
      for (let pass = 0; pass < 3; pass++) {
        for (let at = 0; at < SIZE; at += MiB) {
          if ((at / MiB + pass) % 2) kept.push(await dev.read(at, MiB));
          else {
            await dev.readInto(at, target.subarray(0, MiB / 2));
            await dev.readInto(at + MiB / 2, target.subarray(MiB / 2));
            same(target, want.subarray(at, at + MiB), `readInto at ${at}`);
          }
        }
      }
      let k = 0;
      for (let pass = 0; pass < 3; pass++) {
        for (let at = 0; at < SIZE; at += MiB) if ((at / MiB + pass) % 2) same(kept[k++], want.subarray(at, at + MiB), `kept read at ${at}, pass ${pass}`);
      }
    });
  });

  it("sees writes made after read-ahead fetched the range", async () => {
    await withPool(async (pool) => {
      const want = await holey(pool);
      const dev = pool.device(1);
      const t = new Uint8Array(MiB);
      await dev.readInto(0, t);
      await dev.readInto(MiB, t); // sequential: the next MiBs are being fetched ahead
      await dev.write(2 * MiB + 5, bytes(1000, 77));
      want.set(bytes(1000, 77), 2 * MiB + 5);
      await dev.readInto(2 * MiB, t);
      same(t, want.subarray(2 * MiB, 3 * MiB));
      await dev.discard(3 * MiB, MiB);
      await dev.readInto(3 * MiB, t);
      same(t, new Uint8Array(MiB));
    });
  });

  it("refuses a range outside the device with EINVAL", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, MiB);
      await assert.rejects(pool.device(1).readInto(MiB - 10, new Uint8Array(11)), { code: "EINVAL" });
      await assert.rejects(pool.device(1).readInto(-1, new Uint8Array(1)), { code: "EINVAL" });
      const empty = new Uint8Array(0);
      await pool.device(1).readInto(MiB, empty);
    });
  });
});

describe("drain", () => {
  it("returns once queued writes are in the data file", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 4 * MiB);
      const want = bytes(4 * MiB, 5);
      await pool.device(1).write(0, want); // returns with its tasks queued (write-behind)
      await pool.drain();
      const fh = await fs.open(pool.dataFile, "r");
      try {
        for (let vb = 0; vb < 4 * MiB / BS; vb++) {
          const block = pool.lookup(1, vb)!;
          const got = new Uint8Array(BS);
          await fh.read(got, 0, BS, block * BS);
          same(got, want.subarray(vb * BS, (vb + 1) * BS), `block ${vb}`);
        }
      } finally {
        await fh.close();
      }
    });
  });

  it("fails as the next operation would when a queued write failed", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 16 * MiB });
      await pool.createThin(1, MiB);
      await pool.close();
      const again = await Pool.open(dir);
      const { renameSync } = await import("node:fs");
      // The workers open the data file by path at this opening's first task: hide it.
      renameSync(again.dataFile, `${again.dataFile}.away`);
      try {
        await again.device(1).write(0, bytes(BS, 2));
        await assert.rejects(again.drain(), { code: "ENOENT" });
      } finally {
        renameSync(`${again.dataFile}.away`, again.dataFile);
        await again.close().catch(() => {});
      }
    });
  });
});

describe("ReadBuffers", () => {
  it("keeps the sizes given back most recently when full, so odd sizes do not crowd out a stream's", () => {
    const rb = new ReadBuffers(4 * MiB);
    for (let i = 0; i < 40; i++) rb.give(new ArrayBuffer(300_000 + i * 1000)); // tails of files
    for (let i = 0; i < 3; i++) rb.give(new ArrayBuffer(MiB));
    assert.ok(rb.bytes <= 4 * MiB, `${rb.bytes} bytes kept`);
    for (let i = 0; i < 3; i++) assert.equal(rb.take(MiB)?.byteLength, MiB, `1 MiB buffer ${i}`);
    assert.equal(rb.take(MiB), undefined);
    rb.give(new ArrayBuffer(4 * KiB)); // too small to keep
    assert.equal(rb.take(4 * KiB), undefined);
    rb.give(new ArrayBuffer(0)); // a detached buffer reads as empty: ignored
  });

  it("rounds odd read lengths up to shared sizes", () => {
    assert.deepEqual([1, 64 * KiB, 64 * KiB + 1, 300_000, MiB, MiB + 1].map(ReadBuffers.sizeFor), [64 * KiB, 64 * KiB, 128 * KiB, 512 * KiB, MiB, MiB + 1]);
  });
});
