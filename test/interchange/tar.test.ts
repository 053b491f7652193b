/**
 * Tar reading and writing: every real archive in ../shared/images read as its MANIFEST
 * describes, malformed input failing with clear EINVAL errors, and the writer's output
 * read back exactly (long names, binary xattrs, big ids, devices) by our reader and GNU tar.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import type { TarEntry } from "../../src/interchange/entry.ts";
import { openImageFiles } from "../../src/interchange/imagefiles.ts";
import { readTar } from "../../src/interchange/tarread.ts";
import { collect, image, needImages, type T, tarOf } from "./helpers.ts";
import { withTmp } from "../helpers/tmp.ts";

async function entries(src: Parameters<typeof readTar>[0]): Promise<(Omit<TarEntry, "body"> & { data: Uint8Array })[]> {
  const out = [];
  for await (const e of readTar(src)) {
    const { body, ...rest } = e;
    out.push({ ...rest, data: await collect(body) });
  }
  return out;
}

function counts(es: { type: string }[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const e of es) c[e.type] = (c[e.type] ?? 0) + 1;
  return c;
}

test("real archives read with the entry counts MANIFEST.txt gives", { skip: needImages }, async () => {
  const want: [string, Record<string, number>][] = [
    ["busybox-1.38.0-musl-amd64/rootfs.tar.gz", { dir: 19, file: 6, link: 404, symlink: 1 }],
    ["alpine-minirootfs-3.20.3-x86_64.tar.gz", { dir: 97, file: 87, symlink: 334 }],
    ["regclient-layer.tar", { file: 3 }],
    ["regclient-layer-wh.tar", { file: 4, dir: 1 }],
    ["trivy-walker-test.tar", { file: 5, dir: 5 }],
    ["gotar-hardlink.tar", { file: 1, link: 1 }],
    ["gotar-xattrs.tar", { file: 2 }],
    ["cstorage-broken.tar", { file: 2, dir: 8 }],
  ];
  for (const [name, c] of want) assert.deepEqual(counts(await entries(image(name))), c, name);
});

test("gotar-hdr-only: header-only types carry no data whatever their size field says (16 entries, as Go reads it)", { skip: needImages }, async () => {
  const es = await entries(image("gotar-hdr-only.tar"));
  assert.equal(es.length, 16);
  for (let i = 0; i < 8; i++) {
    const { dataOffset: _a, ...x } = es[i];
    const { dataOffset: _b, ...y } = es[i + 8];
    assert.deepEqual(y, x, es[i].name);
  }
  assert.deepEqual(es.slice(0, 8).map((e) => `${e.type} ${e.name}`), [
    "dir dir/", "fifo fifo", "file file", "link hardlink", "char null", "block sda", "symlink symlink", "symlink badlink",
  ]);
  assert.deepEqual([es[4].devmajor, es[4].devminor, es[5].devmajor, es[5].devminor], [1, 3, 8, 0]);
  assert.equal(es[2].data.length, 46);
  assert.equal(es[0].uname, "joetsai");
});

test("gotar-xattrs: PAX xattrs as exact bytes, sub-second mtimes", { skip: needImages }, async () => {
  const [small, small2] = await entries(image("gotar-xattrs.tar"));
  assert.deepEqual([...small.xattrs!.keys()].sort(), ["security.selinux", "user.key", "user.key2"]);
  assert.equal(new TextDecoder().decode(small.xattrs!.get("security.selinux")), "unconfined_u:object_r:default_t:s0\0");
  assert.equal(small.mtimeMs, 1386065770448.252);
  assert.equal(small2.xattrs!.size, 1);
});

test("cstorage-broken: GNU base-256 ids and a ustar prefix name", { skip: needImages }, async () => {
  const es = await entries(image("cstorage-broken.tar"));
  const meta = es.find((e) => e.name.endsWith("META.yml"))!;
  assert.deepEqual([meta.uid, meta.gid], [831580115, 755412454]);
  assert.ok(es.some((e) => e.name === "root/.cpanm/work/1395823785.24209/Plack-1.0030/blib/man3/Plack::Middleware::LighttpdScriptNameFix.3pm"));
});

test("moby-emptyLayer: a 0-byte layer.tar and a 512-byte './'-only one are valid empty layers", { skip: needImages }, async () => {
  const files = await openImageFiles(image("moby-emptyLayer.tar"));
  try {
    assert.deepEqual(await entries(files.open("9c7cb910d84346a3fbf3cc2be046f44bf0af7f11eb8db2ef1f45e93c1202faac/layer.tar")), []);
    const one = await entries(files.open("17d1436ef796af2fc2210cc37c4672e5aa1b62cb08ac4b95dd15372321105a66/layer.tar"));
    assert.deepEqual(one.map((e) => `${e.type} ${e.name}`), ["dir ./"]);
  } finally {
    await files.close();
  }
});

test("malformed archives fail with EINVAL and say what is wrong", async () => {
  const good = await tarOf([{ name: "a", data: "x".repeat(600) }, { name: "b", data: "y" }]);
  const bad = (mutate: (b: Uint8Array) => void) => {
    const b = new Uint8Array(good);
    mutate(b);
    return b;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ["garbage", new Uint8Array(2048).fill(0x41), /malformed tar archive: Invalid tar header/],
    ["truncated data", good.subarray(0, 700), /Unexpected end of data/],
    ["truncated header", good.subarray(0, 512 * 3 + 100), /Unexpected end of data/],
    ["checksum", bad((b) => (b[512 * 3 + 148] ^= 1)), /Invalid tar header/],
    ["gzip, truncated", new Uint8Array(gzipSync(good)).subarray(0, 60), /malformed gzip data/],
    ["gzip, corrupt", bad(() => {}).map((x, i) => (i < 2 ? [0x1f, 0x8b][i] : x)), /malformed gzip data/],
    ["zstd", new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]), /zstd-compressed data is not supported/],
    ["bad PAX record", await tarOf([{ name: "x".repeat(120), data: "1" }]).then((b) => (b[0 + 512] = 0x39, b)), /PAX record/],
  ];
  for (const [what, bytes, msg] of cases) {
    await assert.rejects(entries(bytes), (e: NodeJS.ErrnoException) => e.code === "EINVAL" && msg.test(e.message), what);
  }
  await assert.rejects(entries("/nonexistent/layer.tar"), { code: "ENOENT" });
});

test("stopping early closes the source and does not hang", { skip: needImages }, async () => {
  for (let i = 0; i < 20; i++) {
    for await (const e of readTar(image("alpine-minirootfs-3.20.3-x86_64.tar.gz"))) if (e.name.includes("etc")) break;
  }
  // An entry body left half read is skipped.
  const seen: string[] = [];
  for await (const e of readTar(image("busybox-1.38.0-musl-amd64/rootfs.tar.gz"))) {
    if (e.type === "file") for await (const _ of e.body) break;
    seen.push(e.name);
  }
  assert.equal(seen.length, 430);
});

const cap = new Uint8Array([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0xff, 0xfe, 0x80]);

test("the writer's archives read back exactly: long and non-ASCII names, binary xattrs, big ids, devices, mode 0", async () => {
  const input: T[] = [
    { name: "dir/", mode: 0o2755, uid: 1000, gid: 1000, mtimeMs: 1_600_000_000_000 },
    { name: `dir/${"long-name-".repeat(30)}`, data: "long", mode: 0o4755 },
    { name: "dir/naïve-ünïcode", data: "é" },
    { name: "dir/.wh.gone", mode: 0 },
    { name: "ping", data: "p", xattrs: new Map([["security.capability", cap], ["user.note", new TextEncoder().encode("ok")]]) },
    { name: "big", data: "", uid: 900_000_000, gid: 4_000_000_000 },
    { name: "old", data: "", mtimeMs: -86_400_000 },
    { name: "dev/null", type: "char", devmajor: 1, devminor: 3, mode: 0o666 },
    { name: "dev/sda", type: "block", devmajor: 8, devminor: 0, mode: 0o660 },
    { name: "fifo", type: "fifo" },
    { name: "abs", type: "symlink", linkname: `/${"target/".repeat(40)}x`, mode: 0o777 },
    { name: "hard", type: "link", linkname: "ping" },
  ];
  const bytes = await tarOf(input);
  assert.deepEqual(bytes, await tarOf(input), "same entries, same bytes");
  const es = await entries(bytes);
  assert.deepEqual(es.map((e) => e.name), input.map((e) => e.name));
  assert.equal(es[1].mode, 0o4755);
  assert.equal(es[3].mode, 0);
  assert.deepEqual(es[4].xattrs!.get("security.capability"), cap);
  assert.deepEqual([es[5].uid, es[5].gid], [900_000_000, 4_000_000_000]);
  assert.equal(es[6].mtimeMs, -86_400_000);
  assert.deepEqual([es[8].type, es[8].devmajor, es[8].devminor], ["block", 8, 0]);
  assert.equal(es[10].linkname, input[10].linkname);
  assert.deepEqual([es[11].type, es[11].linkname], ["link", "ping"]);
  assert.equal(new TextDecoder().decode(es[2].data), "é");
  if (spawnSync("tar", ["--version"]).status !== 0) return;
  await withTmp(async (dir) => {
    fs.writeFileSync(`${dir}/t.tar`, bytes);
    const r = spawnSync("tar", ["--xattrs", "--xattrs-include=*", "-tvf", `${dir}/t.tar`], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /long-name-long-name-/);
    assert.match(r.stdout, /900000000\/4000000000/);
    assert.match(r.stdout, /hard link to ping/);
  });
});

test("a reader that stops partway through a file's data ends the writer: no hang, no unhandled rejection", { timeout: 20_000 }, async () => {
  const { writeTar } = await import("../../src/interchange/tarwrite.ts");
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on("unhandledRejection", onUnhandled);
  try {
    const chunk = new Uint8Array(64 * 1024);
    let produced = 0;
    for await (const _ of writeTar(async (w) => {
      await w.add({ name: "big", type: "file", size: 256 * chunk.length, mode: 0o644, uid: 0, gid: 0, mtimeMs: 0 }, (function* () {
        for (let i = 0; i < 256; i++) {
          produced++;
          yield chunk;
        }
      })());
    })) break; // the first chunk (the header) is enough
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(produced < 256, `the writer stopped early (${produced} of 256 chunks)`);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});
