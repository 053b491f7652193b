/**
 * The staging directories containerd's unpacker writes layers into (src/daemon/staging.ts):
 * which keys are unpacks, what create, usage, drop and restore leave on disk, and that on
 * ext4 the staging root spreads its subdirectories over block groups (the `T` attribute).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { UnpackStaging } from "../../src/daemon/staging.ts";
import { tmpDir } from "../helpers/tmp.ts";

const CHAIN = `sha256:${"ab".repeat(32)}`;

async function withStaging(fn: (s: UnpackStaging, root: string, applied: string[]) => Promise<void>): Promise<void> {
  const dir = await tmpDir("thinstack-staging-");
  const applied: string[] = [];
  const staging = new UnpackStaging(path.join(dir, "staging"), (key) => {
    applied.push(key);
    return Promise.resolve();
  });
  try {
    await fn(staging, path.join(dir, "staging"), applied);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

test("only containerd's extraction keys are unpacks", () => {
  assert.ok(UnpackStaging.isUnpack(`default/12/extract-312468671-ZqDV ${CHAIN}`));
  assert.ok(UnpackStaging.isUnpack(`extract-1 ${CHAIN}`));
  assert.ok(!UnpackStaging.isUnpack(`default/13/my-container`));
  assert.ok(!UnpackStaging.isUnpack(`default/12/extract-312468671-ZqDV sha256:abc`));
  assert.ok(!UnpackStaging.isUnpack(`default/12/prefix-extract-1 ${CHAIN}`));
});

test("create, usage, drop and restore", async () => {
  await withStaging(async (staging, root) => {
    const a = `ns/1/extract-1 ${CHAIN}`;
    const b = `ns/2/extract-2 ${CHAIN}`;
    const dirs = await staging.create(a);
    await staging.create(b);
    assert.deepEqual(await fsp.readdir(dirs.upper), []);
    await fsp.mkdir(path.join(dirs.upper, "etc"));
    await fsp.writeFile(path.join(dirs.upper, "etc/motd"), new Uint8Array(10_000));
    const u = await staging.usage(dirs);
    assert.equal(u.inodes, 2);
    assert.ok(u.size >= 10_000, `size ${u.size}`);
    // A second create of a key starts it empty again.
    assert.deepEqual(await fsp.readdir((await staging.create(a)).upper), []);
    // Restore keeps the staging of active keys only.
    await staging.restore([b]);
    assert.equal(await staging.staged(a), undefined);
    assert.ok(await staging.staged(b));
    await staging.drop(b);
    assert.equal(await staging.staged(b), undefined);
    assert.deepEqual(await fsp.readdir(root), []);
  });
});

test("applyTo hands the key's upper to the applier; a key not staged is ENOENT", async () => {
  await withStaging(async (staging, _root, applied) => {
    const a = `ns/1/extract-1 ${CHAIN}`;
    await assert.rejects(staging.applyTo(a), { code: "ENOENT" });
    await staging.create(a);
    await staging.applyTo(a);
    assert.deepEqual(applied, [a]);
  });
});

const lsattr = (p: string) => spawnSync("lsattr", ["-d", p], { encoding: "utf8" });
const onExt4 = (p: string) => spawnSync("stat", ["-f", "-c", "%T", p], { encoding: "utf8" }).stdout.trim() === "ext2/ext3";
const ext4Skip = lsattr("/").status !== 0 ? "no lsattr (e2fsprogs)" : !onExt4(os.tmpdir()) ? "the temporary directory is not on ext4" : false;

test("on ext4 the staging root spreads its subdirectories over block groups (chattr +T)", { skip: ext4Skip }, async () => {
  await withStaging(async (staging, root) => {
    await staging.create(`ns/1/extract-1 ${CHAIN}`);
    const flags = lsattr(root).stdout.split(/\s+/)[0];
    assert.match(flags, /T/, `lsattr -d ${root}: ${flags}`);
  });
});
