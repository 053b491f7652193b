/**
 * Changes made behind a mount, through the store's path API (`store.fs(key)` and its file
 * handles) on a mounted active layer, are seen in the mount at once: the kernel caches
 * names and attributes for 60 s and keeps file pages and directory listings across
 * opens, so without being told it would go on showing what it read before. Every look
 * into a mount is a child process's.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { LayerServer } from "../../src/mount/mod.ts";
import { fixture, ok, sh, skipFuse } from "./helpers.ts";

/** What a child sees of the tree: a file's bytes, listings, modes, and whether names exist. */
function look(m: string): Promise<string> {
  return ok([
    `cat ${m}/f`,
    `cat ${m}/h`,
    `echo "root: $(ls ${m} | tr '\\n' ' ')"`,
    `echo "d: $(ls ${m}/d | tr '\\n' ' ')"`,
    `stat -c 'keep %a %s' ${m}/keep`,
    `for n in new gone old d/moved; do if [ -e ${m}/$n ]; then echo "$n yes"; else echo "$n no"; fi; done`,
  ].join("\n"));
}

const BEFORE = [
  "f before", "h before", "root: d f gone h keep old ", "d: x ", "keep 644 5",
  "new no", "gone yes", "old yes", "d/moved no",
].join("\n") + "\n";

const AFTER = [
  "f AFTER!", "h AFTER!", "root: d f h keep new ", "d: moved x ", "keep 600 5",
  "new yes", "gone no", "old no", "d/moved yes",
].join("\n") + "\n";

test("path-API changes to a mounted active layer are seen in the mount at once", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const { store } = f;
  await store.prepare("c");
  const fs = store.fs("c");
  await fs.writeFile("/f", "f before\n");
  await fs.writeFile("/h", "h before\n");
  await fs.writeFile("/gone", "gone\n");
  await fs.writeFile("/keep", "keep\n", { mode: 0o644 });
  await fs.writeFile("/old", "old\n");
  await fs.mkdir("/d");
  await fs.writeFile("/d/x", "x\n");
  const m = await store.mount("c", await f.mountPoint());
  try {
    assert.equal(await look(m.path), BEFORE);
    // Twice: the second look is served from the kernel's caches (names, attributes,
    // pages and listings), which the changes below must reach.
    assert.equal(await look(m.path), BEFORE);
    await fs.writeFile("/f", "f AFTER!\n"); // the same length: only the pages tell
    const fh = await fs.open("/h", "r+");
    await fh.write("h AFTER!\n", 0);
    await fh.close();
    await fs.writeFile("/new", "new\n");
    await fs.rm("/gone");
    await fs.chmod("/keep", 0o600);
    await fs.rename("/old", "/d/moved");
    assert.equal(await look(m.path), AFTER);
  } finally {
    await m.unmount();
  }
});

test("behind a served root: a container's path-API change reaches its own mount and leaves the other container's", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  const { store } = f;
  await store.prepare("img-x");
  await store.fs("img-x").mkdir("/etc");
  await store.fs("img-x").writeFile("/etc/conf", "image v1\n");
  await store.commit("img", "img-x");
  await store.prepare("c1", "img");
  await store.prepare("c2", "img");
  const server = await LayerServer.start(store, await f.mountPoint("served"));
  try {
    const m1 = (await server.bind("c1", await f.mountPoint("c1"))).path;
    const m2 = (await server.bind("c2", await f.mountPoint("c2"))).path;
    assert.equal(await ok(`cat ${m1}/etc/conf; ls ${m1}/etc`), "image v1\nconf\n");
    const other = `cat ${m2}/etc/conf; ls ${m2}/etc`;
    assert.equal(await ok(other), "image v1\nconf\n");
    assert.equal(await server.nodeOf("c1", "/etc/conf"), await server.nodeOf("c2", "/etc/conf"), "one shared node");
    // Through the shared node: c1's copy-up must not reach c2's cached pages.
    await store.fs("c1").writeFile("/etc/conf", "local v2\n");
    await store.fs("c1").writeFile("/etc/added", "added\n");
    await store.fs("c1").symlink("conf", "/etc/link");
    assert.equal(await ok(`cat ${m1}/etc/conf ${m1}/etc/link; ls ${m1}/etc`), "local v2\nlocal v2\nadded\nconf\nlink\n");
    assert.equal(await ok(other), "image v1\nconf\n", "c2 is as it was");
    assert.equal((await sh(`cat ${m2}/etc/added`)).code, 1);
  } finally {
    await server.unmount();
  }
});
