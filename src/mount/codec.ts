/**
 * Reading requests and writing replies of the FUSE protocol: little-endian structs with
 * 64-bit fields (read as numbers: every value this server sees fits in 2^53), names as
 * NUL-terminated UTF-8, directory entries padded to 8 bytes. Layouts are protocol 7.38's
 * (see protocol.ts).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Size } from "./protocol.ts";

const TWO32 = 4294967296;

/** Writes a 64-bit little-endian integer (negative values as two's complement). */
export function setU64(dv: DataView, at: number, n: number): void {
  dv.setUint32(at, n >>> 0, true);
  dv.setUint32(at + 4, Math.floor(n / TWO32) >>> 0, true);
}

/** Reads an unsigned 64-bit little-endian integer. */
export function getU64(dv: DataView, at: number): number {
  return dv.getUint32(at, true) + dv.getUint32(at + 4, true) * TWO32;
}

/** Reads a signed 64-bit little-endian integer. */
export function getI64(dv: DataView, at: number): number {
  return dv.getUint32(at, true) + dv.getInt32(at + 4, true) * TWO32;
}

/**
 * One request as read from /dev/fuse: the header's fields, and a cursor over the body.
 *
 * @example
 * ```ts ignore
 * const req = new Request(buf.subarray(0, n));
 * if (req.opcode === Op.LOOKUP) console.log(req.nodeid, req.cstring());
 * ```
 */
export class Request {
  readonly buf: Buffer;
  readonly dv: DataView;
  readonly len: number;
  readonly opcode: number;
  readonly unique: number;
  readonly nodeid: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** Where the next body field starts. */
  pos: number = Size.IN_HEADER;
  /** What the server noted for the caller before this request (see shared.ts). */
  carried: unknown = undefined;

  constructor(buf: Buffer) {
    this.buf = buf;
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.len = this.dv.getUint32(0, true);
    this.opcode = this.dv.getUint32(4, true);
    this.unique = getU64(this.dv, 8);
    this.nodeid = getU64(this.dv, 16);
    this.uid = this.dv.getUint32(24, true);
    this.gid = this.dv.getUint32(28, true);
    this.pid = this.dv.getUint32(32, true);
  }

  /** The next unsigned 32-bit field. */
  u32(): number {
    const v = this.dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** The next unsigned 64-bit field. */
  u64(): number {
    const v = getU64(this.dv, this.pos);
    this.pos += 8;
    return v;
  }

  /** The next signed 64-bit field. */
  i64(): number {
    const v = getI64(this.dv, this.pos);
    this.pos += 8;
    return v;
  }

  /** Skips `n` bytes (padding, unused fields). */
  skip(n: number): this {
    this.pos += n;
    return this;
  }

  /** The next `n` bytes, as a view into the request. */
  bytes(n: number): Buffer {
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** The next NUL-terminated string (UTF-8). */
  cstring(): string {
    let end = this.buf.indexOf(0, this.pos);
    if (end < 0 || end > this.len) end = this.len;
    const s = this.buf.toString("utf8", this.pos, end);
    this.pos = end + 1;
    return s;
  }
}

/** The attributes of an inode as the kernel wants them (fuse_attr). Times in ms. */
export interface Attr {
  ino: number;
  size: number;
  /** 512-byte blocks allocated. */
  blocks: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksize: number;
}

/** A time in ms as seconds and nanoseconds. */
function splitTime(ms: number): [number, number] {
  const sec = Math.floor(ms / 1000);
  const nsec = Math.min(999_999_999, Math.max(0, Math.round((ms - sec * 1000) * 1e6)));
  return [sec, nsec];
}

/** A timeout in seconds as the kernel's (seconds, nanoseconds) pair. */
function splitTimeout(s: number): [number, number] {
  const sec = Math.floor(s);
  return [sec, Math.round((s - sec) * 1e9)];
}

/**
 * A reply under construction: the out header's 16 bytes are left for the device to fill
 * (length, error, unique), the body follows.
 *
 * @example
 * ```ts ignore
 * const r = Reply.of(Size.WRITE_OUT);
 * r.u32(written).u32(0);
 * device.reply(req.unique, r);
 * ```
 */
export class Reply {
  readonly buf: Buffer;
  readonly dv: DataView;
  pos: number = Size.OUT_HEADER;

  constructor(buf: Buffer) {
    this.buf = buf;
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** A reply with room for `body` bytes (zeroed). */
  static of(body: number): Reply {
    return new Reply(Buffer.alloc(Size.OUT_HEADER + body));
  }

  /** The bytes to write: header and the body written so far. */
  get bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  /** Appends an unsigned 32-bit field. */
  u32(v: number): this {
    this.dv.setUint32(this.pos, v >>> 0, true);
    this.pos += 4;
    return this;
  }

  /** Appends a 64-bit field. */
  u64(v: number): this {
    setU64(this.dv, this.pos, v);
    this.pos += 8;
    return this;
  }

  /** Appends a 16-bit field. */
  u16(v: number): this {
    this.dv.setUint16(this.pos, v, true);
    this.pos += 2;
    return this;
  }

  /** Appends raw bytes. */
  raw(b: Uint8Array): this {
    this.buf.set(b, this.pos);
    this.pos += b.byteLength;
    return this;
  }

  /** Appends zero bytes. */
  pad(n: number): this {
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
    return this;
  }

  /** Appends a fuse_attr. */
  attr(a: Attr): this {
    const [as, an] = splitTime(a.atimeMs);
    const [ms, mn] = splitTime(a.mtimeMs);
    const [cs, cn] = splitTime(a.ctimeMs);
    this.u64(a.ino).u64(a.size).u64(a.blocks).u64(as).u64(ms).u64(cs);
    this.u32(an).u32(mn).u32(cn).u32(a.mode).u32(a.nlink).u32(a.uid).u32(a.gid).u32(a.rdev).u32(a.blksize).u32(0);
    return this;
  }

  /** Appends a fuse_entry_out: node id, timeouts in seconds, attributes. */
  entry(nodeid: number, entryTimeout: number, attrTimeout: number, a: Attr | undefined): this {
    const [es, en] = splitTimeout(entryTimeout);
    const [as, an] = splitTimeout(attrTimeout);
    this.u64(nodeid).u64(0).u64(es).u64(as).u32(en).u32(an);
    if (a) this.attr(a);
    else this.pad(Size.ATTR);
    return this;
  }

  /** Appends a fuse_attr_out. */
  attrOut(attrTimeout: number, a: Attr): this {
    const [as, an] = splitTimeout(attrTimeout);
    return this.u64(as).u32(an).u32(0).attr(a);
  }

  /** Appends a fuse_dirent (padded); false (nothing written) when it does not fit in `limit` bytes of body. */
  dirent(ino: number, off: number, type: number, name: Uint8Array, limit: number): boolean {
    const size = direntSize(name.byteLength);
    if (this.pos - Size.OUT_HEADER + size > limit) return false;
    this.u64(ino).u64(off).u32(name.byteLength).u32(type).raw(name).pad(size - Size.DIRENT - name.byteLength);
    return true;
  }
}

/** Bytes of a fuse_dirent with a name of `n` bytes, padded to 8. */
export function direntSize(n: number): number {
  return (Size.DIRENT + n + 7) & ~7;
}

/** Bytes of a fuse_direntplus with a name of `n` bytes, padded to 8. */
export function direntPlusSize(n: number): number {
  return Size.ENTRY_OUT + direntSize(n);
}
