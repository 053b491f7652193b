/**
 * Diffs as OCI changesets: containerd's TestDiffTar cases, opaque directories, every
 * entry type, determinism, flat memory, and round trips through apply on the real images.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { test } from "node:test";
import { applyTar } from "../../src/interchange/apply.ts";
import { changeset } from "../../src/interchange/changeset.ts";
import { Hasher } from "../../src/interchange/digest.ts";
import type { EntryStat } from "../../src/interchange/entry.ts";
import { importImage } from "../../src/interchange/images.ts";
import { readTar } from "../../src/interchange/tarread.ts";
import type { LayerSource } from "../../src/interchange/view.ts";
import { walkChanges } from "../../src/interchange/walkdiff.ts";
import { collect, describeView, image, needImages } from "./helpers.ts";
import { MemStore, type MemTree } from "./memlayers.ts";

const A = { uid: 0, gid: 0, mtimeMs: 1_000_000_000_000 };
const enc = (s: string) => new TextEncoder().encode(s);

// continuity's fstest appliers, on a layer target.
type Op = (t: MemTree) => Promise<void>;
const createDir = (p: string, mode: number): Op => (t) => t.create(p, { type: "dir" }, { ...A, mode });
const createFile = (p: string, data: string, mode: number): Op => async (t) => {
  if (await t.lstat(p)) await t.remove(p);
  await t.create(p, { type: "file", size: data.length, data: [enc(data)] as unknown as AsyncIterable<Uint8Array> }, { ...A, mode });
};
const link = (a: string, b: string): Op => (t) => t.link(a, b);
const remove = (p: string): Op => (t) => t.remove(p);
const chmod = (p: string, mode: number): Op => async (t) => {
  const st = (await t.lstat(p))!;
  await t.setAttrs(p, { uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs, mode });
};

/** A store with layer "a" (ops `a`) and "b" on it (ops `b`). */
async function layers(a: Op[], b: Op[]): Promise<MemStore> {
  const s = new MemStore();
  await s.prepare("ka");
  for (const op of a) await op(s.target("ka"));
  await s.commit("a", "ka");
  await s.prepare("kb", "a");
  for (const op of b) await op(s.target("kb"));
  await s.commit("b", "kb");
  return s;
}

/** The changeset's entries, one line each. */
async function listing(src: LayerSource): Promise<string[]> {
  const out: string[] = [];
  for await (const e of readTar(await collect(changeset(src)))) {
    const data = new TextDecoder().decode(await collect(e.body));
    out.push([e.type, e.name, e.mode.toString(8), e.linkname ? `-> ${e.linkname}` : "", data].filter((x) => x !== "").join(" "));
  }
  return out;
}

