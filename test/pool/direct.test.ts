/**
 * Direct mode (the seed's direct-lvm): a pool whose data lives on a block device, here a
 * loop device each test attaches and detaches itself. Skipped, saying why, without root
 * or loop devices.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { Pool } from "../../src/pool/pool.ts";
import { checkPool } from "../../src/pool/check.ts";
import { LayerStore } from "../../src/layers/mod.ts";
import { loopSkip, withLoop } from "../helpers/loop.ts";
import { withTmp } from "../helpers/tmp.ts";

const MiB = 1024 * 1024;
const BS = 64 * 1024;
const skip = loopSkip;

/** Bytes of `n` blocks with a pattern that tells block and seed apart. */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n * BS);
  for (let i = 0; i < out.length; i += 512) out.fill((seed + i / 512) & 0xff, i, i + 512);
  return out;
}

describe("direct mode", { skip }, () => {
  it("takes its size from the device, keeps its data there across a reopen, and writes no data file", async () => {
    await withLoop(64 * MiB, (loop) =>
      withTmp(async (dir) => {
        const pool = await Pool.create(dir, { dataDevice: loop.device });
        try {
          assert.equal(pool.dataDevice, loop.device);
          assert.equal(pool.dataFile, loop.device);
          assert.equal(pool.status().dataBlocks.total, 64 * MiB / BS);
          await pool.createThin(1, 32 * MiB);
          await pool.device(1).write(3 * BS, pattern(5, 1));
          await pool.createSnapshot(2, 1);
          await pool.device(2).write(4 * BS + 100, pattern(1, 9));
        } finally {
          await pool.close();
        }
        assert.equal(existsSync(path.join(dir, "data")), false, "direct mode writes no data file");
        assert.deepEqual((await checkPool(dir)).faults, []);
        const again = await Pool.open(dir);
        try {
          assert.equal(again.dataDevice, loop.device);
          assert.deepEqual(await again.device(1).read(3 * BS, 5 * BS), pattern(5, 1));
          const two = await again.device(2).read(3 * BS, 5 * BS);
          const want = pattern(5, 1);
          want.set(pattern(1, 9), BS + 100);
          assert.deepEqual(two, want.subarray(0, 5 * BS));
          // The bytes are on the device itself, where the pool block says.
          const pb = again.lookup(1, 3)!;
          const raw = await fs.readFile(loop.file);
          assert.deepEqual(new Uint8Array(raw.subarray(pb * BS, (pb + 1) * BS)), pattern(1, 1));
        } finally {
          await again.close();
        }
      }));
  });

  it("trim discards free ranges: the loop device's backing file gives its blocks back", async () => {
    await withLoop(64 * MiB, (loop) =>
      withTmp(async (dir) => {
        const pool = await Pool.create(dir, { dataDevice: loop.device });
        try {
          await pool.createThin(1, 32 * MiB);
          await pool.createThin(2, 32 * MiB);
          await pool.device(1).write(0, pattern(256, 3)); // 16 MiB
          await pool.device(2).write(0, pattern(16, 4)); // 1 MiB that stays
          await pool.commit();
          const full = loop.allocated();
          assert.ok(full >= 17 * MiB, `the backing file holds the data (${full} bytes)`);
          await pool.deleteDevice(1);
          await pool.commit();
          const r = await pool.trim();
          assert.ok(r.method === "ioctl(BLKDISCARD)" || r.method === "blkdiscard(8)", r.method);
          assert.equal(r.blocks, 1024 - 16);
          const after = loop.allocated();
          assert.ok(after <= full - 15 * MiB, `allocated bytes fall from ${full} to ${after}`);
          assert.deepEqual(await pool.device(2).read(0, 16 * BS), pattern(16, 4));
          // A freed block is usable again after the discard.
          await pool.createThin(3, MiB);
          await pool.device(3).write(0, pattern(2, 7));
          assert.deepEqual(await pool.device(3).read(0, 2 * BS), pattern(2, 7));
        } finally {
          await pool.close();
        }
      }));
  });

  it("resize follows a grown device and never goes past it", async () => {
    await withLoop(16 * MiB, (loop) =>
      withTmp(async (dir) => {
        const pool = await Pool.create(dir, { dataDevice: loop.device, dataSize: 8 * MiB });
        try {
          assert.equal(pool.status().dataBlocks.total, 128);
          await pool.resize(); // the whole device as it is
          assert.equal(pool.status().dataBlocks.total, 256);
          await assert.rejects(pool.resize(32 * MiB), { code: "EINVAL", message: /more than the device's 16777216 bytes; grow the device first/ });
          loop.resize(32 * MiB);
          await pool.resize();
          assert.equal(pool.status().dataBlocks.total, 512);
          assert.equal((await fs.stat(loop.file)).size, 32 * MiB, "the device is never truncated");
          await pool.resize(24 * MiB); // shrinking uses less of the device
          assert.equal(pool.status().dataBlocks.total, 384);
        } finally {
          await pool.close();
        }
        const again = await Pool.open(dir);
        assert.equal(again.status().dataBlocks.total, 384);
        await again.close();
      }));
  });

  it("autoextend grows the pool into the device's spare room and stops at its end", async () => {
    await withLoop(MiB * 2, (loop) =>
      withTmp(async (dir) => {
        const pool = await Pool.create(dir, { dataDevice: loop.device, dataSize: MiB, settings: { autoextendThreshold: 50, autoextendPercent: 50, minFreeSpacePercent: 0 } });
        const grown: number[] = [];
        pool.onAutoextend = (e) => grown.push(e.toBlocks);
        try {
          await pool.createThin(1, 4 * MiB);
          for (let b = 0; b < 30; b++) await pool.device(1).write(b * BS, pattern(1, b));
          assert.deepEqual(grown, [24, 32]);
          assert.equal(pool.status().dataBlocks.total, 32, "the device's 2 MiB");
        } finally {
          await pool.close();
        }
      }));
  });

  it("a layer store on a device: layers and files survive a reopen", async () => {
    await withLoop(64 * MiB, (loop) =>
      withTmp(async (dir) => {
        const store = await LayerStore.open(dir, { create: true, dataDevice: loop.device, baseSize: 32 * MiB });
        try {
          await store.prepare("base-x");
          await store.fs("base-x").writeFile("/big", Buffer.from(pattern(20, 5)));
          await store.commit("base", "base-x");
          await store.prepare("ctr", "base");
          await store.fs("ctr").writeFile("/note", "hello\n");
        } finally {
          await store.close();
        }
        const again = await LayerStore.open(dir);
        try {
          assert.equal(again.pool.dataDevice, loop.device);
          assert.deepEqual(new Uint8Array(await again.fs("ctr").readFile("/big") as Buffer), pattern(20, 5));
          assert.equal(await again.fs("ctr").readFile("/note", "utf8"), "hello\n");
        } finally {
          await again.close();
        }
      }));
  });

  it("refuses what is not a block device, a device that is in use, mounted or holds a file system", async () => {
    await withTmp(async (dir) => {
      const file = path.join(dir, "plain.img");
      await fs.writeFile(file, new Uint8Array(MiB));
      await assert.rejects(Pool.create(path.join(dir, "p0"), { dataDevice: file }), { code: "ENOTBLK", message: /must be a block device, and this is a regular file; attach a file with 'losetup/ });
      await assert.rejects(Pool.create(path.join(dir, "p0"), { dataDevice: path.join(dir, "nothing") }), { code: "ENOENT", message: /no such data device/ });
      assert.equal(existsSync(path.join(dir, "p0")), false, "a refused create leaves nothing");
    });
    await withLoop(16 * MiB, (loop) =>
      withTmp(async (dir) => {
        // Claimed by an open pool: a second pool and a mount both fail.
        const pool = await Pool.create(path.join(dir, "a"), { dataDevice: loop.device });
        try {
          await assert.rejects(Pool.create(path.join(dir, "b"), { dataDevice: loop.device }), { code: "EBUSY", message: /the data device is in use/ });
          assert.throws(() => execFileSync("mkfs.ext4", ["-q", loop.device], { stdio: ["ignore", "ignore", "pipe"] }), "mkfs refuses a claimed device");
        } finally {
          await pool.close();
        }
        // A second create where a pool is: EEXIST, as for a data file.
        await assert.rejects(Pool.create(path.join(dir, "a"), { dataDevice: loop.device }), { code: "EEXIST" });
      }));
    await withLoop(16 * MiB, (loop) =>
      withTmp(async (dir) => {
        execFileSync("mkfs.ext4", ["-q", "-F", loop.device], { stdio: "ignore" });
        const mnt = path.join(dir, "mnt");
        await fs.mkdir(mnt);
        execFileSync("mount", [loop.device, mnt]);
        try {
          await assert.rejects(Pool.create(path.join(dir, "p"), { dataDevice: loop.device }), { code: "EBUSY", message: /is mounted on '.*mnt'; unmount it first/ });
        } finally {
          execFileSync("umount", [mnt]);
        }
        await assert.rejects(Pool.create(path.join(dir, "p"), { dataDevice: loop.device }), { code: "EBUSY", message: /holds a signature blkid reads as 'ext4'; .*wipefs -a/ });
        execFileSync("wipefs", ["-a", loop.device], { stdio: "ignore" });
        const pool = await Pool.create(path.join(dir, "p"), { dataDevice: loop.device });
        await pool.close();
      }));
  });

  it("a device smaller than the pool, or gone, fails the open with what to do", async () => {
    await withTmp(async (dir) => {
      await withLoop(16 * MiB, async (loop) => {
        const pool = await Pool.create(dir, { dataDevice: loop.device });
        await pool.close();
        loop.resize(8 * MiB);
        await assert.rejects(Pool.open(dir), { code: "EINVAL", message: /the data device has 8388608 bytes, the pool needs 16777216; grow it back/ });
        assert.ok((await checkPool(dir)).faults.some((f) => /data device has 8388608 bytes/.test(f)));
      });
      // The loop device is detached now.
      await assert.rejects(Pool.open(dir), { code: "ENOENT", message: /(no bytes \(a loop device with no file attached\?\)|is gone).*losetup/ });
    });
  });
});
