/**
 * The tar writer makes byte for byte what thinstack's earlier writer made with
 * tar-stream's pack and its two hooks (exact modes, binary PAX values), so layers keep
 * their digests. That writer is kept here as the reference and both write random
 * entries, edge cases included: long, split and non-ASCII names, long link targets,
 * ids and times past ustar's fields, binary xattrs, sizes and device numbers.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import tarStream from "tar-stream";
import type { EntryType } from "../../src/interchange/entry.ts";
import { encodePax, SCHILY_XATTR } from "../../src/interchange/pax.ts";
import { encodeHeader, type WriteEntry } from "../../src/interchange/tarheader.ts";
import { writeTar } from "../../src/interchange/tarwrite.ts";
import { runs } from "../helpers/tmp.ts";

// ---------------------------------------------------------------------------------------
// The reference: the tar-stream based writer as it was (src/interchange/tarwrite.ts before).

const TYPES: Record<EntryType, string> = {
  file: "file", dir: "directory", symlink: "symlink", link: "link", char: "character-device", block: "block-device", fifo: "fifo",
};
const MAX_ID = 0o777777;
const MAX_TIME = 2 ** 31 - 1;

interface PackInternals {
  _encode(this: PackInternals, header: Record<string, unknown>): void;
  push(chunk: Uint8Array): boolean;
}

function hookPack(pack: unknown): void {
  const self = pack as PackInternals;
  const encode = self._encode;
  self._encode = function (header) {
    const extra = header.extra as { mode: number; records: [string, string | Uint8Array][] } | undefined;
    if (!extra) return encode.call(this, header);
    header.mode = extra.mode;
    if (extra.records.length === 0) return encode.call(this, header);
    const linkname = header.linkname as string | undefined;
    const data = encodePax([["path", header.name as string], ...(linkname ? [["linkpath", linkname] as [string, string]] : []), ...extra.records]);
    const base = { ...header, name: "PaxHeader", linkname: linkname ? "PaxHeader" : null, pax: null, extra: undefined };
    encode.call(this, { ...base, type: "pax-header", size: data.length, linkname: null });
    this.push(data);
    if (data.length % 512) this.push(new Uint8Array(512 - (data.length % 512)));
    encode.call(this, base);
  };
}

function toHeader(e: WriteEntry): Record<string, unknown> {
  const records: [string, string | Uint8Array][] = [];
  const seconds = Math.floor(e.mtimeMs / 1000);
  const mtime = Math.min(Math.max(seconds, 0), MAX_TIME);
  if (mtime !== seconds) records.push(["mtime", String(seconds)]);
  if (e.uid > MAX_ID) records.push(["uid", String(e.uid)]);
  if (e.gid > MAX_ID) records.push(["gid", String(e.gid)]);
  for (const [k, v] of [...(e.xattrs ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) records.push([SCHILY_XATTR + k, v]);
  return {
    name: e.type === "dir" && !e.name.endsWith("/") ? `${e.name}/` : e.name,
    type: TYPES[e.type],
    mode: e.mode,
    uid: Math.min(e.uid, MAX_ID),
    gid: Math.min(e.gid, MAX_ID),
    size: e.type === "file" ? e.size ?? 0 : 0,
    mtime: new Date(mtime * 1000),
    linkname: e.linkname ?? null,
    uname: e.uname ?? "",
    gname: e.gname ?? "",
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
    extra: { mode: e.mode, records },
  };
}

/** The archive of `entries` (file data: `size` bytes of a pattern) as the reference writes it. */
async function reference(entries: WriteEntry[]): Promise<Uint8Array> {
  const pack = tarStream.pack();
  hookPack(pack);
  const parts: Uint8Array[] = [];
  const reading = (async () => {
    for await (const c of pack as AsyncIterable<Uint8Array>) parts.push(new Uint8Array(c));
  })();
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry(toHeader(e) as unknown as tarStream.Header, (err) => (err ? reject(err) : resolve()));
      if (e.type === "file") {
        if (e.size) sink.write(pattern(e.size));
        (sink as unknown as { end(): void }).end();
      }
    });
  }
  pack.finalize();
  await reading;
  return concat(parts);
}

// ---------------------------------------------------------------------------------------

function pattern(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 13 + 5) & 0xff;
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function ours(entries: WriteEntry[]): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of writeTar(async (w) => {
    for (const e of entries) await w.add(e, e.type === "file" && e.size ? [pattern(e.size)] : []);
  })) parts.push(c);
  return concat(parts);
}

function sameBytes(got: Uint8Array, want: Uint8Array, what: unknown): void {
  const i = got.findIndex((b, k) => b !== want[k]);
  assert.ok(got.length === want.length && i < 0, `${JSON.stringify(what, (_, v) => (v instanceof Map ? [...v] : v))}: ` +
    `${got.length} vs ${want.length} bytes, first difference at ${i} (block ${Math.floor(i / 512)}, offset ${i % 512})`);
}

