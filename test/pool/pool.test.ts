import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Pool } from "../../src/pool/pool.ts";
import { withTmp } from "../helpers/tmp.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const BS = 64 * KiB;

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (seed * 31 + i * 7) & 0xff;
  return out;
}

async function withPool<T>(fn: (pool: Pool, dir: string) => Promise<T>, dataSize = 16 * MiB): Promise<T> {
  return await withTmp(async (dir) => {
    const pool = await Pool.create(dir, { dataSize });
    try {
      return await fn(pool, dir);
    } finally {
      await pool.close();
    }
  });
}

describe("pool creation", () => {
  it("makes a sparse data file of the requested size", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 1024 * MiB });
      const { statSync } = await import("node:fs");
      const st = statSync(pool.dataFile);
      assert.equal(st.size, 1024 * MiB);
      assert.ok(st.blocks * 512 < MiB, `data file should be sparse, has ${st.blocks * 512} bytes allocated`);
      assert.deepEqual(pool.status().dataBlocks, { used: 0, total: 16384 });
      await pool.close();
    });
  });

  for (const bad of [0, 4096, 64 * KiB + 512, 96 * KiB, 2 * 1024 * MiB, -65536, 1.5]) {
    it(`refuses block size ${bad} with EINVAL`, async () => {
      await withTmp(async (dir) => {
        await assert.rejects(Pool.create(dir, { dataSize: 64 * MiB, blockSize: bad }), { code: "EINVAL" });
      });
    });
  }

  it("accepts multiples of 64 KiB up to 1 GiB", async () => {
    for (const blockSize of [64 * KiB, 128 * KiB, 512 * KiB, 1024 * MiB]) {
      await withTmp(async (dir) => {
        const pool = await Pool.create(dir, { dataSize: 2 * 1024 * MiB, blockSize });
        assert.equal(pool.status().blockSize, blockSize);
        await pool.close();
      });
    }
  });

  it("refuses to create over an existing pool and to open a missing one", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 4 * MiB });
      await pool.close();
      await assert.rejects(Pool.create(dir, { dataSize: 4 * MiB }), { code: "EEXIST" });
      await assert.rejects(Pool.open(dir + "/nope"), { code: "ENOENT" });
    });
  });
});

describe("thin devices", () => {
  it("reads zeros where nothing was written, at any offset and length", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 10 * MiB);
      const got = await pool.device(1).read(12345, 200_000);
      assert.equal(got.byteLength, 200_000);
      assert.ok(got.every((b) => b === 0));
      assert.equal(pool.status().dataBlocks.used, 0);
    });
  });

  it("takes exactly one block for a 56 KiB write (the seed's allocate-on-demand)", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 10 * MiB);
      await pool.device(1).write(0, bytes(56 * KiB, 1));
      assert.equal(pool.status().dataBlocks.used, 1);
      await pool.device(1).write(BS, bytes(3 * BS + 1, 2));
      assert.equal(pool.status().dataBlocks.used, 1 + 4);
    });
  });

  it("changes only the bytes a partial-block write covers", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, MiB);
      const dev = pool.device(1);
      const base = bytes(2 * BS, 3);
      await dev.write(0, base);
      await pool.commit(); // committed blocks are redirected on write: the copy must keep the rest
      await dev.write(BS - 10, new Uint8Array(20).fill(0xee));
      const expect = base.slice();
      expect.fill(0xee, BS - 10, BS + 10);
      assert.deepEqual(await dev.read(0, 2 * BS), expect);
      assert.equal(pool.status().dataBlocks.used, 2);
    });
  });

  it("gives EEXIST for a live id, ENOENT for an unknown one, EINVAL for bad ids and ranges", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, MiB);
      await assert.rejects(pool.createThin(1, MiB), { code: "EEXIST" });
      await assert.rejects(pool.createSnapshot(1, 2), { code: "ENOENT" });
      await assert.rejects(pool.createSnapshot(2, 9), { code: "ENOENT" });
      await assert.rejects(pool.deleteDevice(9), { code: "ENOENT" });
      assert.throws(() => pool.device(9), { code: "ENOENT" });
      for (const id of [-1, 1 << 24, 1.5, NaN]) await assert.rejects(pool.createThin(id, MiB), { code: "EINVAL" });
      await assert.rejects(pool.createThin(3, 0), { code: "EINVAL" });
      const dev = pool.device(1);
      await assert.rejects(dev.read(MiB - 1, 2), { code: "EINVAL" });
      await assert.rejects(dev.write(-1, new Uint8Array(1)), { code: "EINVAL" });
      await assert.rejects(dev.discard(0, MiB + 1), { code: "EINVAL" });
      assert.equal(pool.status().dataBlocks.used, 0);
      assert.deepEqual(pool.devices().map((d) => d.id), [1]);
      await pool.deleteDevice(1);
      await assert.rejects(dev.read(0, 1), { code: "ENOENT" });
    });
  });

  it("errors carry Node's fields and say what to do", async () => {
    await withPool(async (pool) => {
      const err = await pool.createSnapshot(5, 4).catch((e) => e);
      assert.equal(err.code, "ENOENT");
      assert.equal(err.syscall, "create_snap");
      assert.match(err.message, /^ENOENT: no such file or directory, create_snap 'device 4'/);
    });
  });
});

