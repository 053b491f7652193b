/**
 * Reads into the shared read arena (`device.lease`), which a server writes on without
 * moving a buffer between threads, and arrays given back for reuse (`device.recycle`).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Pool } from "../../src/pool/pool.ts";
import type { ReadLease } from "../../src/pool/types.ts";
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

/** Equal bytes; a difference is reported by its first offset. */
function same(got: Uint8Array, want: Uint8Array, what = "bytes"): void {
  assert.equal(got.byteLength, want.byteLength, `${what}: length`);
  const i = got.findIndex((b, k) => b !== want[k]);
  assert.ok(i < 0, `${what}: first difference at byte ${i} (got ${got[i]}, want ${want[i]})`);
}

async function withPool<T>(fn: (pool: Pool) => Promise<T>): Promise<T> {
  return await withTmp(async (dir) => {
    await (await Pool.create(dir, { dataSize: 32 * MiB })).close();
    const pool = await Pool.open(dir);
    try {
      return await fn(pool);
    } finally {
      await pool.close();
    }
  });
}

/** Device 1: the first half written whole; in the second half only the first block of each MiB (the rest reads as zeros). */
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

describe("device.lease", () => {
  it("reads mapped bytes, zeros for unmapped blocks, at any offset and length up to 1 MiB; slots are reused", async () => {
    await withPool(async (pool) => {
      const want = await holey(pool);
      const dev = pool.device(1);
      // Twice the arena's 32 slots, each released before the next: stale bytes of an earlier
      // lease must never show through (the holes of the second half).
      for (let round = 0; round < 2; round++) {
        for (const [at, len] of [[0, MiB], [123, 4 * KiB + 5], [SIZE / 2 - 10, 100], [SIZE / 2 + 7, MiB], [SIZE - MiB, MiB], [5 * MiB + BS, BS]]) {
          const lease = await dev.lease(at, len);
          assert.ok(lease, `a lease of ${len} bytes at ${at}`);
          same(lease.bytes, want.subarray(at, at + len), `lease at ${at}+${len}`);
          lease.release();
          lease.release(); // idempotent
        }
      }
    });
  });

  it("is undefined past 1 MiB or when every slot is held, and reads again once one is released", async () => {
    await withPool(async (pool) => {
      const want = await holey(pool);
      const dev = pool.device(1);
      assert.equal(await dev.lease(0, MiB + 1), undefined);
      const held: ReadLease[] = [];
      for (;;) {
        const l = await dev.lease(0, 4 * KiB);
        if (!l) break;
        held.push(l);
        assert.ok(held.length <= 1024, "the arena is bounded");
      }
      assert.ok(held.length >= 1, "at least one slot");
      for (const l of held) same(l.bytes, want.subarray(0, 4 * KiB), "every held lease keeps its bytes");
      held.pop()!.release();
      const again = await dev.lease(MiB, 4 * KiB);
      assert.ok(again, "a released slot serves the next lease");
      same(again.bytes, want.subarray(MiB, MiB + 4 * KiB));
      again.release();
      for (const l of held) l.release();
    });
  });

  it("sees the writes queued before it, and fails with EINVAL outside the device", async () => {
    await withPool(async (pool) => {
      await holey(pool);
      const dev = pool.device(1);
      const fresh = bytes(MiB, 99);
      const write = dev.write(2 * MiB, fresh); // write-behind: not awaited before the lease
      const lease = await dev.lease(2 * MiB, MiB);
      await write;
      same(lease!.bytes, fresh, "the lease after a write");
      lease!.release();
      await assert.rejects(dev.lease(SIZE - 10, 20), { code: "EINVAL" });
    });
  });
});

describe("device.recycle", () => {
  it("a recycled array's buffer serves later reads, which return the right bytes", async () => {
    await withPool(async (pool) => {
      const want = await holey(pool);
      const dev = pool.device(1);
      for (let pass = 0; pass < 3; pass++) {
        for (let at = 0; at < SIZE; at += MiB) {
          const got = await dev.read(at, MiB);
          same(got, want.subarray(at, at + MiB), `pass ${pass}, read at ${at}`);
          dev.recycle(got);
        }
      }
      // Arrays of other origins are ignored.
      dev.recycle(new Uint8Array(MiB).subarray(1));
      dev.recycle(new Uint8Array(new SharedArrayBuffer(MiB)));
      same(await dev.read(0, MiB), want.subarray(0, MiB));
    });
  });
});
