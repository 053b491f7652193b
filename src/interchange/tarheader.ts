/**
 * Tar headers as bytes: ustar blocks, with a PAX extended header ahead of them when an
 * entry needs one (long or non-ASCII names, long link targets, ids or times a ustar
 * field cannot hold, extended attributes). The encoding is byte for byte the one
 * thinstack wrote with tar-stream's pack and its hooks before (tests compare the two), so
 * a layer keeps its digest: layer digests are what images are named by.
 *
 * @module
 */
import type { EntryAttrs, EntryType } from "./entry.ts";
import { encodePax, SCHILY_XATTR } from "./pax.ts";

/** An entry to write. Names are written as given (relative, `/`-separated). */
export interface WriteEntry extends EntryAttrs {
  name: string;
  type: EntryType;
  /** Data bytes of a file; the body must supply exactly this many. */
  size?: number;
  /** Symlink target or hard-link target name. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  uname?: string;
  gname?: string;
}

/** Size of a tar block: headers take one, data is padded to a whole number of them. */
export const BLOCK = 512;

/** The ustar type flag of each entry type (`x` is a PAX extended header). */
const TYPEFLAG: Record<EntryType | "pax", number> = {
  file: 0x30, link: 0x31, symlink: 0x32, char: 0x33, block: 0x34, dir: 0x35, fifo: 0x36, pax: 0x78,
};

/** Largest uid/gid written in a ustar field (six octal digits); larger ones go in PAX. */
const MAX_ID = 0o777777;
/** Largest mtime (seconds) written in the ustar field; others go in PAX. */
const MAX_TIME = 2 ** 31 - 1;

const utf8 = new TextEncoder();
const ZEROS = new Uint8Array(BLOCK);

/** The fields of one ustar block. */
interface Fields {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: number;
  linkname: string | null;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}

function byteLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** `value` in octal, zero-padded to `digits` and followed by a space; all sevens if it does not fit. */
function octal(value: number, digits: number): string {
  const s = value.toString(8);
  return s.length > digits ? `${"7".repeat(digits)} ` : `${"0".repeat(digits - s.length)}${s} `;
}

/** Writes ASCII `s` at `at`. */
function ascii(buf: Uint8Array, at: number, s: string): void {
  for (let i = 0; i < s.length; i++) buf[at + i] = s.charCodeAt(i);
}

/** Writes `s` as UTF-8 at `at`, as much of it as fits in the block (whole characters). */
function text(buf: Uint8Array, at: number, s: string): void {
  utf8.encodeInto(s, buf.subarray(at));
}

/**
 * One ustar block, or null when the name or link target does not fit (then a PAX header
 * must carry them). A name longer than 100 bytes is split at a `/` into prefix and name.
 */
function ustar(f: Fields): Uint8Array | null {
  let name = f.name;
  let prefix = "";
  if (byteLength(name) !== name.length) return null; // not ASCII
  while (name.length > 100) {
    const i = name.indexOf("/");
    if (i === -1) return null;
    prefix += prefix ? `/${name.slice(0, i)}` : name.slice(0, i);
    name = name.slice(i + 1);
  }
  if (prefix.length > 155) return null;
  if (f.linkname && byteLength(f.linkname) > 100) return null;
  const buf = new Uint8Array(BLOCK);
  ascii(buf, 0, name);
  ascii(buf, 100, octal(f.mode & 0o7777, 6));
  ascii(buf, 108, octal(f.uid, 6));
  ascii(buf, 116, octal(f.gid, 6));
  if (f.size.toString(8).length > 11) {
    // Base-256, for sizes of 8 GiB and more.
    buf[124] = 0x80;
    for (let i = 11, n = f.size; i > 0; i--, n = Math.floor(n / 0x100)) buf[124 + i] = n % 0x100;
  } else ascii(buf, 124, octal(f.size, 11));
  ascii(buf, 136, octal(f.mtime | 0, 11));
  buf[156] = f.typeflag;
  if (f.linkname) text(buf, 157, f.linkname);
  ascii(buf, 257, "ustar\u000000");
  if (f.uname) text(buf, 265, f.uname);
  if (f.gname) text(buf, 297, f.gname);
  ascii(buf, 329, octal(f.devmajor, 6));
  ascii(buf, 337, octal(f.devminor, 6));
  if (prefix) ascii(buf, 345, prefix);
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += buf[i];
  for (let i = 156; i < BLOCK; i++) sum += buf[i];
  ascii(buf, 148, octal(sum, 6));
  return buf;
}

/** Zero bytes that pad `size` bytes of data to a whole block (empty when none are needed). */
export function padding(size: number): Uint8Array {
  const rest = size % BLOCK;
  return rest ? ZEROS.subarray(0, BLOCK - rest) : ZEROS.subarray(0, 0);
}

/** An extended header `x` entry carrying `data`, then the entry's own block `main`. */
function withPax(pax: Fields, data: Uint8Array, main: Fields): Uint8Array {
  const head = ustar(pax)!;
  const body = ustar(main)!;
  const pad = padding(data.length);
  const out = new Uint8Array(head.length + data.length + pad.length + body.length);
  out.set(head, 0);
  out.set(data, head.length);
  out.set(body, head.length + data.length + pad.length);
  return out;
}

/** A PAX record as tar-stream writes one: `"<length> <text>"`, the length counting its own digits. */
function record(line: string): string {
  const len = byteLength(line);
  let digits = Math.floor(Math.log(len) / Math.log(10)) + 1;
  if (len + digits >= Math.pow(10, digits)) digits++;
  return `${len + digits}${line}`;
}

/**
 * The header of `e`: one ustar block, or a PAX extended header and then the block.
 * Directories get a trailing `/`, as GNU tar and Go write them; times, ids and
 * attributes that ustar cannot hold, and sorted xattrs, go in PAX records.
 *
 * @example
 * ```ts
 * import { encodeHeader } from "./tarheader.ts";
 * const h = encodeHeader({ name: "etc", type: "dir", mode: 0o755, uid: 0, gid: 0, mtimeMs: 0 });
 * console.log(h.length, new TextDecoder().decode(h.subarray(0, 4))); // 512 etc/
 * ```
 */
export function encodeHeader(e: WriteEntry): Uint8Array {
  const records: [string, string | Uint8Array][] = [];
  const seconds = Math.floor(e.mtimeMs / 1000);
  const mtime = Math.min(Math.max(seconds, 0), MAX_TIME);
  if (mtime !== seconds) records.push(["mtime", String(seconds)]);
  if (e.uid > MAX_ID) records.push(["uid", String(e.uid)]);
  if (e.gid > MAX_ID) records.push(["gid", String(e.gid)]);
  // Sorted, so that equal attribute sets give equal bytes.
  for (const [k, v] of [...(e.xattrs ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) records.push([SCHILY_XATTR + k, v]);
  const linkname = e.linkname ?? null;
  const fields: Fields = {
    name: e.type === "dir" && !e.name.endsWith("/") ? `${e.name}/` : e.name,
    mode: e.mode,
    uid: Math.min(e.uid, MAX_ID) || 0,
    gid: Math.min(e.gid, MAX_ID) || 0,
    size: e.type === "file" ? e.size || 0 : 0,
    mtime,
    typeflag: TYPEFLAG[e.type],
    linkname,
    uname: e.uname ?? "",
    gname: e.gname ?? "",
    devmajor: e.devmajor || 0,
    devminor: e.devminor || 0,
  };
  const placeholder = { ...fields, name: "PaxHeader" };
  if (records.length === 0) {
    const plain = ustar(fields);
    if (plain) return plain;
    // Only the name or link target does not fit: path and linkpath records, as text.
    let pax = record(` path=${fields.name}\n`);
    if (linkname) pax += record(` linkpath=${linkname}\n`);
    const data = utf8.encode(pax);
    const link = linkname && "PaxHeader";
    return withPax({ ...placeholder, typeflag: TYPEFLAG.pax, size: data.length, linkname: link }, data, { ...placeholder, linkname: link });
  }
  const data = encodePax([["path", fields.name], ...(linkname ? [["linkpath", linkname] as [string, string]] : []), ...records]);
  return withPax(
    { ...placeholder, typeflag: TYPEFLAG.pax, size: data.length, linkname: null },
    data,
    { ...placeholder, linkname: linkname ? "PaxHeader" : null },
  );
}