describe("snapshots", () => {
  it("follow the seed's read example: a container block points at its image's pool block", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 128 * MiB); // the image layer
      const image = pool.device(1);
      await image.write(0x44f * BS, bytes(BS, 9));
      await pool.createSnapshot(2, 1); // the container
      const pb = pool.lookup(1, 0x44f);
      assert.notEqual(pb, undefined);
      assert.equal(pool.lookup(2, 0x44f), pb, "the container's block 0x44f is the image's pool block");
      assert.deepEqual(await pool.device(2).read(0x44f * BS, BS), bytes(BS, 9));
      assert.equal(pool.status().dataBlocks.used, 1);
    });
  });

  it("copy only the written block, on either side, and never show one side's write to the other", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, MiB);
      const origin = pool.device(1);
      await origin.write(0, bytes(4 * BS, 1));
      await pool.createSnapshot(2, 1);
      const snap = pool.device(2);
      assert.equal(pool.status().dataBlocks.used, 4);
      await snap.write(BS + 100, new Uint8Array([1, 2, 3]));
      assert.equal(pool.status().dataBlocks.used, 5);
      await origin.write(2 * BS, new Uint8Array([9]));
      assert.equal(pool.status().dataBlocks.used, 6);
      const o = bytes(4 * BS, 1);
      const s = o.slice();
      s.set([1, 2, 3], BS + 100);
      o[2 * BS] = 9;
      assert.deepEqual(await origin.read(0, 4 * BS), o);
      assert.deepEqual(await snap.read(0, 4 * BS), s);
      assert.equal(pool.lookup(1, 0), pool.lookup(2, 0));
      assert.notEqual(pool.lookup(1, 1), pool.lookup(2, 1));
    });
  });

  it("nest 200 deep; each level sees its own writes and inherits the rest", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 256 * BS);
      await pool.device(1).write(0, bytes(256 * BS, 0).fill(0xaa));
      for (let d = 2; d <= 201; d++) {
        await pool.createSnapshot(d, d - 1);
        await pool.device(d).write(d * 1000, new Uint8Array([d & 0xff]));
      }
      assert.equal(pool.status().devices, 201);
      const deepest = await pool.device(201).read(0, 256 * BS);
      for (let d = 2; d <= 201; d++) assert.equal(deepest[d * 1000], d & 0xff, `level ${d}'s write is inherited`);
      const mid = await pool.device(100).read(0, 256 * BS);
      assert.equal(mid[101 * 1000], 0xaa, "a lower level never sees a higher level's write");
      assert.equal(mid[100 * 1000], 100);
      await pool.commit();
      await pool.close();
      const again = await Pool.open(pool.dir);
      assert.deepEqual(await again.device(201).read(0, 256 * BS), deepest);
      await again.close();
    }, 64 * MiB);
  });

  it("cost the same whatever the origin holds: no mapping is copied", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 64 * MiB);
      await pool.device(1).write(0, bytes(32 * MiB, 4));
      const before = pool.status();
      await pool.createSnapshot(2, 1);
      assert.equal(pool.status().dataBlocks.used, before.dataBlocks.used);
      await pool.commit();
      // The commit after a snapshot writes one small device file, no nodes.
      const after = pool.status();
      assert.ok(after.metadataBytes.used - before.metadataBytes.used < 4096, `metadata grew by ${after.metadataBytes.used - before.metadataBytes.used}`);
    }, 64 * MiB);
  });
});

