/**
 * Applying layer changesets by the OCI rules (image-spec layer.md), on synthetic archives
 * and on the real layers in ../shared/images, through the in-memory layer double.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import { test } from "node:test";
import { applyTar } from "../../src/interchange/apply.ts";
import { applyToLayer } from "../../src/interchange/operations.ts";
import { collect, describeView, image, needImages, type T, tarOf } from "./helpers.ts";
import { MemStore, MemTree } from "./memlayers.ts";

const text = async (t: MemTree, p: string) => new TextDecoder().decode(await collect(t.read(p)));
const paths = async (t: MemTree) => (await describeView(t)).map((l) => l.split(" ").slice(0, 2).join(" "));

/** A layer `lower` with `upper` applied on top, the way a store stacks them. */
async function stack(...layers: (T[] | string)[]): Promise<MemTree> {
  const t = new MemTree();
  for (const l of layers) await applyTar(t, typeof l === "string" ? l : await tarOf(l));
  return t;
}

test("regclient layer + layer-wh: file whiteout and opaque directory", { skip: needImages }, async () => {
  const t = await stack([{ name: "exdir/" }, { name: "exdir/old", data: "x" }], image("regclient-layer.tar"), image("regclient-layer-wh.tar"));
  assert.deepEqual(await paths(t), ["dir /exdir", "file /layer1.txt", "file /layer3.txt"]);
  assert.deepEqual(await t.readdir("/exdir"), []);
  assert.ok(t.opaque.has("/exdir"), "the opaque directory is marked for the store");
  const st = await t.lstat("/layer1.txt");
  assert.notEqual(st!.uid, 0, "owners are kept");
});

test("trivy walker layer: opaque etc/, whiteout inside foo/", { skip: needImages }, async () => {
  const t = await stack([{ name: "etc/passwd", data: "root" }, { name: "foo/foo", data: "1" }, { name: "foo/keep", data: "2" }], image("trivy-walker-test.tar"));
  assert.deepEqual(await paths(t), [
    "dir /app", "dir /app/myweb", "file /app/myweb/index.html", "file /baz", "dir /etc", "dir /foo", "file /foo/keep", "dir /vendor", "file /vendor/bar",
  ]);
});

test("opaque whiteouts apply first, wherever they are in the archive", async () => {
  const lower: T[] = [{ name: "d/a", data: "a" }, { name: "d/sub/b", data: "b" }];
  for (
    const order of [
      [{ name: "d/" }, { name: "d/.wh..wh..opq" }, { name: "d/c", data: "c" }, { name: "d/sub/" }],
      [{ name: "d/" }, { name: "d/c", data: "c" }, { name: "d/sub/" }, { name: "d/.wh..wh..opq" }],
      [{ name: "d/c", data: "c" }, { name: "d/.wh..wh..opq" }, { name: "d/sub/" }, { name: "d/" }],
    ] as T[][]
  ) {
    const t = await stack(lower, order);
    assert.deepEqual(await paths(t), ["dir /d", "file /d/c", "dir /d/sub"], JSON.stringify(order.map((e) => e.name)));
  }
});

test("whiteouts affect lower layers only, never entries of the same archive", async () => {
  const lower: T[] = [{ name: "x", data: "old" }, { name: "d/old", data: "1" }];
  for (const order of [[{ name: "x", data: "new" }, { name: ".wh.x" }], [{ name: ".wh.x" }, { name: "x", data: "new" }]] as T[][]) {
    const t = await stack(lower, order);
    assert.equal(await text(t, "/x"), "new");
  }
  // A whiteout of a directory the archive also fills hides only the lower part.
  for (const order of [[{ name: "d/new", data: "2" }, { name: ".wh.d" }], [{ name: ".wh.d" }, { name: "d/new", data: "2" }]] as T[][]) {
    const t = await stack(lower, order);
    assert.deepEqual(await paths(t), ["dir /d", "file /d/new", "file /x"]);
  }
});

