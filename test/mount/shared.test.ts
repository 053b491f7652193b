/**
 * Two containers of one image served by one connection (a served root, each container
 * bind-mounted as a runtime would): an unchanged image file is one node for both, with
 * one copy in the page cache; a write, truncate, chmod, utimes or xattr change from one
 * container copies the file up there and leaves what the other sees (and the kernel's
 * cached attributes and pages of the shared node) as it was.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { LayerServer } from "../../src/mount/mod.ts";
import { type Fixture, fixture, ok, pattern, sh, skipFuse, sys } from "./helpers.ts";

const BIG = 16 << 20;

async function twoContainers(f: Fixture): Promise<{ server: LayerServer; m1: string; m2: string }> {
  const { store } = f;
  await store.prepare("img-x");
  const fs = store.fs("img-x");
  await fs.writeFile("/big", pattern(BIG, 5));
  for (const n of ["f", "g", "k", "t", "u", "x", "r", "d"]) await fs.writeFile(`/${n}`, `${n} original ${"-".repeat(3000)}\n`, { mode: 0o644 });
  await fs.writeFile("/h1", "linked\n");
  await fs.link("/h1", "/h2");
  await store.commit("img", "img-x");
  await store.prepare("c1", "img");
  await store.prepare("c2", "img");
  await store.view("v", "img");
  const server = await LayerServer.start(store, await f.mountPoint("served"));
  const m1 = (await server.bind("c1", await f.mountPoint("c1"))).path;
  const m2 = (await server.bind("c2", await f.mountPoint("c2"))).path;
  server.add("v");
  return { server, m1, m2 };
}

const stat = (p: string) => ok(`stat -c '%s %a %Y %h' ${p}`);

test("containers of one image share the node and the page cache of an unchanged image file", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const { server, m1, m2 } = await twoContainers(f);
  try {
    await ok(`cat ${m1}/big > /dev/null; cat ${m2}/f ${m1}/f > /dev/null`);
    const n1 = await server.nodeOf("c1", "/big");
    assert.ok(n1 !== undefined);
    // Read through c1 only: c2's name for it leads to pages already in the cache.
    const resident = (await ok(`fincore -nb -o RES ${m2}/big`)).trim();
    assert.equal(resident, String(BIG), "the pages c1 read are c2's");
    assert.equal(await server.nodeOf("c2", "/big"), n1);
    await ok(`cat ${server.path}/v/big > /dev/null`);
    assert.equal(await server.nodeOf("v", "/big"), n1, "a view of the image shares it too");
    assert.equal(await server.nodeOf("c1", "/f"), await server.nodeOf("c2", "/f"));
  } finally {
    await server.unmount();
  }
});

test("a change from one container copies up there and leaves the other's view, attributes and cached pages alone", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const { server, m1, m2 } = await twoContainers(f);
  try {
    // Both containers look everything up first, so the kernel caches the shared nodes under both.
    await ok(`for m in ${m1} ${m2}; do cat $m/f $m/g $m/k $m/t $m/u $m/x $m/r $m/d $m/h1 $m/h2 $m/big > /dev/null; done`);
    const before = await stat(`${m2}/f`);
    const shared = await server.nodeOf("c1", "/f");
    assert.equal(await server.nodeOf("c2", "/f"), shared);
    // write with O_TRUNC
    assert.equal(await ok(`echo changed > ${m1}/f; cat ${m1}/f`), "changed\n");
    assert.match(await ok(`cat ${m2}/f`), /^f original/);
    assert.equal(await stat(`${m2}/f`), before, "c2's size, mode, mtime and links as they were");
    assert.notEqual(await server.nodeOf("c1", "/f"), shared, "c1 has a node of its own now");
    assert.equal(await server.nodeOf("c2", "/f"), shared);
    // append
    await ok(`echo more >> ${m1}/g`);
    assert.equal(await ok(`tail -1 ${m1}/g`), "more\n");
    assert.doesNotMatch(await ok(`cat ${m2}/g`), /more/);
    // truncate, chmod, utimes, xattr, on names both containers have looked up
    await ok(`truncate -s 0 ${m1}/t`);
    assert.equal(await ok(`stat -c %s ${m1}/t ${m2}/t`), "0\n3012\n");
    await ok(`chmod 600 ${m1}/u`);
    assert.equal(await ok(`stat -c %a ${m1}/u ${m2}/u`), "600\n644\n");
    const mtime = (await ok(`stat -c %Y ${m2}/x`)).trim();
    await ok(`touch -m -d @1000000000 ${m1}/x`);
    assert.equal(await ok(`stat -c %Y ${m1}/x ${m2}/x`), `1000000000\n${mtime}\n`);
    assert.equal(await sys("setxattr", `${m1}/r`, "user.mine", "1"), "ok");
    assert.equal(await sys("getxattr", `${m1}/r`, "user.mine"), "1");
    assert.equal(await sys("getxattr", `${m2}/r`, "user.mine"), "ERR ENODATA");
    // 32 KiB into the middle of a shared file c2 has in its page cache
    await ok(`head -c 32768 /dev/zero | dd of=${m1}/big bs=32k seek=100 conv=notrunc status=none`);
    assert.equal(await ok(`od -An -tx1 -j ${100 * 32768} -N 4 ${m1}/big`), " 00 00 00 00\n");
    const old = pattern(BIG, 5).subarray(100 * 32768, 100 * 32768 + 4);
    assert.equal(await ok(`od -An -tx1 -j ${100 * 32768} -N 4 ${m2}/big`), ` ${[...old].map((b) => b.toString(16).padStart(2, "0")).join(" ")}\n`);
    // a write through one hardlink shows through the other in c1 (its cached name is invalidated), not in c2
    await ok(`echo x >> ${m1}/h1`);
    assert.equal(await ok(`cat ${m1}/h2`), "linked\nx\n");
    assert.equal(await ok(`cat ${m2}/h2`), "linked\n");
    // unlink and rename in c1
    await ok(`rm ${m1}/k; mv ${m1}/d ${m1}/d2`);
    assert.equal(await ok(`stat -c %h ${m2}/k; cat ${m2}/d | head -c 10`), "1\nd original");
    assert.equal(await ok(`test ! -e ${m1}/k && test ! -e ${m1}/d && head -c 10 ${m1}/d2`), "d original");
    // the view in the same connection refuses changes to the same shared node
    const ro = await sh(`echo no >> ${server.path}/v/g`);
    assert.match(ro.stderr, /read-only/i);
  } finally {
    await server.unmount();
  }
  const c1 = f.store.fs("c1");
  const c2 = f.store.fs("c2");
  assert.equal(await c1.readFile("/f", "utf8"), "changed\n");
  assert.match(String(await c2.readFile("/f", "utf8")), /^f original/);
  assert.equal((await c1.stat("/u")).mode & 0o777, 0o600);
  assert.equal((await c2.stat("/u")).mode & 0o777, 0o644);
  assert.equal(await c1.readFile("/h2", "utf8"), "linked\nx\n");
  assert.equal(await f.store.fs("img").readFile("/h2", "utf8"), "linked\n");
  assert.deepEqual(await f.store.check(), []);
});

test("a change on a descriptor opened read-only: done in the one layer that knows the file, ESTALE when several do", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const { server, m1, m2 } = await twoContainers(f);
  try {
    await ok(`cat ${m1}/k > /dev/null`);
    assert.equal(await sys("fchmod", `${m1}/k`, "600"), "ok", "only c1 has looked k up");
    assert.equal(await ok(`stat -c %a ${m1}/k ${m2}/k`), "600\n644\n");
    await ok(`cat ${m1}/g ${m2}/g > /dev/null`);
    assert.equal(await sys("fchmod", `${m1}/g`, "600"), "ERR ESTALE", "both have: the kernel does not say which");
    assert.equal(await ok(`stat -c %a ${m1}/g ${m2}/g`), "644\n644\n");
    assert.equal(await ok(`chmod 600 ${m1}/g; stat -c %a ${m1}/g ${m2}/g`), "600\n644\n", "the path-based call works");
  } finally {
    await server.unmount();
  }
});