describe("block freeing", () => {
  it("returns discarded and deleted blocks that nothing else sees, and keeps shared ones", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, MiB);
      const dev = pool.device(1);
      await dev.write(0, bytes(8 * BS, 1));
      await dev.discard(2 * BS, 3 * BS);
      assert.equal(pool.status().dataBlocks.used, 5);
      assert.deepEqual(await dev.read(2 * BS, 3 * BS), new Uint8Array(3 * BS));
      await pool.createSnapshot(2, 1);
      await dev.discard(0, MiB);
      assert.equal(pool.status().dataBlocks.used, 5, "the snapshot still sees them");
      await pool.deleteDevice(2);
      assert.equal(pool.status().dataBlocks.used, 0);
      await pool.deleteDevice(1);
      assert.equal(pool.status().dataBlocks.used, 0);
    });
  });

  it("zeroes a partially discarded block without freeing it", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, MiB);
      const dev = pool.device(1);
      await dev.write(0, bytes(BS, 5));
      await dev.discard(100, 1000);
      const expect = bytes(BS, 5);
      expect.fill(0, 100, 1100);
      assert.deepEqual(await dev.read(0, BS), expect);
      assert.equal(pool.status().dataBlocks.used, 1);
    });
  });

  it("write then discard on a device without snapshots returns usage to where it was", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 4 * MiB);
      await pool.device(1).write(0, bytes(MiB, 1));
      const before = pool.status().dataBlocks.used;
      await pool.device(1).write(MiB + 5, bytes(2 * MiB, 2));
      await pool.device(1).discard(MiB, 3 * MiB);
      assert.equal(pool.status().dataBlocks.used, before);
    });
  });

  it("never hands out stale data: a reused block reads as zeros where its new owner did not write", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, MiB);
      await pool.device(1).write(0, new Uint8Array(MiB).fill(0x5a));
      await pool.commit();
      await pool.deleteDevice(1);
      await pool.commit(); // the freed blocks become allocatable
      await pool.createThin(2, MiB);
      const dev = pool.device(2);
      for (let i = 0; i < 16; i++) await dev.write(i * BS + 1000, new Uint8Array([1]));
      const got = await dev.read(0, MiB);
      for (let i = 0; i < MiB; i++) {
        if (got[i] !== (i % BS === 1000 ? 1 : 0)) assert.fail(`byte ${i} reads ${got[i]}`);
      }
    });
  });
});

describe("space", () => {
  it("fails a write that needs a block with ENOSPC, changes nothing, and recovers after a discard", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 4 * MiB);
      const dev = pool.device(1);
      await dev.write(0, bytes(MiB, 7)); // the whole pool: 16 blocks
      assert.equal(pool.status().dataBlocks.used, 16);
      await pool.commit();
      const err = await dev.write(MiB, new Uint8Array(10)).catch((e) => e);
      assert.equal(err.code, "ENOSPC");
      assert.match(err.message, /discard or delete devices, or resize the pool/);
      // A write into a committed block needs a new block too (redirect-on-write): refused, nothing changes.
      await assert.rejects(dev.write(5, new Uint8Array([1])), { code: "ENOSPC" });
      assert.deepEqual(await dev.read(0, MiB), bytes(MiB, 7));
      await dev.discard(0, 2 * BS);
      await dev.write(MiB, new Uint8Array(10).fill(3));
      assert.deepEqual(await dev.read(MiB, 10), new Uint8Array(10).fill(3));
      assert.equal(pool.status().dataBlocks.used, 15);
    }, MiB);
  });

  it("grows, and refuses to shrink below a block in use", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 4 * MiB);
      await pool.device(1).write(0, bytes(MiB, 1));
      await pool.resize(2 * MiB);
      assert.equal(pool.status().dataBlocks.total, 32);
      await pool.device(1).write(MiB, bytes(MiB, 2));
      await assert.rejects(pool.resize(MiB), { code: "ENOSPC" });
      assert.equal(pool.status().dataBlocks.total, 32);
    }, MiB);
  });
});