test("an entry replacing another type removes it first; a directory over a directory keeps its children", async () => {
  const lower: T[] = [
    { name: "a", data: "file" },
    { name: "b/child", data: "1" },
    { name: "c", type: "symlink", linkname: "b" },
    { name: "d/", mode: 0o755 },
    { name: "d/keep", data: "k" },
  ];
  const t = await stack(lower, [
    { name: "a/", mode: 0o700 },
    { name: "a/x", data: "x" },
    { name: "b", data: "now a file" },
    { name: "c", data: "not a link" },
    { name: "d/", mode: 0o750, uid: 5, gid: 6, mtimeMs: 86_400_000 },
  ]);
  assert.deepEqual(await describeView(t, { mtime: true }), [
    "dir /a 700 0:0 @1000000000",
    "file /a/x 644 0:0 1 2d711642b726b044 @1000000000",
    "file /b 644 0:0 10 92af885f330ed4b1 @1000000000",
    "file /c 644 0:0 10 91d5359205025717 @1000000000",
    "dir /d 750 5:6 @86400",
    "file /d/keep 644 0:0 1 8254c329a92850f6 @1000000000",
  ]);
});

test("hard links to entries of the same archive and of lower layers", async () => {
  const t = await stack([{ name: "lower", data: "L" }], [
    { name: "f", data: "F" },
    { name: "g", type: "link", linkname: "f" },
    { name: "dir/h", type: "link", linkname: "./lower" },
  ]);
  assert.equal((await t.lstat("/f"))!.ino, (await t.lstat("/g"))!.ino);
  assert.equal((await t.lstat("/lower"))!.ino, (await t.lstat("/dir/h"))!.ino);
  assert.equal((await t.lstat("/f"))!.nlink, 2);
  await assert.rejects(stack([{ name: "a", type: "link", linkname: "later" }, { name: "later", data: "1" }]), /does not exist/);
  await assert.rejects(stack([{ name: "d/" }, { name: "a", type: "link", linkname: "d" }]), /directory/);
});

test("busybox rootfs: 404 hard links to bin/[, one symlink, owners and modes", { skip: needImages }, async () => {
  const t = await stack(image("busybox-1.38.0-musl-amd64/rootfs.tar.gz"));
  const bracket = (await t.lstat("/bin/["))!;
  assert.equal(bracket.nlink, 405);
  assert.equal((await t.lstat("/bin/sh"))!.ino, bracket.ino);
  assert.equal(await t.readlink("/usr/bin/env"), "../../bin/env");
  assert.equal((await t.lstat("/tmp"))!.mode, 0o1777);
  assert.equal((await t.lstat("/etc/shadow"))!.mode, 0o600);
  assert.deepEqual([(await t.lstat("/home"))!.uid, (await t.lstat("/usr/sbin"))!.gid, (await t.lstat("/var/spool/mail"))!.uid], [65534, 1, 8]);
});

test("alpine minirootfs: absolute symlinks stored as they are, unsorted entries", { skip: needImages }, async () => {
  const t = await stack(image("alpine-minirootfs-3.20.3-x86_64.tar.gz"));
  const lines = await describeView(t);
  assert.equal(lines.filter((l) => l.startsWith("symlink ")).length, 334);
  assert.equal(lines.filter((l) => l.startsWith("file ")).length, 87);
  assert.equal(lines.filter((l) => l.startsWith("dir ")).length, 97 - 1); // "./" is the root
  assert.equal(await t.readlink("/bin/ls"), "/bin/busybox");
  assert.deepEqual([(await t.lstat("/etc/shadow"))!.mode, (await t.lstat("/etc/shadow"))!.gid], [0o640, 42]);
  assert.equal((await t.lstat("/var/tmp"))!.mode, 0o1777);
});

