/** Entry names, whiteout names, path order, device numbers, PAX records: the small pieces. */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { test } from "node:test";
import fc from "fast-check";
import { comparePaths } from "../../src/interchange/changeset.ts";
import { makedev, major, minor } from "../../src/interchange/devices.ts";
import { cleanComponents, parseWhiteout } from "../../src/interchange/names.ts";
import { encodePax, parsePax } from "../../src/interchange/pax.ts";
import { runs } from "../helpers/tmp.ts";

test("names clean lexically and never climb above the root", () => {
  const cases: [string, string[]][] = [
    ["./", []], ["/", []], ["..", []], ["", []], ["../../etc/passwd", ["etc", "passwd"]], ["a/./b//c/", ["a", "b", "c"]],
    ["a/../../b", ["b"]], ["dne/../.wh.etc", [".wh.etc"]], ["/localetc/sub/..", ["localetc"]],
  ];
  for (const [name, want] of cases) assert.deepEqual(cleanComponents(name), want, name);
  fc.assert(fc.property(fc.array(fc.constantFrom("a", "b", ".", "..", "", "c.d"), { maxLength: 12 }), (parts) => {
    const out = cleanComponents(parts.join("/"));
    return out.every((c) => c !== "" && c !== "." && c !== "..");
  }), { numRuns: runs(200) });
});

test("whiteout names: opaque, AUFS metadata, ordinary, and the invalid ones", () => {
  assert.deepEqual(parseWhiteout(".wh..wh..opq", "x"), { kind: "opaque" });
  assert.deepEqual(parseWhiteout(".wh..wh.plnk", "x"), { kind: "meta" });
  assert.deepEqual(parseWhiteout(".wh.foo", "x"), { kind: "whiteout", name: "foo" });
  assert.deepEqual(parseWhiteout(".wh.foo.wh.bar", "x"), { kind: "whiteout", name: "foo.wh.bar" });
  assert.equal(parseWhiteout("foo.wh.", "x"), undefined);
  assert.equal(parseWhiteout(".whfoo", "x"), undefined);
  for (const bad of [".wh.", ".wh..", ".wh..."]) assert.throws(() => parseWhiteout(bad, `etc/${bad}`), { code: "EINVAL" }, bad);
});

test("path order puts a directory's entries right after it", () => {
  const sorted = ["/a", "/a.b", "/a/b", "/a/b/c", "/a-b", "/ab", "/b"].sort(comparePaths);
  assert.deepEqual(sorted, ["/a", "/a/b", "/a/b/c", "/a-b", "/a.b", "/ab", "/b"]);
});

test("device numbers round-trip through Linux's makedev encoding", () => {
  assert.equal(makedev(1, 3), 0x103);
  assert.equal(makedev(8, 0), 0x800);
  assert.equal(makedev(259, 65536), 0x10010300);
  fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 2 ** 20 - 1 }), (ma, mi) => {
    const d = makedev(ma, mi);
    return major(d) === ma && minor(d) === mi;
  }), { numRuns: runs(500) });
});

test("PAX records round-trip, binary values included, lengths counting their own digits", () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.stringMatching(/^[a-zA-Z.]{1,20}$/), fc.uint8Array({ maxLength: 300 })), { maxLength: 8 }), (recs) => {
    const back = parsePax(encodePax(recs));
    const want = new Map(recs);
    return back.size === want.size && [...want].every(([k, v]) => Buffer.compare(Buffer.from(back.get(k)!), Buffer.from(v)) === 0);
  }), { numRuns: runs(200) });
  // 98 bytes of record plus 2 digits would be 100, which takes 3 digits: 101.
  assert.equal(new TextDecoder().decode(encodePax([["path", "x".repeat(91)]])).slice(0, 4), "101 ");
});