describe("transactions", () => {
  it("count commits, and reopen at the last one", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 8 * MiB });
      assert.equal(pool.status().transactionId, 0);
      await pool.createThin(7, MiB);
      await pool.device(7).write(3, new Uint8Array([1, 2, 3]));
      await pool.commit();
      await pool.commit();
      assert.equal(pool.status().transactionId, 2);
      await pool.close();
      const again = await Pool.open(dir);
      assert.equal(again.status().transactionId, 2);
      assert.deepEqual(await again.device(7).read(3, 3), new Uint8Array([1, 2, 3]));
      assert.deepEqual(again.status().dataBlocks, { used: 1, total: 128 });
      await again.close();
    });
  });

  it("does not reuse a block freed in the open transaction until it commits", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, MiB);
      await pool.device(1).write(0, bytes(BS, 1));
      await pool.commit();
      const first = pool.lookup(1, 0)!;
      await pool.device(1).discard(0, BS);
      assert.equal(pool.status().pendingFreeBlocks, 1);
      await pool.device(1).write(0, bytes(BS, 2));
      assert.notEqual(pool.lookup(1, 0), first, "the freed block is still the committed state's");
      await pool.commit();
      assert.equal(pool.status().pendingFreeBlocks, 0);
    });
  });

  it("after a close without a commit keeps what close committed; closed pools refuse work", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 8 * MiB });
      await pool.createThin(1, MiB);
      await pool.close();
      await pool.close();
      await assert.rejects(pool.createThin(2, MiB), { code: "EBADF" });
      const again = await Pool.open(dir);
      assert.deepEqual(again.devices(), [{ id: 1, size: MiB }]);
      await again.close();
    });
  });

  it("keeps metadata in proportion to what changed: one block written costs one leaf", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 1024 * MiB);
      await pool.device(1).write(0, bytes(8 * MiB, 1));
      await pool.commit();
      const before = pool.status().metadataBytes.used;
      await pool.device(1).write(900 * MiB, new Uint8Array([1]));
      await pool.commit();
      const grown = pool.status().metadataBytes.used - before;
      assert.ok(grown < 2048, `one new block grew the metadata by ${grown} bytes`);
    }, 32 * MiB);
  });
});

describe("sequential reads (read-ahead)", () => {
  const SIZE = 8 * MiB;
  async function readAll(pool: Pool, id: number, chunk: number): Promise<Uint8Array> {
    const out = new Uint8Array(SIZE);
    for (let at = 0; at < SIZE; at += chunk) out.set(await pool.device(id).read(at, Math.min(chunk, SIZE - at)), at);
    return out;
  }

  it("take a settable bound: 0 turns read-ahead off (reads stay exact), a bad bound is EINVAL", async () => {
    await withTmp(async (dir) => {
      await (await Pool.create(dir, { dataSize: 16 * MiB })).close();
      await assert.rejects(Pool.open(dir, { readahead: -1 }), { code: "EINVAL" });
      await assert.rejects(Pool.open(dir, { readahead: 1.5 }), { code: "EINVAL" });
      const pool = await Pool.open(dir, { readahead: 0 });
      try {
        await pool.createThin(1, SIZE);
        const want = bytes(SIZE, 3);
        await pool.device(1).write(0, want);
        assert.deepEqual(await readAll(pool, 1, 256 * 1024), want);
      } finally {
        await pool.close();
      }
    });
  });

  it("read whole devices in chunks of any size, holes included", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, SIZE);
      const want = new Uint8Array(SIZE);
      // Data with holes: every third MiB is left unwritten.
      for (let at = 0; at < SIZE; at += MiB) {
        if ((at / MiB) % 3 === 2) continue;
        const b = bytes(MiB, at / MiB);
        await pool.device(1).write(at, b);
        want.set(b, at);
      }
      for (const chunk of [MiB, 64 * KiB, 100_000, 3 * MiB, 4 * KiB]) {
        assert.deepEqual(await readAll(pool, 1, chunk), want, `chunks of ${chunk}`);
      }
    }, 32 * MiB);
  });

  it("never return bytes fetched ahead before a write, a discard or a re-created device", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, SIZE);
      await pool.device(1).write(0, bytes(SIZE, 1));
      const dev = pool.device(1);
      const first = await dev.read(0, MiB);
      assert.deepEqual(first, bytes(SIZE, 1).subarray(0, MiB));
      await dev.read(MiB, MiB); // sequential: the next MiBs are being fetched ahead
      await dev.write(2 * MiB + 5, bytes(1000, 2));
      const third = await dev.read(2 * MiB, MiB);
      assert.deepEqual(third.subarray(5, 1005), bytes(1000, 2));
      await dev.discard(3 * MiB, MiB);
      assert.deepEqual(await dev.read(3 * MiB, MiB), new Uint8Array(MiB));
      // The id reused for a different device in the middle of the stream.
      await pool.deleteDevice(1);
      await pool.createThin(1, SIZE);
      await pool.device(1).write(4 * MiB, bytes(MiB, 9));
      assert.deepEqual(await pool.device(1).read(4 * MiB, MiB), bytes(MiB, 9));
      assert.deepEqual(await pool.device(1).read(5 * MiB, MiB), new Uint8Array(MiB));
    }, 32 * MiB);
  });

  it("of an origin see nothing of a snapshot's writes, and the other way round", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, SIZE);
      await pool.device(1).write(0, bytes(SIZE, 3));
      await pool.createSnapshot(2, 1);
      await pool.device(1).read(0, MiB);
      await pool.device(2).read(0, MiB);
      await pool.device(1).read(MiB, MiB);
      await pool.device(2).read(MiB, MiB);
      await pool.device(2).write(2 * MiB, bytes(MiB, 4));
      await pool.device(1).write(3 * MiB, bytes(MiB, 5));
      assert.deepEqual(await pool.device(1).read(2 * MiB, MiB), bytes(SIZE, 3).subarray(2 * MiB, 3 * MiB));
      assert.deepEqual(await pool.device(2).read(2 * MiB, MiB), bytes(MiB, 4));
      assert.deepEqual(await pool.device(1).read(3 * MiB, MiB), bytes(MiB, 5));
      assert.deepEqual(await pool.device(2).read(3 * MiB, MiB), bytes(SIZE, 3).subarray(3 * MiB, 4 * MiB));
    }, 32 * MiB);
  });
});