test("every entry type, PAX xattrs and huge ids from Go's and containers/storage's testdata", { skip: needImages }, async () => {
  const t = await stack(image("gotar-hdr-only.tar"));
  const lines = await describeView(t);
  assert.deepEqual(lines.map((l) => l.split(" ").slice(0, 2).join(" ")), [
    "symlink /badlink", "dir /dir", "fifo /fifo", "file /file", "file /hardlink", "char /null", "block /sda", "symlink /symlink",
  ]);
  assert.equal((await t.lstat("/null"))!.rdev, 0x103);
  assert.equal((await t.lstat("/sda"))!.rdev, 0x800);
  assert.equal((await t.lstat("/hardlink"))!.ino, (await t.lstat("/file"))!.ino);
  const x = await stack(image("gotar-xattrs.tar"));
  assert.deepEqual(new TextDecoder().decode((await x.xattrs("/small.txt"))!.get("user.key2")), "value2");
  assert.equal((await x.xattrs("/small2.txt"))!.size, 1);
  const b = await stack(image("cstorage-broken.tar"));
  assert.equal((await b.lstat("/root/.cpanm/work/1395823785.24209/File-Find-Rule-0.33/META.yml"))!.uid, 831580115);
  assert.ok(await b.lstat("/root/.cpanm/work/1395823785.24209/Plack-1.0030/blib/man3/Plack::Middleware::LighttpdScriptNameFix.3pm"));
});

test("a failed apply leaves the layer exactly as it was", async () => {
  const store = new MemStore();
  await store.prepare("k");
  await applyToLayer(store, "k", await tarOf([{ name: "keep/a", data: "a" }, { name: "gone", data: "g" }]));
  const before = await describeView(store.view("k"), { mtime: true });
  const good = await tarOf([{ name: ".wh.gone" }, { name: "keep/.wh..wh..opq" }, { name: "new", data: "n" }]);
  const bad = [
    // an invalid whiteout after real changes
    await tarOf([{ name: ".wh.gone" }, { name: "keep/.wh..wh..opq" }, { name: "new", data: "n" }, { name: "x/.wh.." }]),
    // the same changes, then the archive breaks off mid-file
    good.subarray(0, good.length - 1024 - 512 + 100),
    // a corrupt header checksum
    (() => {
      const c = new Uint8Array(good);
      c[512 * 2 + 148] ^= 1; // the third header's checksum
      return c;
    })(),
  ];
  for (const b of bad) {
    await assert.rejects(applyToLayer(store, "k", b), { code: "EINVAL" });
    assert.deepEqual(await describeView(store.view("k"), { mtime: true }), before);
  }
  // And a failure of the layer itself (say, the pool is full).
  const scratchFails = store.transaction.bind(store);
  store.transaction = (key, fn) => scratchFails(key, (t) => ((t as MemTree).failAt = 1, fn(t)));
  await assert.rejects(applyToLayer(store, "k", good), { code: "ENOSPC" });
  assert.deepEqual(await describeView(store.view("k"), { mtime: true }), before);
  store.transaction = scratchFails;
  await applyToLayer(store, "k", good);
  assert.deepEqual(await paths(store.view("k")), ["dir /keep", "file /new"]);
});

test("sources: path, bytes, Node stream, web ReadableStream, gzip or not", { skip: needImages }, async () => {
  const p = image("regclient-layer.tar");
  const bytes = new Uint8Array(fs.readFileSync(p));
  const { gzipSync } = await import("node:zlib");
  const web = (b: Uint8Array) => new ReadableStream<Uint8Array>({ start(c) { c.enqueue(b.subarray(0, 700)); c.enqueue(b.subarray(700)); c.close(); } });
  for (const src of [p, new URL(`file://${p}`), bytes, fs.createReadStream(p), web(bytes), new Uint8Array(gzipSync(bytes)), web(new Uint8Array(gzipSync(bytes)))]) {
    const t = new MemTree();
    await applyTar(t, src);
    assert.deepEqual(await paths(t), ["file /layer1.txt", "file /layer2.txt", "file /layer3.txt"]);
  }
});
