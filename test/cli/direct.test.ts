/**
 * `thinstack init --data-device` (direct mode) as a user drives it, on a loop device the
 * test attaches and detaches. Skipped, saying why, without root or loop devices.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { loopSkip, withLoop } from "../helpers/loop.ts";
import { withTmp } from "../helpers/tmp.ts";
import { fails, parseFields, pattern, thinstack, ts } from "./cli.ts";

const MiB = 1024 * 1024;

test("direct mode from the CLI: init on a device, files, info, trim with discards, resize after the device grew", { skip: loopSkip }, async () => {
  await withLoop(32 * MiB, (loop) =>
    withTmp(async (dir) => {
      const r = { root: path.join(dir, "store") };
      const plain = path.join(dir, "plain.img");
      await fs.writeFile(plain, "");
      fails(await thinstack(["init", "--data-device", plain], r), 1, /ENOTBLK: block device required/, /must be a block device, and this is a regular file/);
      assert.equal(await fs.stat(r.root).then(() => true, () => false), false, "a refused init leaves nothing");

      const init = await ts(["init", "--data-device", loop.device, "--base-size", "16M", "--min-free-space", "0"], r);
      assert.match(init.stdout, new RegExp(`data 33\\.55 MB on ${loop.device}, blocks`));
      assert.equal(await fs.stat(path.join(r.root, "data")).then(() => true, () => false), false, "no data file");
      const info = Object.fromEntries(parseFields((await ts(["info"], r)).stdout));
      assert.equal(info["Data file"], loop.device);
      assert.equal(info["Data Space Total"], "33.55 MB");

      await ts(["prepare", "c"], r);
      const file = path.join(dir, "f");
      await fs.writeFile(file, pattern(8 * MiB));
      await ts(["cp", file, "c:/f"], r);
      assert.ok((await ts(["cat", "c:/f"], r)).bytes.equals(pattern(8 * MiB)), "the file reads back");
      const before = loop.allocated();
      await ts(["rm", "c"], r);
      const trim = await ts(["trim"], r);
      assert.match(trim.stdout, /^Trimmed \d+ free blocks .* with (ioctl\(BLKDISCARD\)|blkdiscard\(8\))\n$/);
      assert.ok(loop.allocated() <= before - 7 * MiB, `the backing file gave the blocks back (${before} -> ${loop.allocated()})`);

      fails(await thinstack(["resize", "--data-size", "64M"], r), 1, /EINVAL/, /more than the device's 33554432 bytes; grow the device first/);
      loop.resize(64 * MiB);
      assert.match((await ts(["resize"], r)).stdout, /^Data space is now 67\.11 MB\n$/);
      assert.match((await ts(["check"], r)).stdout, /: no faults\n$/);
    }));
});

test("resize of a store over a data file still needs --data-size", async () => {
  await withTmp(async (dir) => {
    const r = { root: path.join(dir, "store") };
    await ts(["init", "--data-size", "4M", "--base-size", "16M"], r);
    fails(await thinstack(["resize"], r), 1, /EINVAL/, /--data-size is required for a store over a data file/);
  });
});