describe("write-behind", () => {
  it("lets the caller reuse its buffer once write returns, and keeps overlapping writes in call order", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 4 * MiB);
      const dev = pool.device(1);
      const want = new Uint8Array(4 * MiB);
      const buf = new Uint8Array(MiB);
      for (let i = 0; i < 4; i++) {
        buf.set(bytes(MiB, i));
        await dev.write(i * MiB, buf); // buf is overwritten at once by the next round
        want.set(bytes(MiB, i), i * MiB);
      }
      // Overlapping partial writes of the same blocks, none awaited before the next starts.
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 200; i++) {
        const at = (i * 7919) % (2 * BS) + BS - 300;
        const b = bytes(600 + (i % 5) * 1000, 100 + i);
        writes.push(dev.write(at, b));
        want.set(b, at);
      }
      await Promise.all(writes);
      assert.deepEqual(await dev.read(0, 4 * MiB), want);
      await pool.commit();
      assert.deepEqual(await dev.read(0, 4 * MiB), want);
    });
  });

  it("copies a block for a snapshot's write only after the origin's queued writes to it", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, MiB);
      const origin = pool.device(1);
      // The write returns with its task queued; the snapshot and the partial write (a copy
      // of the origin's block) follow before that task is likely done.
      await origin.write(0, bytes(MiB, 7));
      await pool.createSnapshot(2, 1);
      await pool.device(2).write(BS + 10, bytes(100, 8));
      const want = bytes(MiB, 7);
      want.set(bytes(100, 8), BS + 10);
      assert.deepEqual(await pool.device(2).read(0, MiB), want);
      assert.deepEqual(await origin.read(0, MiB), bytes(MiB, 7));
    });
  });

  it("fails the next operation, the commit and close when a queued write fails, and reopens at the last commit", async () => {
    await withTmp(async (dir) => {
      let pool = await Pool.create(dir, { dataSize: 16 * MiB });
      await pool.createThin(1, MiB);
      await pool.device(1).write(0, bytes(BS, 1));
      await pool.close();
      pool = await Pool.open(dir);
      const { renameSync } = await import("node:fs");
      // The workers open the data file by path at this opening's first task: hide it.
      renameSync(pool.dataFile, `${pool.dataFile}.away`);
      try {
        await pool.device(1).write(0, bytes(BS, 2)); // queued: returns before it fails
        await assert.rejects(pool.commit(), (e: NodeJS.ErrnoException) => {
          assert.equal(e.code, "ENOENT");
          assert.match(e.message, /failed after it returned .*close the pool and open it again/);
          return true;
        });
        await assert.rejects(pool.device(1).write(BS, bytes(10, 3)), { code: "ENOENT" });
        await assert.rejects(pool.device(1).read(0, 10), { code: "ENOENT" });
      } finally {
        renameSync(`${pool.dataFile}.away`, pool.dataFile);
      }
      await assert.rejects(pool.close(), { code: "ENOENT" });
      pool = await Pool.open(dir);
      assert.deepEqual(await pool.device(1).read(0, BS), bytes(BS, 1));
      await pool.device(1).write(0, bytes(BS, 4)); // usable again
      assert.deepEqual(await pool.device(1).read(0, BS), bytes(BS, 4));
      await pool.close();
    });
  });
});

