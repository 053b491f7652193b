/**
 * File system semantics through a real kernel mount of a container layer over an image
 * layer: every call is made by shell commands or test/mount/sys.pl in child processes;
 * what the layers hold afterwards is read back through the store.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { statfsSync } from "node:fs";
import { test, type TestContext } from "node:test";
import { S_IFCHR } from "../../src/layers/mod.ts";
import { describeLayer, plain } from "../layers/helpers.ts";
import { type Fixture, fixture, ok, pattern, sh, skipFuse, sys, withMount } from "./helpers.ts";

const BIG = pattern(300 * 1024, 3);

/** An image layer "img" with a little of everything, and container "ctr" over it. */
async function image(f: Fixture): Promise<void> {
  const { store } = f;
  await store.prepare("img-x");
  const fs = store.fs("img-x");
  await fs.mkdir("/etc");
  await fs.writeFile("/etc/passwd", "root:x:0:0\n");
  await fs.writeFile("/etc/hosts", "127.0.0.1 localhost\n");
  await fs.setxattr("/etc/hosts", "user.color", "blue");
  await fs.mkdir("/data");
  await fs.writeFile("/data/big", BIG);
  await fs.writeFile("/data/link1", "hard\n");
  await fs.link("/data/link1", "/data/link2");
  await fs.symlink("/etc/passwd", "/sym");
  await fs.mkdir("/dir/sub", { recursive: true });
  await fs.writeFile("/dir/a", "a\n");
  await fs.writeFile("/dir/b", "b\n");
  await fs.writeFile("/dir/sub/c", "c\n");
  await fs.mknod("/null0", S_IFCHR | 0o666, (1 << 8) | 3);
  await store.commit("img", "img-x");
  await store.prepare("ctr", "img");
}

/**
 * A store with the image and its container (cleaned up after test `t`), and `body` run
 * with the container mounted (its path `M`), unmounted afterwards whatever happens.
 * Returns the store, and the image layer as it was before the mount.
 */
async function throughMount(t: TestContext, body: (M: string) => Promise<void>): Promise<{ f: Fixture; before: unknown }> {
  const f = await fixture();
  t.after(f.cleanup);
  await image(f);
  const before = plain(await describeLayer(f.store.fs("img")));
  await withMount(f.store, "ctr", await f.mountPoint(), (m) => body(m.path));
  return { f, before };
}

