/**
 * Sizes through a mount: 32 KiB written with `dd conv=notrunc` into the middle of a
 * 1 GiB image file from a container costs the pool exactly one block (the block copy-on-
 * write underneath the copy-up) and leaves the image's bytes alone; a directory of
 * 100,000 entries (most in the image below) listed and changed through the mount.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { mount } from "../../src/mount/mod.ts";
import { fixture, ok, pattern, skipFuse } from "./helpers.ts";

const GiB = 2 ** 30;
const CHUNK = 16 << 20;

test("dd conv=notrunc of 32 KiB into a 1 GiB image file from a container adds exactly one pool block; the image keeps its bytes", { skip: skipFuse }, async (t) => {
  const f = await fixture({ blockSize: 64 * 1024 });
  t.after(f.cleanup);
  const { store } = f;
  await store.prepare("img-x");
  const chunk = pattern(CHUNK, 3);
  const whole = createHash("sha256");
  const h = await store.fs("img-x").open("/disk.img", "w");
  try {
    for (let at = 0; at < GiB; at += CHUNK) {
      // every chunk differs, so no block of the file is like another
      chunk[0] = at / CHUNK;
      await h.write(chunk, 0, CHUNK, at);
      whole.update(chunk);
    }
  } finally {
    await h.close();
  }
  const digest = whole.digest("hex");
  await store.commit("img", "img-x");
  await store.prepare("ctr", "img");
  await store.sync();
  const m = await mount(store, "ctr", await f.mountPoint());
  const at = 300 * 32768 + 7 * CHUNK; // in the middle of the file, inside one 64 KiB block
  let before: number;
  try {
    assert.equal(await ok(`stat -c %s ${m.path}/disk.img`), `${GiB}\n`);
    before = store.pool.status().dataBlocks.used;
    await ok(`head -c 32768 /dev/zero | tr '\\0' 'z' | dd of=${m.path}/disk.img bs=32k seek=${at / 32768} conv=notrunc,fsync status=none`);
    assert.equal(await ok(`dd if=${m.path}/disk.img bs=32k skip=${at / 32768} count=1 status=none | tr -d z | wc -c`), "0\n");
    assert.equal(await ok(`stat -c %s ${m.path}/disk.img`), `${GiB}\n`);
  } finally {
    await m.unmount();
  }
  await store.sync();
  assert.equal(store.pool.status().dataBlocks.used - before, 1, "one block copied on write");
  // The image layer: every byte as written.
  const image = createHash("sha256");
  const r = await store.fs("img").open("/disk.img", "r");
  try {
    const buf = Buffer.alloc(CHUNK);
    for (let pos = 0; pos < GiB; pos += CHUNK) {
      const { bytesRead } = await r.read(buf, 0, CHUNK, pos);
      assert.equal(bytesRead, CHUNK);
      image.update(buf);
    }
  } finally {
    await r.close();
  }
  assert.equal(image.digest("hex"), digest);
  // The container's copy: the 32 KiB changed, its neighbours not.
  const ctr = await store.fs("ctr").open("/disk.img", "r");
  try {
    const got = Buffer.alloc(3 * 32768);
    await ctr.read(got, 0, got.byteLength, at - 32768);
    const expect = Buffer.from(pattern(CHUNK, 3));
    expect[0] = 7;
    const off = at - 7 * CHUNK;
    assert.ok(got.subarray(0, 32768).equals(expect.subarray(off - 32768, off)));
    assert.ok(got.subarray(32768, 65536).equals(Buffer.alloc(32768, "z")));
    assert.ok(got.subarray(65536).equals(expect.subarray(off + 32768, off + 65536)));
  } finally {
    await ctr.close();
  }
  assert.deepEqual(await store.check(), []);
});

test("a directory of 100,000 entries, 90,000 in the image and 10,000 made through a mount: listed, looked up and changed", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const { store } = f;
  const N = 100_000;
  const LOWER = 90_000;
  const name = (i: number) => `entry-${String(i).padStart(6, "0")}`;
  await store.prepare("img-x");
  const img = store.fs("img-x");
  await img.mkdir("/many");
  for (let i = 1; i <= LOWER; i++) await img.writeFile(`/many/${name(i)}`, "");
  await store.commit("img", "img-x");
  await store.prepare("ctr", "img");
  const m = await mount(store, "ctr", await f.mountPoint());
  try {
    await ok(`cd ${m.path}/many; seq -f 'entry-%06g' ${LOWER + 1} ${N} | xargs touch`);
    assert.equal(await ok(`ls -f ${m.path}/many | wc -l`), `${N + 2}\n`, "every entry, with . and ..");
    assert.equal(await ok(`find ${m.path}/many -type f | wc -l`), `${N}\n`);
    assert.equal(await ok(`ls ${m.path}/many | sed -n '1p;${LOWER}p;${N}p'`), `${name(1)}\n${name(LOWER)}\n${name(N)}\n`);
    await ok(`cd ${m.path}/many; echo last > ${name(N)}; echo low > ${name(7)}; rm ${name(50_000)} ${name(95_000)}; mv ${name(1)} first`);
    assert.equal(await ok(`cd ${m.path}/many; cat ${name(N)} ${name(7)}; ls | wc -l; test ! -e ${name(50_000)} && test ! -e ${name(95_000)} && test -e first && echo gone`), `last\nlow\n${N - 2}\ngone\n`);
  } finally {
    await m.unmount();
  }
  const names = await store.fs("ctr").readdir("/many");
  assert.equal(names.length, N - 2);
  assert.ok(names.includes("first") && !names.includes(name(1)) && !names.includes(name(50_000)) && !names.includes(name(95_000)));
  assert.equal(await store.fs("ctr").readFile(`/many/${name(N)}`, "utf8"), "last\n");
  assert.equal((await store.fs("img").readdir("/many")).length, LOWER, "the image unchanged");
  assert.equal(await store.fs("img").readFile(`/many/${name(7)}`, "utf8"), "");
});