describe("operations", () => {
  it("trim punches free blocks out of the data file, so its allocated size falls", async () => {
    await withPool(async (pool) => {
      const { statSync } = await import("node:fs");
      const allocated = () => statSync(pool.dataFile).blocks * 512;
      await pool.createThin(1, 8 * MiB);
      await pool.device(1).write(0, bytes(4 * MiB, 1));
      await pool.createThin(2, 8 * MiB);
      await pool.device(2).write(0, bytes(MiB, 2));
      await pool.commit();
      assert.ok(allocated() >= 5 * MiB);
      await pool.deleteDevice(1);
      const early = await pool.trim();
      assert.ok(allocated() >= 5 * MiB, "blocks the last commit references are not punched");
      assert.equal(early.blocks, 16 * 1024 * 1024 / BS - 64 - 16);
      await pool.commit();
      const result = await pool.trim();
      assert.notEqual(result.method, "none");
      assert.ok(allocated() <= 1.5 * MiB, `allocated ${allocated()} bytes after trim`);
      assert.deepEqual(await pool.device(2).read(0, MiB), bytes(MiB, 2), "data in use is untouched");
    });
  });

  it("deferred deletion hides the device at once and frees its blocks in the background", async () => {
    await withPool(async (pool) => {
      await pool.createThin(1, 8 * MiB);
      await pool.device(1).write(0, bytes(2 * MiB, 1));
      await pool.deleteDevice(1, { deferred: true });
      assert.deepEqual(pool.devices(), []);
      assert.throws(() => pool.device(1), { code: "ENOENT" });
      await pool.settle();
      assert.equal(pool.status().deferredDeletes, 0);
      assert.equal(pool.status().dataBlocks.used, 0);
      await pool.createThin(1, MiB);
    });
  });

  it("held deferred deletions stay recorded and counted until an open that resumes them", async () => {
    await withTmp(async (dir) => {
      let pool = await Pool.create(dir, { dataSize: 16 * MiB });
      await pool.createThin(1, 8 * MiB);
      await pool.device(1).write(0, bytes(2 * MiB, 1));
      pool.holdDeletions();
      await pool.deleteDevice(1, { deferred: true });
      await pool.close();
      // A reporting open leaves it pending.
      pool = await Pool.open(dir, { resumeDeletions: false });
      assert.deepEqual([pool.status().deferredDeletes, pool.status().dataBlocks.used, pool.devices().length], [1, 32, 0]);
      await pool.close();
      pool = await Pool.open(dir);
      await pool.settle();
      assert.deepEqual([pool.status().deferredDeletes, pool.status().dataBlocks.used], [0, 0]);
      await pool.close();
    });
  });
});

describe("settings", () => {
  it("autoextend grows the data file past the threshold and says so", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: MiB, settings: { autoextendThreshold: 80, autoextendPercent: 20 } });
      const events: unknown[] = [];
      pool.onAutoextend = (e) => events.push(e);
      await pool.createThin(1, 4 * MiB);
      await pool.device(1).write(0, bytes(12 * BS, 1)); // 12 of 16 blocks: 75%, under the threshold
      assert.equal(events.length, 0);
      await pool.device(1).write(12 * BS, bytes(BS, 2)); // 13 of 16: past 80%
      assert.deepEqual(events, [{ fromBlocks: 16, toBlocks: 20, usedBlocks: 13 }]);
      assert.equal(pool.status().dataBlocks.total, 20);
      const { statSync } = await import("node:fs");
      assert.equal(statSync(pool.dataFile).size, 20 * BS);
      await pool.close();
      const again = await Pool.open(dir);
      assert.equal(again.status().dataBlocks.total, 20);
      assert.equal(again.status().settings.autoextendThreshold, 80);
      await again.close();
    });
  });

  it("minimum free space refuses new work below the setting, naming it", async () => {
    await withPool(async (pool) => {
      await pool.configure({ minFreeSpacePercent: 25 });
      await pool.createThin(1, 4 * MiB);
      pool.checkFreeSpace();
      await pool.device(1).write(0, bytes(13 * BS, 1));
      const err = (() => { try { pool.checkFreeSpace("prepare"); } catch (e) { return e as Error & { code: string }; } })();
      assert.equal(err?.code, "ENOSPC");
      assert.match(err!.message, /minimum free space of 25% \(dm\.min_free_space\)/);
      await assert.rejects(pool.configure({ autoextendThreshold: 120 }), { code: "EINVAL" });
    }, MiB);
  });
});
