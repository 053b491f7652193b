/** Unit tests of the layer store's pure parts: paths, page maps, the allocator, inodes, filters. */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { PageAllocator } from "../../src/layers/alloc.ts";
import { mapPages, segments, tailHint, unmapFrom } from "../../src/layers/filemap.ts";
import { compileFilters } from "../../src/layers/filter.ts";
import { parseFlags } from "../../src/layers/flags.ts";
import { decodeInode, encodeInode, type Extent, newInode, S_IFLNK, S_IFREG } from "../../src/layers/inode.ts";
import { basename, components, dirname, isWithin, join } from "../../src/layers/path.ts";
import { runs } from "../helpers/tmp.ts";

const RUNS = runs(100);

test("paths", () => {
  assert.deepEqual(components("//a/./b/../c/"), ["a", "b", "..", "c"]);
  assert.equal(join("/", "a"), "/a");
  assert.equal(join("/a", "b"), "/a/b");
  assert.equal(dirname("/a"), "/");
  assert.equal(dirname("/a/b"), "/a");
  assert.equal(basename("/a/b"), "b");
  assert.ok(isWithin("/a/b", "/a") && isWithin("/a", "/a") && !isWithin("/ab", "/a") && isWithin("/x", "/"));
});

test("page maps: segments, merging, unmapping", () => {
  const e: Extent[] = [];
  mapPages(e, 0, 100, 2);
  mapPages(e, 2, 102, 3); // contiguous in file and device: merged
  mapPages(e, 8, 50, 1);
  assert.deepEqual(e, [{ page: 0, dev: 100, count: 5 }, { page: 8, dev: 50, count: 1 }]);
  assert.deepEqual(segments(e, 3, 10), [
    { page: 3, count: 2, dev: 103 }, { page: 5, count: 3, dev: -1 }, { page: 8, count: 1, dev: 50 }, { page: 9, count: 1, dev: -1 },
  ]);
  assert.equal(tailHint(e, 5), 105);
  assert.equal(tailHint(e, 6), undefined);
  mapPages(e, 7, 49, 1); // joins the next extent
  assert.deepEqual(e[1], { page: 7, dev: 49, count: 2 });
  assert.deepEqual(unmapFrom(e, 3), [{ dev: 103, count: 2 }, { dev: 49, count: 2 }]);
  assert.deepEqual(e, [{ page: 0, dev: 100, count: 3 }]);
});

test("page maps agree with a page-by-page model", () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(64), fc.integer({ min: 1, max: 8 }))), fc.nat(80), (writes, cut) => {
    const e: Extent[] = [];
    const model = new Map<number, number>();
    let dev = 1000;
    for (const [page, count] of writes) {
      for (const s of segments(e, page, page + count)) {
        if (s.dev >= 0) continue;
        mapPages(e, s.page, dev, s.count);
        for (let k = 0; k < s.count; k++) model.set(s.page + k, dev + k);
        dev += s.count + (page % 2); // sometimes contiguous, sometimes not
      }
    }
    const check = () => {
      for (const s of segments(e, 0, 100)) for (let k = 0; k < s.count; k++) assert.equal(s.dev < 0 ? undefined : s.dev + k, model.get(s.page + k));
      for (let i = 1; i < e.length; i++) assert.ok(e[i - 1].page + e[i - 1].count <= e[i].page);
    };
    check();
    const freed = unmapFrom(e, cut);
    const freedPages = freed.reduce((n, r) => n + r.count, 0);
    assert.equal(freedPages, [...model.keys()].filter((p) => p >= cut).length);
    for (const p of [...model.keys()]) if (p >= cut) model.delete(p);
    check();
  }), { numRuns: RUNS });
});