test("create, write, append, truncate, rename over, links, special files, modes, owners and times through a mount", { skip: skipFuse }, async (t) => {
  const { f, before } = await throughMount(t, async (M) => {
    assert.equal(await ok(`cat ${M}/etc/passwd`), "root:x:0:0\n");
    assert.equal(await ok(`readlink ${M}/sym`), "/etc/passwd\n", "a symbolic link of the image");
    assert.equal((await ok(`md5sum < ${M}/data/big`)).slice(0, 32), createHash("md5").update(BIG).digest("hex"));
    assert.equal((await ok(`cat ${M}/data/big | wc -c`)).trim(), String(BIG.byteLength));
    // create, write, append
    assert.equal(await ok(`cd ${M}; echo hello > new; echo more >> new; cat new`), "hello\nmore\n");
    // truncate down and up
    assert.equal(await ok(`cd ${M}; printf abcdef > t; truncate -s 3 t; cat t`), "abc");
    assert.equal(await ok(`cd ${M}; truncate -s 10 t; stat -c %s t; od -An -c t | tr -s ' '`), "10\n a b c \\0 \\0 \\0 \\0 \\0 \\0 \\0\n");
    // rename over an existing file
    assert.equal(await ok(`cd ${M}; echo one > r1; echo two > r2; mv r1 r2; cat r2; test ! -e r1 && echo gone`), "one\ngone\n");
    // hard links: in the layer, and of an image file (the group stays whole after the copy-up)
    assert.equal(await ok(`cd ${M}; ln new new2; stat -c %h new; echo x >> new2; cat new`), "2\nhello\nmore\nx\n");
    assert.equal(await ok(`cd ${M}; echo more >> data/link1; cat data/link2; stat -c %h data/link2`), "hard\nmore\n2\n");
    // symbolic links, fifos, devices
    assert.equal(await ok(`cd ${M}; ln -s new sl; readlink sl; cat sl | head -1`), "new\nhello\n");
    assert.equal(await ok(`cd ${M}; mkfifo fifo; stat -c %F fifo`), "fifo\n");
    assert.equal(await ok(`cd ${M}; mknod cdev c 4 5; stat -c '%F %t %T' cdev; stat -c '%t %T' null0`), "character special file 4 5\n1 3\n");
    assert.equal(await ok(`cd ${M}; head -c 4 null0 | wc -c`), "0\n", "an image's device node is a device");
    // chmod, chown, utimes with UTIME_OMIT (touch -m leaves atime, touch -a leaves mtime)
    assert.equal(await ok(`cd ${M}; chmod 640 new; stat -c %a new`), "640\n");
    assert.equal(await ok(`cd ${M}; chown 123:456 new; stat -c '%u %g' new`), "123 456\n");
    assert.equal(await ok(`cd ${M}; touch -a -d @1200000000 new; touch -m -d @1000000000.25 new; stat -c '%X %Y %y' new`), "1200000000 1000000000 2001-09-09 01:46:40.250000000 +0000\n");
    assert.equal(await ok(`cd ${M}; touch -d @1500000000 etc/passwd; stat -c '%X %Y' etc/passwd`), "1500000000 1500000000\n");
    // O_EXCL (set -C opens with O_CREAT|O_EXCL) and O_APPEND
    const excl = await sh(`cd ${M}; set -C; echo clobbered > new`);
    assert.notEqual(excl.code, 0, "O_EXCL on an existing file fails");
    assert.match(excl.stderr, /exists/);
    assert.equal(await ok(`cd ${M}; set -C; echo fresh > excl; cat excl`), "fresh\n");
    assert.equal(await ok(`cd ${M}; for i in 1 2 3; do echo $i >> app; done; cat app`), "1\n2\n3\n");
    // directories
    assert.equal(await ok(`cd ${M}; mkdir -p d1/d2/d3; rmdir d1/d2/d3 d1/d2; rmdir d1; test ! -e d1 && echo ok`), "ok\n");
    const notEmpty = await sh(`rmdir ${M}/dir`);
    assert.match(notEmpty.stderr, /not empty/i);
    // unlink of an image file
    assert.equal(await ok(`cd ${M}; rm etc/hosts; ls etc`), "passwd\n");
  });
  const ctr = f.store.fs("ctr");
  assert.equal(await ctr.readFile("/new", "utf8"), "hello\nmore\nx\n");
  assert.equal((await ctr.stat("/new")).uid, 123);
  assert.equal((await ctr.stat("/new")).mtimeMs, 1000000000250);
  assert.deepEqual(await ctr.readdir("/etc"), ["passwd"]);
  assert.equal(await ctr.readFile("/data/link2", "utf8"), "hard\nmore\n");
  assert.equal((await ctr.lstat("/cdev")).rdev, (4 << 8) | 5);
  assert.deepEqual(plain(await describeLayer(f.store.fs("img"))), before, "the image layer is unchanged");
  assert.deepEqual(await f.store.check(), []);
});

