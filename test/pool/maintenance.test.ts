import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { Pool } from "../../src/pool/pool.ts";
import { checkPool, repairPool } from "../../src/pool/check.ts";
import { dumpPool, restorePool } from "../../src/pool/dump.ts";
import { decodeMetaFile, encodeMetaFile } from "../../src/pool/metafile.ts";
import { withTmp } from "../helpers/tmp.ts";

const BS = 64 * 1024;
const MiB = 1024 * 1024;

/** A pool with three devices, shared blocks and a gap, committed and closed. */
async function makePool(dir: string): Promise<void> {
  const pool = await Pool.create(dir, { dataSize: 8 * MiB });
  await pool.createThin(1, 4 * MiB);
  await pool.device(1).write(0, new Uint8Array(5 * BS).fill(1));
  await pool.device(1).write(40 * BS, new Uint8Array(10).fill(2));
  await pool.createSnapshot(2, 1);
  await pool.device(2).write(BS, new Uint8Array(BS).fill(3));
  await pool.createThin(3, MiB);
  await pool.close();
}

async function metaFiles(dir: string, prefix: string): Promise<string[]> {
  return (await fs.readdir(path.join(dir, "metadata"))).filter((f) => f.startsWith(prefix));
}

describe("check", () => {
  it("finds nothing wrong with a healthy pool", async () => {
    await withTmp(async (dir) => {
      await makePool(dir);
      const report = await checkPool(dir);
      assert.deepEqual(report.faults, []);
      assert.equal(report.devices, 3);
      assert.equal(report.usedBlocks, 7);
    });
  });

  it("reports a mapping outside the pool, a missing node and a wrong used count", async () => {
    await withTmp(async (dir) => {
      await makePool(dir);
      const [seg] = await metaFiles(dir, "nodes.");
      const file = path.join(dir, "metadata", seg);
      const value = decodeMetaFile(await fs.readFile(file), "test") as { nodes: [number, number, number[]][] };
      const leaf = value.nodes.find((n) => n[1] === 1)!;
      leaf[2][1] = 10_000_000; // block far past the pool's 128
      await fs.writeFile(file, encodeMetaFile(value));
      const report = await checkPool(dir);
      assert.ok(report.faults.some((f) => /outside the pool's 128/.test(f)), report.faults.join("\n"));

      const root = path.join(dir, "metadata", "pool.cbor");
      const record = decodeMetaFile(await fs.readFile(root), "test") as { usedBlocks: number };
      record.usedBlocks = 99;
      await fs.writeFile(root, encodeMetaFile(record));
      assert.ok((await checkPool(dir)).faults.some((f) => /the maps use \d+ blocks but the last commit recorded 99/.test(f)));

      value.nodes = []; // lose every node
      await fs.writeFile(file, encodeMetaFile(value));
      const worse = await checkPool(dir);
      assert.ok(worse.faults.some((f) => /map node \d+ \(root\) is missing/.test(f)), worse.faults.join("\n"));
    });
  });

  it("reports an unreadable device file", async () => {
    await withTmp(async (dir) => {
      await makePool(dir);
      const [dev3] = await metaFiles(dir, "dev-3.");
      await fs.writeFile(path.join(dir, "metadata", dev3), new Uint8Array([0xff, 0x00, 0x12]));
      const report = await checkPool(dir);
      assert.ok(report.faults.some((f) => /device 3: file .* cannot be read/.test(f)), report.faults.join("\n"));
    });
  });
});

describe("repair", () => {
  it("drops what cannot be read, keeps the rest, and leaves a pool that checks clean and opens", async () => {
    await withTmp(async (dir) => {
      await makePool(dir);
      const [seg] = await metaFiles(dir, "nodes.");
      const file = path.join(dir, "metadata", seg);
      const value = decodeMetaFile(await fs.readFile(file), "test") as { nodes: [number, number, number[]][] };
      for (const n of value.nodes) if (n[1] === 1) for (let k = 1; k < n[2].length; k += 2) if (n[2][k] === 1) n[2][k] = 9_999_999;
      await fs.writeFile(file, encodeMetaFile(value));
      const changes = await repairPool(dir);
      assert.ok(changes.some((c) => /^dropped: .*outside the pool/.test(c)), changes.join("\n"));
      assert.deepEqual((await checkPool(dir)).faults, []);
      const pool = await Pool.open(dir);
      assert.deepEqual(pool.devices().map((d) => d.id), [1, 2, 3]);
      // Everything that was not pool block 0 reads as before.
      assert.deepEqual(await pool.device(2).read(BS, BS), new Uint8Array(BS).fill(3));
      assert.equal(pool.status().dataBlocks.used, (await checkPool(dir)).usedBlocks);
      await pool.close();
    });
  });
});

describe("dump and restore", () => {
  it("round-trip byte for byte, keeping blocks shared", async () => {
    await withTmp(async (dir) => {
      await makePool(dir);
      const first = await dumpPool(dir);
      assert.match(first, /<range_mapping origin_begin="0" data_begin="0" length="5"\/>/);
      const other = path.join(dir, "copy");
      await fs.mkdir(other);
      await fs.copyFile(path.join(dir, "data"), path.join(other, "data"));
      await restorePool(other, first);
      assert.equal(await dumpPool(other), first);
      const pool = await Pool.open(other);
      assert.equal(pool.status().dataBlocks.used, 7);
      assert.equal(pool.lookup(1, 0), pool.lookup(2, 0), "restored devices still share blocks");
      await pool.device(2).write(0, new Uint8Array([9]));
      assert.deepEqual(await pool.device(1).read(0, 1), new Uint8Array([1]), "and copy on write");
      await pool.close();
    });
  });

  it("refuses text that is not a dump", async () => {
    await withTmp(async (dir) => {
      await assert.rejects(restorePool(dir, "hello\n"), { code: "EINVAL" });
      await assert.rejects(restorePool(dir, '<superblock format="thinstack-pool" block_size="x">\n'), { code: "EINVAL" });
    });
  });
});