const cases: { name: string; a: Op[]; b: Op[]; want: string[] }[] = [
  { name: "EmptyDiff", a: [createDir("/etc", 0o755)], b: [], want: [] },
  {
    name: "ParentInclusion",
    a: [createDir("/d1", 0o755), createDir("/d2", 0o770)],
    b: [createDir("/d1/d", 0o700), createFile("/d2/f", "ok", 0o644)],
    want: ["dir d1/ 755", "dir d1/d/ 700", "dir d2/ 770", "file d2/f 644 ok"],
  },
  {
    name: "HardlinkParentInclusion",
    a: [
      createDir("/d1", 0o755), createFile("/d1/f1", "link me", 0o644), createDir("/d2", 0o755), createFile("/d2/f1", "link me", 0o644),
      createDir("/d3", 0o755), createDir("/d4", 0o755), createFile("/d4/f1", "link me", 0o644), createDir("/d5", 0o755),
      createFile("/d5/f1", "link me", 0o644), createDir("/d6", 0o755), link("/d1/f1", "/d6/l1"), link("/d5/f1", "/d6/l2"),
    ],
    b: [link("/d1/f1", "/d2/l1"), link("/d4/f1", "/d3/l1"), remove("/d6/l1"), remove("/d6/l2")],
    want: [
      "dir d1/ 755", "file d1/f1 644 link me", "dir d2/ 755", "link d2/l1 644 -> d1/f1", "dir d3/ 755", "file d3/l1 644 link me",
      "dir d4/ 755", "link d4/f1 644 -> d3/l1", "dir d6/ 755", "file d6/.wh.l1 0", "file d6/.wh.l2 0",
    ],
  },
  {
    name: "UpdateDirectoryPermission",
    a: [createDir("/d1", 0o755), createDir("/d2", 0o770)],
    b: [chmod("/d1", 0o777), createDir("/d1/d", 0o700), createFile("/d2/f", "ok", 0o644)],
    want: ["dir d1/ 777", "dir d1/d/ 700", "dir d2/ 770", "file d2/f 644 ok"],
  },
  {
    name: "WhiteoutIncludesParents",
    a: [
      createDir("/d1", 0o755), createFile("/d1/f1", "content", 0o644), createDir("/d2", 0o755), createFile("/d2/f1", "content", 0o644),
      createFile("/d2/f2", "content", 0o644), createDir("/d3", 0o755), createFile("/d3/f1", "content", 0o644), createDir("/d4", 0o755),
      createFile("/d4/f1", "content", 0o644), createDir("/d5", 0o755), createFile("/d5/f1", "content", 0o644),
    ],
    b: [
      remove("/d1/f1"), remove("/d2/f1"), chmod("/d2/f2", 0o777), remove("/d3/f1"), createFile("/d3/f2", "content", 0o644),
      remove("/d4/f1"), createFile("/d4/f0", "content", 0o644), remove("/d5"),
    ],
    want: [
      "dir d1/ 755", "file d1/.wh.f1 0", "dir d2/ 755", "file d2/.wh.f1 0", "file d2/f2 777 content", "dir d3/ 755", "file d3/.wh.f1 0",
      "file d3/f2 644 content", "dir d4/ 755", "file d4/f0 644 content", "file d4/.wh.f1 0", "file .wh.d5 0",
    ],
  },
  {
    name: "WhiteoutParentRemoval",
    a: [createDir("/d1", 0o755), createDir("/d2", 0o755), createFile("/d2/f1", "content", 0o644)],
    b: [remove("/d1"), remove("/d2"), createDir("/d3", 0o755)],
    want: ["file .wh.d1 0", "file .wh.d2 0", "dir d3/ 755"],
  },
  {
    name: "an opaque whiteout only where a directory was replaced",
    a: [createDir("/d", 0o755), createFile("/d/x", "x", 0o644), createDir("/e", 0o755), createFile("/e/x", "x", 0o644)],
    b: [remove("/d"), createDir("/d", 0o755), createFile("/d/y", "y", 0o644), remove("/e/x"), createFile("/e/y", "y", 0o644)],
    want: ["dir d/ 755", "file d/.wh..wh..opq 0", "file d/y 644 y", "dir e/ 755", "file e/.wh.x 0", "file e/y 644 y"],
  },
  {
    name: "type changes",
    a: [createFile("/f", "f", 0o644), createDir("/d", 0o755), createFile("/d/x", "x", 0o644)],
    b: [remove("/f"), createDir("/f", 0o700), remove("/d"), createFile("/d", "now a file", 0o600)],
    want: ["file d 600 now a file", "dir f/ 700"],
  },
];

for (const c of cases) {
  test(`TestDiffTar/${c.name}`, async () => {
    const s = await layers(c.a, c.b);
    assert.deepEqual(await listing(s.source("b")), c.want);
  });
}

test("devices, FIFOs, symlinks, xattrs and owners go into the changeset; sockets do not", async () => {
  const cap = new Uint8Array([1, 0, 0, 2, 0x20, 0, 0, 0, 0xff]);
  const s = await layers([], [
    (t) => t.create("/null", { type: "char", rdev: 0x103 }, { ...A, mode: 0o666 }),
    (t) => t.create("/sda", { type: "block", rdev: 0x800 }, { ...A, mode: 0o660 }),
    (t) => t.create("/fifo", { type: "fifo" }, { ...A, mode: 0o600, uid: 7, gid: 8 }),
    (t) => t.create("/abs", { type: "symlink", target: "/bin/busybox" }, { ...A, mode: 0o777 }),
    (t) => t.create("/ping", { type: "file", size: 0, data: [] as unknown as AsyncIterable<Uint8Array> }, { ...A, mode: 0o755, xattrs: new Map([["security.capability", cap]]) }),
  ]);
  s.view("b").inodes.get(s.view("b").get("/ping")!.ino)!.type = "socket";
  const es = [];
  for await (const e of readTar(await collect(changeset(s.source("b"))))) es.push(e);
  assert.deepEqual(es.map((e) => `${e.type} ${e.name} ${e.uid}:${e.gid} ${e.devmajor},${e.devminor} ${e.linkname ?? ""}`), [
    "symlink abs 0:0 0,0 /bin/busybox",
    "fifo fifo 7:8 0,0 ",
    "char null 0:0 1,3 ",
    "block sda 0:0 8,0 ",
  ]);
});