test("extended attributes, RENAME_NOREPLACE and RENAME_EXCHANGE through a mount", { skip: skipFuse }, async (t) => {
  const { f } = await throughMount(t, async (M) => {
    assert.equal(await sys("getxattr", `${M}/etc/hosts`, "user.color"), "blue", "an image file's xattr");
    assert.equal(await sys("getxattr", `${M}/etc/passwd`, "user.color"), "ERR ENODATA");
    await ok(`echo v > ${M}/x`);
    assert.equal(await sys("setxattr", `${M}/x`, "user.a", "1"), "ok");
    assert.equal(await sys("setxattr", `${M}/x`, "user.b", "two"), "ok");
    assert.equal(await sys("listxattr", `${M}/x`), "user.a,user.b");
    assert.equal(await sys("setxattr", `${M}/x`, "user.a", "9", "create"), "ERR EEXIST");
    assert.equal(await sys("setxattr", `${M}/x`, "user.c", "9", "replace"), "ERR ENODATA");
    assert.equal(await sys("setxattr", `${M}/x`, "user.a", "3", "replace"), "ok");
    assert.equal(await sys("getxattr", `${M}/x`, "user.a"), "3");
    assert.equal(await sys("removexattr", `${M}/x`, "user.b"), "ok");
    assert.equal(await sys("removexattr", `${M}/x`, "user.b"), "ERR ENODATA");
    assert.equal(await sys("setxattr", `${M}/etc/hosts`, "user.color", "red"), "ok");
    // renameat2
    await ok(`cd ${M}; echo 1 > p; echo 2 > q; mkdir -p dx/in; echo 3 > dx/in/f`);
    assert.equal(await sys("rename2", `${M}/p`, `${M}/q`, "noreplace"), "ERR EEXIST");
    assert.equal(await sys("rename2", `${M}/p`, `${M}/q`, "exchange"), "ok");
    assert.equal(await ok(`cd ${M}; cat p q`), "2\n1\n");
    assert.equal(await sys("rename2", `${M}/p`, `${M}/dx`, "exchange"), "ok", "a file and a directory");
    assert.equal(await ok(`cd ${M}; cat dx; cat p/in/f`), "2\n3\n");
    assert.equal(await sys("rename2", `${M}/p`, `${M}/dir`, "exchange"), "ok", "two directories, one of the image");
    assert.equal(await ok(`cd ${M}; ls p; ls dir; cat dir/in/f`), "a\nb\nsub\nin\n3\n");
    assert.equal(await sys("rename2", `${M}/p`, `${M}/fresh`, "noreplace"), "ok");
    assert.equal(await ok(`cd ${M}; ls fresh; test ! -e p && echo gone`), "a\nb\nsub\ngone\n");
  });
  const ctr = f.store.fs("ctr");
  assert.equal(new TextDecoder().decode(await ctr.getxattr("/etc/hosts", "user.color")), "red");
  assert.equal(new TextDecoder().decode(await f.store.fs("img").getxattr("/etc/hosts", "user.color")), "blue");
  assert.deepEqual(await ctr.readdir("/fresh"), ["a", "b", "sub"]);
  assert.equal(await ctr.readFile("/dir/in/f", "utf8"), "3\n");
  assert.deepEqual(await f.store.check(), []);
});

test("sparse files: SEEK_DATA and SEEK_HOLE, hole punching, and a file past 4 GiB", { skip: skipFuse }, async (t) => {
  const { f } = await throughMount(t, async (M) => {
    await ok(`cd ${M}; truncate -s 10M sp; printf data | dd of=sp bs=4096 seek=512 conv=notrunc status=none`);
    assert.equal(await sys("seek", `${M}/sp`, "0", "data"), String(2 << 20));
    assert.equal(await sys("seek", `${M}/sp`, "0", "hole"), "0");
    assert.equal(await sys("seek", `${M}/sp`, String(2 << 20), "hole"), String((2 << 20) + 4096));
    assert.equal(await sys("seek", `${M}/sp`, String(3 << 20), "data"), "ERR ENXIO");
    assert.equal(await sys("seek", `${M}/sp`, String(10 << 20), "hole"), "ERR ENXIO", "at the end");
    assert.equal(await ok(`stat -c %b ${M}/sp`), "8\n", "one page allocated");
    await ok(`fallocate -p -o ${2 << 20} -l 4096 ${M}/sp`);
    assert.equal(await sys("seek", `${M}/sp`, "0", "data"), "ERR ENXIO", "punched");
    assert.equal(await ok(`stat -c '%s %b' ${M}/sp; od -An -tx1 -j ${2 << 20} -N 4 ${M}/sp`), "10485760 0\n 00 00 00 00\n");
    assert.equal(await sys("seek", `${M}/data/big`, "0", "hole"), String(BIG.byteLength), "an image file is all data");
    // past 4 GiB
    const at = 4_500_000_000;
    await ok(`cd ${M}; truncate -s 5G huge; printf xyz | dd of=huge bs=1 seek=${at} conv=notrunc status=none`);
    assert.equal(await ok(`cd ${M}; stat -c %s huge; dd if=huge bs=1 skip=${at} count=3 status=none`), `${5 * 2 ** 30}\nxyz`);
    assert.equal(await sys("seek", `${M}/huge`, "0", "data"), String(Math.floor(at / 4096) * 4096));
  });
  const huge = await f.store.fs("ctr").open("/huge", "r");
  const buf = new Uint8Array(3);
  await huge.read(buf, 0, 3, 4_500_000_000);
  await huge.close();
  assert.equal(new TextDecoder().decode(buf), "xyz");
  assert.deepEqual(await f.store.check(), []);
});