test("allocator: whole free blocks or owned blocks only, and wholly free blocks reported", () => {
  const a = PageAllocator.fresh(64, 16); // 4 blocks of 16 pages
  const r1 = a.allocate(3)!;
  assert.deepEqual(r1, [{ start: 0, count: 3 }]);
  const r2 = a.allocate(2)!; // packs into the owned block 0
  assert.deepEqual(r2, [{ start: 3, count: 2 }]);
  const child = a.inherit();
  // The child owns no block: the free corner of block 0 is not for it.
  assert.deepEqual(child.allocate(2), [{ start: 16, count: 2 }]);
  assert.deepEqual(child.free(0, 3), [], "block 0 still holds pages 3-4");
  assert.deepEqual(child.allocate(1), [{ start: 18, count: 1 }], "freed pages of a block shared with the parent stay unused");
  assert.deepEqual(child.free(3, 2), [0], "block 0 wholly free: discard it");
  assert.deepEqual(child.allocate(16, { align: 0 }), [{ start: 0, count: 16 }]);
  assert.equal(child.allocate(64), undefined, "not enough room: nothing taken");
  assert.equal(child.freePages, 64 - 16 - 3);
  const copy = PageAllocator.decode(child.encode(), 64, 16);
  assert.deepEqual(copy.encode(), child.encode());
});

test("allocator: pages are never handed out twice and frees add back up", () => {
  fc.assert(fc.property(fc.array(fc.oneof(fc.integer({ min: 1, max: 40 }), fc.nat(50).map((n) => -n - 1)), { maxLength: 60 }), (ops) => {
    const a = PageAllocator.fresh(256, 16);
    const held: { start: number; count: number }[] = [];
    const owner = new Uint8Array(256);
    for (const op of ops) {
      if (op > 0) {
        const runs = a.allocate(op, { align: op % 16 });
        if (!runs) continue;
        assert.equal(runs.reduce((n, r) => n + r.count, 0), op);
        for (const r of runs) {
          for (let p = r.start; p < r.start + r.count; p++) {
            assert.equal(owner[p], 0, `page ${p} handed out twice`);
            owner[p] = 1;
          }
          held.push(r);
        }
      } else if (held.length) {
        const r = held.splice((-op - 1) % held.length, 1)[0];
        for (const b of a.free(r.start, r.count)) for (let p = b * 16; p < b * 16 + 16; p++) assert.equal(owner[p] === 1 && !(p >= r.start && p < r.start + r.count), false, `block ${b} reported free while page ${p} is held`);
        owner.fill(0, r.start, r.start + r.count);
      }
      assert.equal(a.freePages, 256 - owner.reduce((n, x) => n + x, 0));
    }
  }), { numRuns: RUNS });
});

test("inodes round-trip through their stored form", () => {
  const f = newInode(S_IFREG | 0o644, 1234.5);
  f.extents = [{ page: 0, dev: 7, count: 3 }];
  delete f.inline;
  f.size = 10_000;
  f.xattrs = new Map([["user.a", new Uint8Array([1, 2])]]);
  assert.deepEqual(decodeInode(encodeInode(f)), f);
  const l = newInode(S_IFLNK | 0o777, 1);
  l.target = "/x";
  assert.deepEqual(decodeInode(encodeInode(l)), l);
  const small = newInode(S_IFREG | 0o600, 1);
  small.inline = new Uint8Array([9, 9]);
  small.size = 2;
  assert.deepEqual(decodeInode(encodeInode(small)), small);
});

test("containerd filters", () => {
  const info = (name: string, kind: "active" | "view" | "committed", parent: string, labels: Record<string, string>) =>
    ({ name, kind, parent, labels, created: new Date(0), updated: new Date(0) });
  const a = info("a", "active", "p", { l: "2", "x.io/y": "z" });
  assert.ok(compileFilters([])(a));
  assert.ok(compileFilters(['labels."x.io/y"==z'])(a));
  assert.ok(compileFilters(["kind==view", "name==a"])(a));
  assert.ok(!compileFilters(["kind==view,name==a"])(a));
  assert.ok(compileFilters(['parent!=""'])(a));
  assert.ok(compileFilters(["labels.l"])(a) && !compileFilters(["labels.m"])(a));
  assert.ok(compileFilters(["name~=^a$"])(a));
  assert.throws(() => compileFilters(['name=="x']), { code: "EINVAL" });
});

test("open flags", () => {
  assert.deepEqual(parseFlags("r"), { read: true, write: false, create: false, exclusive: false, truncate: false, append: false, noFollow: false });
  assert.equal(parseFlags("a+").append, true);
  assert.equal(parseFlags("w+").truncate, true);
  assert.throws(() => parseFlags("q"), { code: "EINVAL" });
});