const seg = fc.stringMatching(/^[a-z0-9._-]{1,40}$/);
const unicodeSeg = fc.constantFrom("é", "日本語", "ünï", "a\u00a0b", "x".repeat(60), "😀");
const name = fc.oneof(
  { weight: 3, arbitrary: fc.array(seg, { minLength: 1, maxLength: 3 }).map((p) => p.join("/")) },
  // Names long enough to need a prefix, or PAX: some with no '/' to split at.
  { weight: 2, arbitrary: fc.array(seg, { minLength: 3, maxLength: 12 }).map((p) => p.join("/")) },
  { weight: 1, arbitrary: fc.stringMatching(/^[a-z]{101,180}$/) },
  { weight: 1, arbitrary: fc.array(fc.oneof(seg, unicodeSeg), { minLength: 1, maxLength: 5 }).map((p) => p.join("/")) },
);
const id = fc.oneof(fc.constantFrom(0, 1, 1000, MAX_ID, MAX_ID + 1, 65534, 4_000_000_000), fc.nat());
const mtimeMs = fc.oneof(
  fc.constantFrom(0, -1, -86_400_000, 1_700_000_000_123, MAX_TIME * 1000, (MAX_TIME + 1) * 1000, 1e15),
  fc.integer({ min: -1e12, max: 5e12 }),
);
const xattrs = fc.option(fc.array(fc.tuple(fc.constantFrom("user.a", "user.b", "security.capability", "trusted.x", "user.é"), fc.uint8Array({ maxLength: 40 })), { maxLength: 3 })
  .map((kv) => new Map(kv)), { nil: undefined });
const linkname = fc.oneof(seg, fc.stringMatching(/^[a-z/]{90,140}$/), fc.constant(""), unicodeSeg);

const entry: fc.Arbitrary<WriteEntry> = fc.record({
  name,
  type: fc.constantFrom<EntryType>("file", "file", "dir", "symlink", "link", "char", "block", "fifo"),
  mode: fc.oneof(fc.constantFrom(0, 0o644, 0o755, 0o4755, 0o7777, 0o1777), fc.integer({ min: 0, max: 0o7777 })),
  uid: id,
  gid: id,
  mtimeMs,
  size: fc.oneof(fc.constantFrom(0, 1, 511, 512, 513, 1024), fc.integer({ min: 0, max: 3000 })),
  linkname,
  devmajor: fc.oneof(fc.constantFrom(0, 8, 0o777777, 0o1000000), fc.nat(300)),
  devminor: fc.nat(300),
  uname: fc.constantFrom("", "root", "ünïcode"),
  gname: fc.constantFrom("", "wheel"),
  xattrs,
}).map((e) => {
  const out: WriteEntry = { name: e.name, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtimeMs: e.mtimeMs };
  if (e.type === "file") out.size = e.size;
  if (e.type === "symlink" || e.type === "link") out.linkname = e.linkname;
  if (e.type === "char" || e.type === "block") Object.assign(out, { devmajor: e.devmajor, devminor: e.devminor });
  if (e.uname) out.uname = e.uname;
  if (e.gname) out.gname = e.gname;
  if (e.xattrs) out.xattrs = e.xattrs;
  return out;
});

test("headers and archives are byte for byte those of the tar-stream writer they replace", async () => {
  await fc.assert(fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 6 }), async (entries) => {
    sameBytes(await ours(entries), await reference(entries), entries);
  }), { numRuns: runs(300) });
});

test("fixed edge cases match the reference", async () => {
  const base = { mode: 0o644, uid: 0, gid: 0, mtimeMs: 0 };
  const cases: WriteEntry[] = [
    { ...base, name: "a".repeat(100), type: "file", size: 0 },
    { ...base, name: "a".repeat(101), type: "file", size: 0 },
    { ...base, name: `${"d".repeat(155)}/${"f".repeat(100)}`, type: "file", size: 3 },
    { ...base, name: `${"d".repeat(156)}/${"f".repeat(10)}`, type: "file", size: 3 },
    { ...base, name: `${"d".repeat(99)}`, type: "dir" },
    { ...base, name: `${"d".repeat(100)}`, type: "dir" },
    { ...base, name: "l", type: "symlink", linkname: "t".repeat(100) },
    { ...base, name: "l", type: "symlink", linkname: "t".repeat(101) },
    { ...base, name: "l", type: "symlink", linkname: "" },
    { ...base, name: "h", type: "link", linkname: "é".repeat(50) },
    { ...base, name: "h", type: "link", linkname: "é".repeat(51) },
    { ...base, name: "big", type: "file", size: 0, uid: 2 ** 32, gid: MAX_ID },
    { ...base, name: "w", type: "file", size: 0, mode: 0 },
    { ...base, name: "t", type: "file", size: 0, mtimeMs: -1 },
    { ...base, name: "t", type: "file", size: 0, mtimeMs: 999 },
    { ...base, name: "x", type: "file", size: 0, xattrs: new Map([["security.capability", new Uint8Array([1, 0, 0, 2, 0xff, 0xfe])]]) },
  ];
  for (const e of cases) sameBytes(await ours([e]), await reference([e]), e);
  // Sizes past what ustar's octal field holds (8 GiB): base-256, header only.
  const huge: WriteEntry = { ...base, name: "huge", type: "file", size: 2 ** 33 + 7 };
  const pack = tarStream.pack();
  hookPack(pack);
  const want = await new Promise<Uint8Array>((resolve) => {
    (pack as unknown as { push(c: Uint8Array): boolean }).push = (c) => (resolve(new Uint8Array(c)), true);
    pack.entry(toHeader(huge) as unknown as tarStream.Header);
  });
  sameBytes(encodeHeader(huge), want, huge);
});
