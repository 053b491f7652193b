/**
 * PAX extended-header records (POSIX.1-2001), read and written as bytes. tar-stream
 * decodes record values as UTF-8 text, which corrupts binary extended attributes such as
 * `security.capability`; these functions keep them exact.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { storeError } from "../common/errors.ts";
import type { Xattrs } from "./entry.ts";
import { METADATA_LIMIT, tooBig } from "./limits.ts";

/** Records of one extended header, by keyword, values as bytes. */
export type PaxRecords = Map<string, Uint8Array>;

/** GNU tar / Go / containerd spelling of an xattr record: the value is the raw bytes. */
export const SCHILY_XATTR = "SCHILY.xattr.";
/** bsdtar's spelling: URL-encoded name, base64 value. */
const LIBARCHIVE_XATTR = "LIBARCHIVE.xattr.";

const text = new TextDecoder();
const utf8 = new TextEncoder();

/**
 * Parses an extended header's data: records of the form `"<length> <key>=<value>\n"`.
 * Data over `METADATA_LIMIT` is refused (EFBIG); the tar reader refuses such headers
 * before it buffers them.
 */
export function parsePax(buf: Uint8Array, name = "pax header"): PaxRecords {
  if (buf.length > METADATA_LIMIT) throw tooBig("untar", name, "this PAX header", buf.length);
  const out: PaxRecords = new Map();
  let at = 0;
  while (at < buf.length) {
    if (buf[at] === 0) break; // padding some writers leave
    let sp = at;
    while (sp < buf.length && buf[sp] !== 0x20) sp++;
    const length = Number(text.decode(buf.subarray(at, sp)));
    const end = at + length;
    if (!Number.isInteger(length) || length <= sp - at + 1 || end > buf.length || buf[end - 1] !== 0x0a) {
      throw storeError("EINVAL", "untar", name, "malformed PAX record in extended header");
    }
    const eq = buf.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= end) throw storeError("EINVAL", "untar", name, "PAX record without '='");
    out.set(text.decode(buf.subarray(sp + 1, eq)), buf.slice(eq + 1, end - 1));
    at = end;
  }
  return out;
}

/** The text value of a record, if present. */
export function paxText(records: PaxRecords | undefined, key: string): string | undefined {
  const v = records?.get(key);
  return v === undefined ? undefined : text.decode(v);
}

/** Encodes records in order. */
export function encodePax(records: Iterable<[string, string | Uint8Array]>): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (const [key, value] of records) {
    const v = typeof value === "string" ? utf8.encode(value) : value;
    const k = utf8.encode(` ${key}=`);
    const body = k.length + v.length + 1;
    // The length counts its own digits.
    let digits = String(body).length;
    if (String(body + digits).length > digits) digits++;
    const head = utf8.encode(String(body + digits));
    const rec = new Uint8Array(head.length + body);
    rec.set(head, 0);
    rec.set(k, head.length);
    rec.set(v, head.length + k.length);
    rec[rec.length - 1] = 0x0a;
    parts.push(rec);
    total += rec.length;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The extended attributes records carry (both spellings), or undefined for none. */
export function paxXattrs(records: PaxRecords | undefined): Xattrs | undefined {
  if (!records) return undefined;
  let out: Xattrs | undefined;
  for (const [key, value] of records) {
    if (key.startsWith(SCHILY_XATTR)) {
      (out ??= new Map()).set(key.slice(SCHILY_XATTR.length), value);
    } else if (key.startsWith(LIBARCHIVE_XATTR)) {
      const name = decodeURIComponent(key.slice(LIBARCHIVE_XATTR.length));
      (out ??= new Map()).set(name, new Uint8Array(Buffer.from(text.decode(value), "base64")));
    }
  }
  return out;
}