test("whiteouts of lower files, opaque directories and directory renames leave the image as it was", { skip: skipFuse }, async (t) => {
  const { f, before } = await throughMount(t, async (M) => {
    assert.equal(await ok(`cd ${M}; rm dir/a; ls dir`), "b\nsub\n");
    assert.equal(await ok(`cd ${M}; rm -rf dir; mkdir dir; ls -A dir | wc -l; touch dir/new; ls dir`), "0\nnew\n", "opaque: nothing below shows");
    assert.equal(await ok(`cd ${M}; mv data data2; ls data2; test ! -e data && echo gone`), "big\nlink1\nlink2\ngone\n");
    assert.equal(await ok(`cd ${M}; cmp data2/big - < data2/big && echo same`), "same\n");
    assert.equal(await ok(`cd ${M}; mkdir data; ls -A data | wc -l`), "0\n");
  });
  const ctr = f.store.fs("ctr");
  assert.deepEqual(await ctr.readdir("/dir"), ["new"]);
  assert.deepEqual(await ctr.readdir("/data2"), ["big", "link1", "link2"]);
  assert.deepEqual(Buffer.from(await ctr.readFile("/data2/big")), Buffer.from(BIG));
  assert.deepEqual(plain(await describeLayer(f.store.fs("img"))), before, "the image layer is unchanged");
  assert.deepEqual(await f.store.check(), []);
});

test("views, committed layers and read-only mounts refuse changes with EROFS", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  await image(f);
  await f.store.view("v", "img");
  for (const [key, options] of [["img", {}], ["v", {}], ["ctr", { readOnly: true }]] as const) {
    await withMount(f.store, key, await f.mountPoint(), async (m) => {
      assert.equal(m.readOnly, true);
      assert.equal(await ok(`cat ${m.path}/etc/passwd`), "root:x:0:0\n");
      for (const cmd of [`echo x > ${m.path}/new`, `echo x >> ${m.path}/etc/passwd`, `rm ${m.path}/etc/passwd`, `mkdir ${m.path}/d`, `chmod 600 ${m.path}/etc/passwd`]) {
        const r = await sh(cmd);
        assert.notEqual(r.code, 0, `${key}: ${cmd}`);
        assert.match(r.stderr, /read-only file system/i, `${key}: ${cmd}`);
      }
    }, options);
  }
  assert.deepEqual(await f.store.fs("ctr").readdir("/etc"), ["hosts", "passwd"]);
});

test("statfs reports the pool's size and its free space, bounded by the free space of the disk under the data file", { skip: skipFuse }, async (t) => {
  // A pool larger than any disk here (its data file is sparse): the disk bounds what is free.
  const f = await fixture({ dataSize: 4 * 2 ** 40 });
  t.after(f.cleanup);
  await f.store.prepare("ctr");
  await withMount(f.store, "ctr", await f.mountPoint(), async (m) => {
    const hostFree = () => {
      const h = statfsSync(f.store.pool.dataFile);
      return Number(h.bavail) * Number(h.bsize);
    };
    const before = hostFree();
    const [bsize, blocks, avail] = (await ok(`stat -f -c '%S %b %a' ${m.path}`)).trim().split(" ").map(Number);
    const after = hostFree();
    const st = f.store.pool.status();
    assert.equal(bsize * blocks, st.dataBlocks.total * st.blockSize, "the pool's size");
    const slack = 256 * 2 ** 20; // others write to the same disk meanwhile
    assert.ok(avail * bsize <= (st.dataBlocks.total - st.dataBlocks.used) * st.blockSize);
    assert.ok(avail * bsize >= Math.min(before, after) - slack && avail * bsize <= Math.max(before, after) + slack, `${avail * bsize} free against the disk's ${before}..${after}`);
  });
});
