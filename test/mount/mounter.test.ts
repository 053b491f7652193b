/**
 * The API a library and a daemon use: `store.mount()` on the image store (and its close
 * unmounting what is still mounted), and FuseMounter, a daemon's served root: layers
 * served on demand at stable directories that a runtime binds elsewhere, released before
 * commit, and after the connection died (a killed daemon) cleared and served again at
 * the same directories.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { ImageStore } from "../../src/images/mod.ts";
import { abortConnection } from "../../src/mount/kernel.ts";
import { FuseMounter, isDead, mountTable, servedName } from "../../src/mount/mod.ts";
import { fixture, ok, sh, skipFuse } from "./helpers.ts";

const mountedAt = async (dir: string) => (await mountTable()).filter((m) => m.mountPoint === dir).length;

test("store.mount serves a layer; the store's close unmounts what is still mounted", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  await f.store.prepare("ctr");
  const dir = await f.mountPoint();
  const m = await f.store.mount("ctr", dir);
  assert.equal(m.readOnly, false);
  await ok(`echo hello > ${m.path}/hello; mkdir ${m.path}/d`);
  await assert.rejects(f.store.commit("img", "ctr"), { code: "EBUSY" });
  await f.store.close();
  assert.equal(await mountedAt(m.path), 0, "unmounted by close");
  const store = await ImageStore.open(path.join(f.dir, "store"));
  try {
    assert.equal(await store.fs("ctr").readFile("/hello", "utf8"), "hello\n");
    await store.commit("img", "ctr");
    const ro = await store.mount("img", dir);
    assert.equal(ro.readOnly, true);
    const r = await sh(`echo x > ${dir}/x`);
    assert.match(r.stderr, /Read-only file system/);
    assert.equal(await ok(`cat ${dir}/hello`), "hello\n");
  } finally {
    await store.close();
  }
  assert.equal(await mountedAt(dir), 0);
});

test("FuseMounter: stable directories per key, binds elsewhere, release before commit, and restore after the connection died", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const { store } = f;
  await store.prepare("base-x");
  await store.fs("base-x").writeFile("/etc-file", "from the image\n");
  await store.commit("base", "base-x");
  const key = "default/12/ctr sha256:ab";
  await store.prepare(key, "base");
  await store.view("default/13/view", "base");
  const root = path.join(f.dir, "served");
  let mounter = await FuseMounter.start(store, root);
  const rootfs = await f.mountPoint("rootfs");
  try {
    const dir = await mounter.ensure(key, "active");
    assert.equal(dir, path.join(mounter.root, servedName(key)));
    assert.equal(await mounter.ensure(key, "active"), dir, "the same directory again");
    const view = await mounter.ensure("default/13/view", "view");
    assert.deepEqual(mounter.served().sort(), [key, "default/13/view"].sort());
    // what containerd does with the mount it is given
    await ok(`mount -n --rbind '${dir}' ${rootfs}`);
    await ok(`echo written > ${rootfs}/new; cat ${rootfs}/etc-file; cat '${view}/etc-file'`);
    assert.match((await sh(`echo x > '${view}/x'`)).stderr, /Read-only file system/);
    await assert.rejects(store.commit("img", key), (e: Error & { code?: string }) => e.code === "EBUSY" && /unmount it first/.test(e.message));

    // The connection dies (as when the daemon is killed): the served root and the bind go dead.
    const minor = mounter.server.stats().minor;
    await abortConnection(minor);
    await mounter.server.closed;
    assert.equal(await isDead(rootfs), true);
    assert.equal(await isDead(mounter.root), true);

    mounter = await FuseMounter.start(store, root);
    assert.equal(await mountedAt(rootfs), 0, "the dead bind is cleared");
    assert.equal(await mountedAt(mounter.root), 1, "one live mount at the served root");
    await mounter.restore([{ key, kind: "active" }, { key: "default/13/view", kind: "view" }]);
    assert.equal(await mounter.ensure(key, "active"), dir, "the same directory after the restart");
    assert.equal(await ok(`cat '${dir}/new'`), "written\n");
    await mounter.restore([{ key, kind: "active" }]);
    assert.deepEqual(mounter.served(), [key]);

    await ok(`mount -n --rbind '${dir}' ${rootfs}`);
    await ok(`echo again > ${rootfs}/again`);
    await ok(`umount -n ${rootfs}`);
    await mounter.release(key);
    await mounter.release(key); // nothing for a key not served
    assert.deepEqual(mounter.served(), []);
    await store.commit("img", key);
    assert.equal(await store.fs("img").readFile("/again", "utf8"), "again\n");
  } finally {
    await mounter.close();
  }
  assert.equal(await mountedAt(mounter.root), 0);
});
