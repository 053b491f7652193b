/**
 * The FUSE layer mounter as the daemon uses it (src/mount/mounter.ts, test/mount/mounter.test.ts
 * has its own tests) in this process over a store: the directories it hands out, what containerd does with them (binds, in child
 * processes: this process serves the mount and must not touch it), release before a
 * commit, views read-only, stale binds after a commit and after a stop, and a start
 * after a dead connection. Gated on root and /dev/fuse.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { FS_TYPE, FuseMounter, mountTable, servedName } from "../../src/mount/mod.ts";
import { fixture, ok, sh, skipFuse } from "../mount/helpers.ts";

const KEY = "default/12/extract-1 sha256:ab";

const fuseMounts = async (dir: string) => (await mountTable()).filter((m) => m.fsType === FS_TYPE && (m.mountPoint === dir || m.mountPoint.startsWith(dir + "/")));

test("fuse mounter: one directory per key in the served root, stable; files written there are the layer's; release, then commit", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const m = await FuseMounter.start(f.store, path.join(f.dir, "mnt"));
  t.after(() => m.close());
  await f.store.prepare(KEY);
  const dir = await m.ensure(KEY, "active");
  assert.equal(dir, path.join(m.root, servedName(KEY)));
  assert.equal(await m.ensure(KEY, "active"), dir, "the same directory again");
  assert.deepEqual(m.served(), [KEY]);
  await ok(`mkdir '${dir}/etc' && echo hello > '${dir}/etc/motd' && ln -s motd '${dir}/etc/link'`);
  // As containerd: bind the directory somewhere, use it there, unmount, then Commit.
  const rootfs = await f.mountPoint("rootfs");
  await ok(`mount --bind '${dir}' '${rootfs}' && echo more >> '${rootfs}/etc/motd' && umount '${rootfs}'`);
  await m.release(KEY);
  assert.deepEqual(m.served(), []);
  await f.store.commit("base", KEY);
  assert.equal(await f.store.fs("base").readFile("/etc/motd", "utf8"), "hello\nmore\n");
  assert.equal(await f.store.fs("base").readlink("/etc/link"), "motd");
  await m.release(KEY); // not served: nothing happens
});

test("fuse mounter: a view is read-only; an active layer over a committed one sees its files and changes only its own", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const m = await FuseMounter.start(f.store, path.join(f.dir, "mnt"));
  t.after(() => m.close());
  await f.store.prepare("b");
  await f.store.fs("b").writeFile("/file", "base\n");
  await f.store.commit("base", "b");
  await f.store.view("v", "base");
  await f.store.prepare("c", "base");
  const view = await m.ensure("v", "view");
  const active = await m.ensure("c", "active");
  assert.equal(await ok(`cat '${view}/file' '${active}/file'`), "base\nbase\n");
  const w = await sh(`echo x > '${view}/new'`);
  assert.notEqual(w.code, 0);
  assert.match(w.stderr, /Read-only file system/);
  await ok(`echo changed > '${active}/file'`);
  assert.equal(await ok(`cat '${view}/file' '${active}/file'`), "base\nchanged\n");
  await m.release("c");
  assert.equal(await f.store.fs("c").readFile("/file", "utf8"), "changed\n");
  assert.equal(await f.store.fs("base").readFile("/file", "utf8"), "base\n");
});

test("fuse mounter: a Commit right after a write finds the file closed (the kernel's RELEASE waited for)", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const m = await FuseMounter.start(f.store, path.join(f.dir, "mnt"));
  t.after(() => m.close());
  for (let i = 0; i < 5; i++) {
    await f.store.prepare(`p${i}`, i === 0 ? undefined : `c${i - 1}`);
    const dir = await m.ensure(`p${i}`, "active");
    await ok(`for n in 1 2 3 4 5 6 7 8; do echo $n > "${dir}/f$n"; done`);
    await m.release(`p${i}`);
    await f.store.commit(`c${i}`, `p${i}`); // EBUSY "files of the layer are open" if a RELEASE were still in flight
  }
  assert.equal(await f.store.fs("c4").readFile("/f8", "utf8"), "8\n");
});

test("fuse mounter: a bind left over a committed layer refuses changes; a stop aborts the binds left; the next start clears them", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const mnt = path.join(f.dir, "mnt");
  let m = await FuseMounter.start(f.store, mnt);
  t.after(() => m.close());
  await f.store.prepare("a");
  const dir = await m.ensure("a", "active");
  const kept = await f.mountPoint("kept");
  await ok(`mount --bind '${dir}' '${kept}' && echo 1 > '${kept}/one'`);
  // containerd's suite commits a layer it still has mounted, as overlayfs allows.
  await m.release("a");
  await f.store.commit("a-done", "a");
  assert.equal(await ok(`cat '${kept}/one'`), "1\n");
  const w = await sh(`echo 2 > '${kept}/two'`);
  assert.notEqual(w.code, 0, "no change through a bind of a committed layer");
  assert.equal((await f.store.fs("a-done").readdir("/")).join(), "one");

  await f.store.prepare("b", "a-done");
  const live = await m.ensure("b", "active");
  const rootfs = await f.mountPoint("rootfs");
  await ok(`mount --bind '${live}' '${rootfs}'`);
  await m.close(); // a container's rootfs outliving the daemon: its connection is aborted
  const dead = await sh(`ls '${rootfs}'`);
  assert.notEqual(dead.code, 0);
  assert.match(dead.stderr, /not connected/);
  const real = await import("node:fs/promises").then((fs) => fs.realpath(f.dir));
  assert.ok((await fuseMounts(real)).some((e) => e.mountPoint.endsWith("/rootfs")), "the dead bind is still there");

  m = await FuseMounter.start(f.store, mnt);
  const left = (await fuseMounts(real)).map((e) => e.mountPoint);
  assert.deepEqual(left, [m.root], "only the new served root: the dead binds were cleared");
  await m.restore([{ key: "b", kind: "active" }]);
  assert.deepEqual(m.served(), ["b"]);
  const again = await m.ensure("b", "active");
  assert.equal(again, live, "the same directory after a restart");
  assert.equal(await ok(`cat '${again}/one'`), "1\n");
});