test("the same layer always gives the same bytes", { skip: needImages }, async () => {
  const digests = new Set<string>();
  for (let i = 0; i < 2; i++) {
    const s = new MemStore();
    const { layers: ls } = await importImage(s, s, image("busybox-1.38.0-musl-amd64"));
    for (let j = 0; j < 2; j++) {
      const h = new Hasher();
      for await (const c of changeset(s.source(ls[0]))) h.update(c);
      digests.add(h.digest());
    }
  }
  assert.equal(digests.size, 1);
});

test("diff then apply rebuilds every layer of the real images", { skip: needImages }, async () => {
  for (const name of ["dive-test-docker-image.tar", "dive-test-kaniko-image.tar", "ggcr-whiteout_dir.tar", "ggcr-overwritten_file.tar", "busybox-1.38.0-musl-amd64", "alpine-minirootfs-3.20.3-x86_64.tar.gz"]) {
    const a = new MemStore();
    let chain: string[];
    if (name.startsWith("alpine")) {
      await a.prepare("k");
      await applyTar(a.target("k"), image(name));
      await a.commit("alpine", "k");
      chain = ["alpine"];
    } else {
      chain = (await importImage(a, a, image(name))).layers;
    }
    const b = new MemStore();
    for (const [i, l] of chain.entries()) {
      await b.prepare(`k${i}`, i ? `l${i - 1}` : undefined);
      const tar = await collect(changeset(a.source(l)));
      await applyTar(b.target(`k${i}`), tar);
      await b.commit(`l${i}`, `k${i}`);
      assert.deepEqual(await describeView(b.view(`l${i}`), { mtime: true }), await describeView(a.view(l), { mtime: true }), `${name} layer ${i}`);
    }
  }
});

test("memory stays flat while a 1 GiB layer streams through diff", async () => {
  const MiB = 1 << 20;
  const size = 1024 * MiB;
  const big: EntryStat = { type: "file", mode: 0o644, uid: 0, gid: 0, size, nlink: 1, ino: 2, rdev: 0, mtimeMs: 0 };
  const dir: EntryStat = { ...big, type: "dir", size: 0, ino: 1 };
  const src: LayerSource = {
    lstat: (p) => Promise.resolve(p === "/data" ? dir : p === "/data/big" ? big : undefined),
    readdir: () => Promise.resolve([]),
    readlink: () => Promise.reject(new Error("no links")),
    async *read() {
      for (let at = 0; at < size; at += MiB) yield new Uint8Array(MiB).fill(at / MiB);
    },
    xattrs: () => Promise.resolve(undefined),
    async *changes() {
      yield { path: "/data/big", kind: "added" };
    },
  };
  const base = process.memoryUsage().rss;
  let peak = base;
  let bytes = 0;
  const h = new Hasher();
  for await (const c of changeset(src)) {
    h.update(c);
    bytes += c.length;
    if ((bytes & (64 * MiB - 1)) < c.length) peak = Math.max(peak, process.memoryUsage().rss);
  }
  assert.equal(bytes, 512 + 512 + size + 1024); // dir header, file header and data, end blocks
  assert.ok(peak - base < 256 * MiB, `peak RSS grew by ${((peak - base) / MiB).toFixed(0)} MiB`);
});

test("walkChanges (the double walk for stores that do not track changes) rebuilds every layer too", { skip: needImages }, async () => {
  const a = new MemStore();
  const { layers: chain } = await importImage(a, a, image("dive-test-docker-image.tar"));
  const b = new MemStore();
  for (const [i, l] of chain.entries()) {
    const v = a.view(l);
    const src: LayerSource = {
      lstat: (p) => v.lstat(p), readdir: (p) => v.readdir(p), readlink: (p) => v.readlink(p), read: (p) => v.read(p), xattrs: (p) => v.xattrs(p),
      changes: () => walkChanges(i ? a.view(chain[i - 1]) : undefined, v),
    };
    await b.prepare(`k${i}`, i ? `l${i - 1}` : undefined);
    await applyTar(b.target(`k${i}`), await collect(changeset(src)));
    await b.commit(`l${i}`, `k${i}`);
    assert.deepEqual(await describeView(b.view(`l${i}`), { mtime: true }), await describeView(a.view(l), { mtime: true }), `layer ${i}`);
  }
});
