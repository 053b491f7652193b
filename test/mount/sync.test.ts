/**
 * What sync(1) does on a mount, with the server in its own process (`thinstack mount`)
 * killed with SIGKILL afterwards: `sync FILE` (fsync) and `sync DIR` (fsync of the
 * directory), each alone, commit the store, so what they covered is there after a remount. Two
 * known gaps are kept as `todo` tests (Node reports them, Deno lists them as ignored)
 * until the mount handles them:
 *
 * - syncfs (`sync -f DIR`, and so plain `sync`) commits nothing: this kernel sends
 *   FUSE_SYNCFS to virtiofs only, so the server never hears of it.
 * - syncfs fails with ENOENT after a file was written and removed: the kernel writes
 *   the removed inode's times back (SETATTR, with the writeback cache) and the server,
 *   which dropped the inode at UNLINK, answers ENOENT.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { mount } from "../../src/mount/mod.ts";
import { ts } from "../cli/cli.ts";
import { ok, sh } from "./helpers.ts";
import { cliMount, type ImageFixture, imageFixture, killServer, skipUnless } from "./programs-helpers.ts";

/** Serves `key` from a separate process, runs `script` (M = the mount), kills the server, remounts; returns `after`'s output. */
async function killAfter(f: ImageFixture, script: string, after: string): Promise<string> {
  const dir = await f.scratch("mnt");
  let server = await cliMount(f, "ctr", dir);
  await ok(script.replaceAll("$M", server.path));
  await killServer(server);
  await ts(["umount", server.path]);
  server = await cliMount(f, "ctr", dir);
  try {
    return (await sh(after.replaceAll("$M", server.path))).stdout;
  } finally {
    await ts(["umount", server.path]);
    await server.exited;
  }
}

async function prepared(): Promise<ImageFixture> {
  const f = await imageFixture();
  await f.store.prepare("ctr");
  await f.close();
  return f;
}

test("sync FILE (fsync of that file alone) on a mount commits the store: the file is there after SIGKILL of the server", { skip: skipUnless("sync") }, async (t) => {
  const f = await prepared();
  t.after(f.cleanup);
  assert.equal(await killAfter(f, "echo one > $M/one; sync $M/one", "cat $M/one"), "one\n");
});

test("sync DIR (fsync of a directory alone) on a mount commits the store: what was written below it is there after SIGKILL of the server", { skip: skipUnless("sync") }, async (t) => {
  const f = await prepared();
  t.after(f.cleanup);
  assert.equal(await killAfter(f, "mkdir $M/d; echo two > $M/d/two; sync $M/d", "cat $M/d/two"), "two\n");
});

test("sync -f (syncfs) on a mount commits the store", { skip: skipUnless("sync"), todo: "FUSE_SYNCFS never reaches the server: the kernel sends it to virtiofs only" }, async (t) => {
  const f = await prepared();
  t.after(f.cleanup);
  assert.equal(await killAfter(f, "echo synced > $M/file; sync -f $M", "cat $M/file"), "synced\n");
});

test("sync -f on a mount after a file was written and removed succeeds (the kernel flushes the removed inode's times: SETATTR of a node whose last link went)", { skip: skipUnless("sync") }, async (t) => {
  const f = await imageFixture();
  t.after(f.cleanup);
  await f.store.prepare("ctr");
  const m = await mount(f.store, "ctr", await f.scratch("mnt"));
  try {
    const r = await sh(`echo x > ${m.path}/f; rm ${m.path}/f; sync -f ${m.path}`);
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
  } finally {
    await m.unmount();
  }
});
