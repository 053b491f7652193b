/**
 * File semantics across layers: whiteouts, opaque directories, renames and hardlinks of
 * lower entries, read-only layers, special files, open handles, concurrency.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { LayerStore, S_IFCHR, S_IFIFO } from "../../src/layers/mod.ts";
import { withStore } from "./helpers.ts";

test("a path deleted in an upper layer is absent there and stays in every layer below", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l1");
    const l1 = store.fs("l1");
    await l1.mkdir("/etc");
    await l1.writeFile("/etc/passwd", "root:x:0:0\n");
    await l1.writeFile("/etc/group", "root:x:0:\n");
    await store.commit("c1", "l1");
    await store.prepare("l2", "c1");
    await store.fs("l2").rm("/etc/passwd");
    await store.commit("c2", "l2");
    await store.prepare("l3", "c2");
    const l3 = store.fs("l3");
    await assert.rejects(l3.stat("/etc/passwd"), { code: "ENOENT" });
    await assert.rejects(l3.open("/etc/passwd"), { code: "ENOENT" });
    await assert.rejects(l3.readFile("/etc/passwd"), { code: "ENOENT" });
    assert.deepEqual(await l3.readdir("/etc"), ["group"]);
    assert.equal(await store.fs("c1").readFile("/etc/passwd", "utf8"), "root:x:0:0\n");
    // A name deleted below can be created again above.
    await l3.writeFile("/etc/passwd", "new\n");
    assert.deepEqual(await l3.readdir("/etc"), ["group", "passwd"]);
    assert.equal(await store.fs("c1").readFile("/etc/passwd", "utf8"), "root:x:0:0\n");
  } finally {
    await cleanup();
  }
});

test("a directory removed and made again in the same layer is opaque", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l1");
    await store.fs("l1").mkdir("/lib/sub", { recursive: true });
    await store.fs("l1").writeFile("/lib/hidden", "x");
    await store.fs("l1").writeFile("/lib/sub/deep", "y");
    await store.commit("c1", "l1");
    await store.prepare("l2", "c1");
    const l2 = store.fs("l2");
    await l2.rm("/lib", { recursive: true });
    await l2.mkdir("/lib");
    await l2.writeFile("/lib/visible", "z");
    assert.deepEqual(await l2.readdir("/lib"), ["visible"]);
    await assert.rejects(l2.stat("/lib/hidden"), { code: "ENOENT" });
    await assert.rejects(l2.stat("/lib/sub/deep"), { code: "ENOENT" });
    // Made again as a directory without the removal in between: only possible for a new name.
    await store.commit("c2", "l2");
    await store.prepare("l3", "c2");
    assert.deepEqual(await store.fs("l3").readdir("/lib"), ["visible"]);
    // A directory that replaces a file that replaced a directory shows nothing from below.
    await store.prepare("m1");
    await store.fs("m1").mkdir("/d");
    await store.fs("m1").writeFile("/d/old", "");
    await store.commit("mc1", "m1");
    await store.prepare("m2", "mc1");
    await store.fs("m2").rm("/d", { recursive: true });
    await store.fs("m2").writeFile("/d", "file now");
    await store.commit("mc2", "m2");
    await store.prepare("m3", "mc2");
    await store.fs("m3").rm("/d");
    await store.fs("m3").mkdir("/d");
    assert.deepEqual(await store.fs("m3").readdir("/d"), []);
  } finally {
    await cleanup();
  }
});

test("rename works on files and directories from lower layers", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l1");
    const l1 = store.fs("l1");
    await l1.mkdir("/a/b/c", { recursive: true });
    await l1.writeFile("/a/b/c/f", "deep");
    await l1.writeFile("/a/top", new Uint8Array(100_000).fill(7));
    await store.commit("c1", "l1");
    await store.prepare("l2", "c1");
    const l2 = store.fs("l2");
    await l2.rename("/a", "/z");
    await l2.rename("/z/top", "/top");
    assert.deepEqual(await l2.readdir("/"), ["top", "z"]);
    assert.equal(await l2.readFile("/z/b/c/f", "utf8"), "deep");
    assert.equal((await l2.readFile("/top")).length, 100_000);
    await assert.rejects(l2.stat("/a"), { code: "ENOENT" });
    // The lower layer is untouched.
    assert.deepEqual(await store.fs("c1").readdir("/a"), ["b", "top"]);
    // Later layers see the renamed tree, and names below the old place stay hidden.
    await store.commit("c2", "l2");
    await store.prepare("l3", "c2");
    const l3 = store.fs("l3");
    await l3.mkdir("/a");
    assert.deepEqual(await l3.readdir("/a"), []);
    assert.equal((await l3.stat("/z")).nlink, 3);
    await assert.rejects(l3.rename("/z", "/z/b/inside"), { code: "EINVAL" });
    await assert.rejects(l3.rename("/top", "/z"), { code: "EISDIR" });
    await assert.rejects(l3.rename("/a", "/z"), { code: "ENOTEMPTY" });
    await l3.rename("/z/b", "/a"); // onto an empty directory
    assert.deepEqual(await l3.readdir("/a"), ["c"]);
  } finally {
    await cleanup();
  }
});

test("hardlink groups stay whole across layers after a copy-up", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l1");
    const l1 = store.fs("l1");
    await l1.writeFile("/one", "shared");
    await l1.link("/one", "/two");
    await l1.link("/one", "/three");
    await store.commit("c1", "l1");
    await store.prepare("l2", "c1");
    const l2 = store.fs("l2");
    await l2.chmod("/two", 0o600);
    await l2.appendFile("/three", "!");
    const [a, b, c] = await Promise.all(["/one", "/two", "/three"].map((p) => l2.stat(p)));
    assert.equal(a.ino, b.ino);
    assert.equal(b.ino, c.ino);
    assert.equal(a.mode & 0o777, 0o600);
    assert.equal(await l2.readFile("/one", "utf8"), "shared!");
    await l2.unlink("/one");
    assert.equal((await l2.stat("/two")).nlink, 2);
    assert.equal((await store.fs("c1").stat("/two")).nlink, 3);
    assert.equal(await store.fs("c1").readFile("/one", "utf8"), "shared");
    await l2.link("/two", "/four");
    assert.equal((await l2.stat("/three")).nlink, 3);
    assert.deepEqual((await store.fsck()).problems, []);
  } finally {
    await cleanup();
  }
});

test("views and committed layers refuse every write with EROFS", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l1");
    await store.fs("l1").writeFile("/f", "x");
    await store.commit("c1", "l1");
    await store.view("v1", "c1");
    for (const key of ["c1", "v1"]) {
      const f = store.fs(key);
      await assert.rejects(f.writeFile("/f", "y"), { code: "EROFS" });
      await assert.rejects(f.writeFile("/new", "y"), { code: "EROFS" });
      await assert.rejects(f.mkdir("/d"), { code: "EROFS" });
      await assert.rejects(f.unlink("/f"), { code: "EROFS" });
      await assert.rejects(f.chmod("/f", 0o600), { code: "EROFS" });
      await assert.rejects(f.open("/f", "r+"), { code: "EROFS" });
      await assert.rejects(f.access("/f", 2), { code: "EROFS" });
      assert.equal(await f.readFile("/f", "utf8"), "x");
    }
    await assert.rejects(store.commit("c2", "v1"), { code: "EINVAL" });
    await assert.rejects(store.prepare("p", "v1"), { code: "EINVAL" });
    await store.prepare("a1", "c1");
    await assert.rejects(store.prepare("p", "a1"), { code: "EINVAL" });
  } finally {
    await cleanup();
  }
});

test("special files, symlinks, xattrs and times are kept", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l1");
    const f = store.fs("l1");
    await f.mknod("/null", S_IFCHR | 0o666, (1 << 8) | 3);
    await f.mknod("/fifo", S_IFIFO | 0o600);
    await f.mkdir("/dir");
    await f.symlink("/dir", "/link");
    await f.symlink("../dir/missing", "/dir/dangling");
    await f.writeFile("/link/through", "via link");
    await f.setxattr("/dir", "user.note", "hello");
    await f.utimes("/dir/through", 1000, 2000);
    await f.chown("/fifo", 5, 6);
    await store.commit("c1", "l1");
    const c = store.fs("c1");
    const dev = await c.lstat("/null");
    assert.ok(dev.isCharacterDevice());
    assert.equal(dev.rdev, (1 << 8) | 3);
    assert.ok((await c.lstat("/fifo")).isFIFO());
    assert.equal((await c.lstat("/fifo")).uid, 5);
    assert.equal(await c.readlink("/link"), "/dir");
    assert.ok((await c.stat("/link")).isDirectory());
    assert.equal(await c.readFile("/dir/through", "utf8"), "via link");
    assert.equal(new TextDecoder().decode(await c.getxattr("/dir", "user.note")), "hello");
    assert.deepEqual(await c.listxattr("/dir"), ["user.note"]);
    assert.equal((await c.stat("/dir/through")).mtimeMs, 2_000_000);
    assert.equal(await c.realpath("/link/../link/through"), "/dir/through");
    await assert.rejects(c.stat("/dir/dangling"), { code: "ENOENT" });
    await assert.rejects(c.readFile("/null"), { code: "EINVAL" });
    const types = Object.fromEntries((await c.readdir("/", { withFileTypes: true })).map((d) => [d.name, d.isSymbolicLink() ? "l" : d.isDirectory() ? "d" : d.isFIFO() ? "p" : d.isCharacterDevice() ? "c" : "?"]));
    assert.deepEqual(types, { dir: "d", fifo: "p", link: "l", null: "c" });
    // A symlink loop fails with ELOOP.
    await store.prepare("l2", "c1");
    await store.fs("l2").symlink("/loop", "/loop");
    await assert.rejects(store.fs("l2").stat("/loop"), { code: "ELOOP" });
  } finally {
    await cleanup();
  }
});

test("errors carry Node's codes", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l");
    const f = store.fs("l");
    await f.writeFile("/file", "x");
    await f.mkdir("/dir");
    await f.writeFile("/dir/x", "x");
    await assert.rejects(f.readFile("/missing"), { code: "ENOENT", syscall: "open", path: "/missing" });
    await assert.rejects(f.readFile("/file/x"), { code: "ENOTDIR" });
    await assert.rejects(f.mkdir("/file"), { code: "EEXIST" });
    await assert.rejects(f.readFile("/dir"), { code: "EISDIR" });
    await assert.rejects(f.rmdir("/dir"), { code: "ENOTEMPTY" });
    await assert.rejects(f.readlink("/file"), { code: "EINVAL" });
    await assert.rejects(f.unlink("/dir"), { code: "EISDIR" });
    await assert.rejects(f.link("/dir", "/dir2"), { code: "EPERM" });
    await assert.rejects(f.open("/file", "wx"), { code: "EEXIST" });
    await assert.rejects(f.rm("/dir"), { code: "EISDIR" });
    await f.rm("/nothing", { force: true });
    assert.equal(await f.mkdir("/p/q/r", { recursive: true }), "/p");
    assert.equal(await f.mkdir("/p/q/r", { recursive: true }), undefined);
    assert.throws(() => store.fs("nope"), { code: "ENOENT" });
  } finally {
    await cleanup();
  }
});

test("file handles: positional I/O, append, truncate, and unlinked-but-open files", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l");
    const f = store.fs("l");
    const fh = await f.open("/data", "w+");
    await fh.write(new Uint8Array(10_000).fill(1), 0, 10_000, 0);
    await fh.write("hello", 20_000);
    const buf = new Uint8Array(8);
    const { bytesRead } = await fh.read(buf, 0, 8, 19_998);
    assert.equal(bytesRead, 7);
    assert.deepEqual([...buf.subarray(0, 7)], [0, 0, ...new TextEncoder().encode("hello")]);
    // Into the middle of a buffer, over a hole and data; bytes around the range stay as they were.
    const big = new Uint8Array(40_000).fill(9);
    assert.equal((await fh.read(big, 100, 30_000, 0)).bytesRead, 20_005);
    assert.deepEqual([big[99], big[100], big[10_099], big[10_100], big[20_099], big[20_104], big[20_105]], [9, 1, 1, 0, 0, 0x6f, 9]);
    await assert.rejects(fh.read(buf, 4, 5, 0), { code: "EINVAL" });
    await assert.rejects(fh.read(buf, -1, 2, 0), { code: "EINVAL" });
    assert.equal((await fh.stat()).size, 20_005);
    await f.unlink("/data");
    await assert.rejects(f.stat("/data"), { code: "ENOENT" });
    assert.equal((await fh.stat()).size, 20_005, "the open file lives on");
    await assert.rejects(store.commit("c", "l"), { code: "EBUSY" });
    await fh.truncate(3);
    await fh.close();
    await fh.close();
    assert.deepEqual((await store.fsck()).problems, []);
    const app = await f.open("/log", "a");
    await app.write("one ");
    await app.write("two");
    await app.close();
    assert.equal(await f.readFile("/log", "utf8"), "one two");
    await f.truncate("/log", 3);
    assert.equal(await f.readFile("/log", "utf8"), "one");
    await f.truncate("/log", 5000);
    assert.deepEqual([...(await f.readFile("/log") as Uint8Array).subarray(0, 5)], [111, 110, 101, 0, 0]);
  } finally {
    await cleanup();
  }
});

test("concurrent calls on one store are serialized safely", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("base");
    await store.commit("img", "base");
    const work = [];
    for (let i = 0; i < 8; i++) {
      work.push((async () => {
        const key = `c${i}`;
        await store.prepare(key, "img");
        const f = store.fs(key);
        await Promise.all(Array.from({ length: 20 }, (_, j) => f.writeFile(`/f${j}`, `${key}:${j}`.repeat(j * 40))));
        await store.sync();
        return key;
      })());
    }
    const keys = await Promise.all(work);
    for (const key of keys) {
      const f = store.fs(key);
      for (let j = 0; j < 20; j++) assert.equal(await f.readFile(`/f${j}`, "utf8"), `${key}:${j}`.repeat(j * 40));
    }
    assert.deepEqual((await store.fsck()).problems, []);
  } finally {
    await cleanup();
  }
});

test("an unlinked file still open at close is freed when the store opens again; repair finds nothing to do", async () => {
  const { store, dir, cleanup } = await withStore();
  try {
    await store.prepare("l");
    const f = store.fs("l");
    const fh = await f.open("/tmp-file", "w");
    await fh.write(new Uint8Array(300_000).fill(5), 0, 300_000, 0);
    await f.unlink("/tmp-file");
    await store.close(); // the handle is never closed, as when a process dies
    const again = await LayerStore.open(dir);
    try {
      assert.equal(again.pool.status().dataBlocks.used, 0);
      assert.deepEqual((await again.fsck()).problems, []);
      assert.deepEqual(await again.repair(), []);
    } finally {
      await again.close();
    }
  } finally {
    await cleanup();
  }
});

test("paths and data as Linux and Node take them: a trailing slash names a directory, rmdir of '.', any typed array or DataView", async () => {
  const { store, cleanup } = await withStore();
  try {
    await store.prepare("l");
    const f = store.fs("l");
    await f.writeFile("/file", "x");
    await f.mkdir("/d");
    await f.symlink("/d", "/ld");
    await f.symlink("/file", "/lf");
    await assert.rejects(f.stat("/file/"), { code: "ENOTDIR" });
    await assert.rejects(f.readFile("/file/"), { code: "ENOTDIR" });
    await assert.rejects(f.lstat("/lf/"), { code: "ENOTDIR" });
    assert.ok((await f.lstat("/ld/")).isDirectory(), "a trailing slash follows the link");
    assert.ok((await f.stat("/d/")).isDirectory());
    await assert.rejects(f.rmdir("/d/."), { code: "EINVAL" });
    assert.ok((await f.stat("/d")).isDirectory(), "rmdir of '/d/.' removed nothing");
    await f.writeFile("/u16", new Uint16Array([0x0102, 0x0304]));
    const u16 = new Uint16Array([0x0102, 0x0304]);
    assert.deepEqual([...await f.readFile("/u16") as Uint8Array], [...new Uint8Array(u16.buffer)]);
    await f.writeFile("/dv", new DataView(new Uint8Array([9, 8, 7]).buffer, 1));
    assert.deepEqual([...await f.readFile("/dv") as Uint8Array], [8, 7]);
  } finally {
    await cleanup();
  }
});
