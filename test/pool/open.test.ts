// One open instance per pool in a process, and a create that never truncates a data file.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { Pool } from "../../src/pool/pool.ts";
import { LayerStore } from "../../src/layers/mod.ts";
import { withTmp } from "../helpers/tmp.ts";

const BS = 64 * 1024;
const inThisProcess = (e: Error & { code?: string }) => e.code === "EBUSY" && /already open in this process/.test(e.message);

describe("one open pool per directory in a process", () => {
  it("a second Pool.open of an open pool is EBUSY, by any path to it; after close it opens", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 16 * BS });
      try {
        await assert.rejects(Pool.open(dir), inThisProcess);
        await assert.rejects(Pool.open(dir + "/"), inThisProcess);
        await fs.symlink(dir, path.join(path.dirname(dir), path.basename(dir) + "-link"));
        try {
          await assert.rejects(Pool.open(dir + "-link"), inThisProcess);
        } finally {
          await fs.rm(dir + "-link");
        }
        await assert.rejects(Pool.create(dir, { dataSize: 16 * BS }), { code: "EEXIST" });
        // The refused opens left the open pool's lock and files alone.
        await pool.createThin(1, BS);
        await pool.device(1).write(0, new Uint8Array([7]));
        await pool.commit();
      } finally {
        await pool.close();
      }
      const again = await Pool.open(dir);
      assert.deepEqual(await again.device(1).read(0, 1), new Uint8Array([7]));
      await again.close();
    });
  });

  it("of two opens at once, one is EBUSY", async () => {
    await withTmp(async (dir) => {
      await (await Pool.create(dir, { dataSize: 16 * BS })).close();
      const results = await Promise.allSettled([Pool.open(dir), Pool.open(dir)]);
      const opened = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<Pool>).value);
      const refused = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason);
      assert.equal(opened.length, 1);
      assert.equal(refused.length, 1);
      assert.ok(inThisProcess(refused[0]), refused[0].message);
      await opened[0].close();
    });
  });

  it("a second LayerStore.open (or a Pool.open under an open store) is EBUSY", async () => {
    await withTmp(async (dir) => {
      const store = await LayerStore.open(dir, { create: true, dataSize: 64 * BS, baseSize: 4 * BS });
      try {
        await assert.rejects(LayerStore.open(dir), inThisProcess);
        await assert.rejects(LayerStore.open(dir, { create: true, dataSize: 64 * BS }), inThisProcess);
        await assert.rejects(Pool.open(dir), inThisProcess);
        await store.prepare("a");
        await store.fs("a").writeFile("/f", "kept");
      } finally {
        await store.close();
      }
      const again = await LayerStore.open(dir);
      assert.equal(await again.fs("a").readFile("/f", "utf8"), "kept");
      await again.close();
    });
  });
});

describe("create never truncates a data file", () => {
  for (const via of ["Pool.create", "LayerStore.open({ create: true })"]) {
    it(`${via} of a directory whose data file lost its root record is EEXIST and leaves the data`, async () => {
      await withTmp(async (dir) => {
        const pool = await Pool.create(dir, { dataSize: 16 * BS });
        await pool.createThin(1, 4 * BS);
        await pool.device(1).write(BS, new Uint8Array(BS).fill(0x5a));
        await pool.close();
        const data = path.join(dir, "data");
        const before = await fs.readFile(data);
        await fs.rm(path.join(dir, "metadata", "pool.cbor"));
        const create = via === "Pool.create"
          ? Pool.create(dir, { dataSize: 8 * BS })
          : LayerStore.open(dir, { create: true, dataSize: 8 * BS });
        await assert.rejects(create, (e: Error & { code?: string }) => {
          assert.equal(e.code, "EEXIST");
          assert.match(e.message, /a data file is here but no root record/);
          assert.match(e.message, /thinstack repair/);
          assert.match(e.message, /remove the data file/);
          return true;
        });
        assert.ok(Buffer.from(before).equals(await fs.readFile(data)), "the data file is as it was");
        // Nothing holds the pool: once the data file is gone, a create works.
        await fs.rm(data);
        await (await Pool.create(dir, { dataSize: 8 * BS })).close();
      });
    });
  }
});
