/**
 * Inodes: what a directory entry points at. An inode number is unique across the whole
 * store, so an inode copied up into an upper layer keeps its number and every hardlink
 * to it, in any layer, sees the copy.
 *
 * @module
 */

/** An inode number, unique across the store; 0 never names an inode. */
export type Ino = number;

/** The value of a directory entry that hides the same name in the layers below. */
export const WHITEOUT: Ino = 0;

/** File type bits of `mode`, as in `st_mode`. */
export const S_IFMT = 0o170000;
/** A regular file. */
export const S_IFREG = 0o100000;
/** A directory. */
export const S_IFDIR = 0o040000;
/** A symbolic link. */
export const S_IFLNK = 0o120000;
/** A character device. */
export const S_IFCHR = 0o020000;
/** A block device. */
export const S_IFBLK = 0o060000;
/** A named pipe. */
export const S_IFIFO = 0o010000;
/** A socket (kept for images that carry one; nothing listens on it). */
export const S_IFSOCK = 0o140000;

/** Bytes of one page: the unit of file data placement in a layer's device. */
export const PAGE = 4096;

/**
 * Files up to this size keep their bytes in the inode itself, so small files cost
 * metadata only and never a device block.
 */
export const INLINE_MAX = 2048;

/** A run of a file's pages stored contiguously in the layer's device, all in pages. */
export interface Extent {
  /** First page of the file. */
  page: number;
  /** First page of the device. */
  dev: number;
  count: number;
}

/** One inode. Times are milliseconds since the epoch, as `Stats.mtimeMs`. */
export interface Inode {
  /** Type and permission bits, as `st_mode`. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  birthtimeMs: number;
  /** Device number of a character or block device. */
  rdev: number;
  /** Target of a symbolic link. */
  target?: string;
  /** Data of a small regular file; when absent the data is in `extents`. */
  inline?: Uint8Array;
  /** Pages of a regular file in the layer's device, sorted by file page; holes read as zeros. */
  extents?: Extent[];
  xattrs?: Map<string, Uint8Array>;
}

/** True for a directory's mode. */
export const isDir = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;
/** True for a regular file's mode. */
export const isReg = (mode: number): boolean => (mode & S_IFMT) === S_IFREG;
/** True for a symbolic link's mode. */
export const isLink = (mode: number): boolean => (mode & S_IFMT) === S_IFLNK;

/**
 * A new inode of the given full mode (type and permissions), owned by root, with one
 * link (two for a directory: its entry and its `.`).
 *
 * @example
 * ```ts
 * import { newInode, S_IFREG } from "./inode.ts";
 * const file = newInode(S_IFREG | 0o644, Date.now());
 * console.log(file.nlink, file.size); // 1 0
 * ```
 */
export function newInode(mode: number, now: number): Inode {
  const inode: Inode = {
    mode, uid: 0, gid: 0, size: 0, nlink: isDir(mode) ? 2 : 1,
    atimeMs: now, mtimeMs: now, ctimeMs: now, birthtimeMs: now, rdev: 0,
  };
  if (isReg(mode)) inode.inline = new Uint8Array(0);
  return inode;
}

/**
 * A copy that can be changed without touching the original: the copy-up of an inode
 * into an upper layer. Inline bytes are shared, since they are replaced, never changed
 * in place.
 *
 * @example
 * ```ts
 * import { cloneInode, newInode, S_IFREG } from "./inode.ts";
 * const lower = newInode(S_IFREG | 0o644, 0);
 * const upper = cloneInode(lower);
 * upper.mode = S_IFREG | 0o600;
 * console.log((lower.mode & 0o777).toString(8)); // 644
 * ```
 */
export function cloneInode(inode: Inode): Inode {
  const copy: Inode = { ...inode };
  if (inode.extents) copy.extents = inode.extents.map((e) => ({ ...e }));
  if (inode.xattrs) copy.xattrs = new Map(inode.xattrs);
  return copy;
}

/**
 * The stored form: a positional array, since an image layer holds tens of thousands of
 * inodes and field names would be most of their bytes.
 * `[mode, uid, gid, size, nlink, atime, mtime, ctime, birthtime, rdev, payload, xattrs?]`,
 * payload being the link target, the inline bytes, or extents as flat `page, dev, count`.
 */
export type StoredInode = [number, number, number, number, number, number, number, number, number, number, string | Uint8Array | number[] | null, Record<string, Uint8Array>?];

/**
 * Encodes an inode for a metadata file.
 *
 * @example
 * ```ts
 * import { decodeInode, encodeInode, newInode, S_IFDIR } from "./inode.ts";
 * const dir = newInode(S_IFDIR | 0o755, 0);
 * console.log(decodeInode(encodeInode(dir)).nlink); // 2
 * ```
 */
export function encodeInode(n: Inode): StoredInode {
  let payload: StoredInode[10] = null;
  if (n.target !== undefined) payload = n.target;
  else if (n.inline) payload = n.inline;
  else if (n.extents) payload = n.extents.flatMap((e) => [e.page, e.dev, e.count]);
  const out: StoredInode = [n.mode, n.uid, n.gid, n.size, n.nlink, n.atimeMs, n.mtimeMs, n.ctimeMs, n.birthtimeMs, n.rdev, payload];
  if (n.xattrs && n.xattrs.size > 0) out.push(Object.fromEntries(n.xattrs));
  return out;
}

/**
 * Decodes what {@linkcode encodeInode} stored.
 *
 * @example
 * ```ts
 * import { decodeInode } from "./inode.ts";
 * console.log(decodeInode([0o120777, 0, 0, 2, 1, 0, 0, 0, 0, 0, "/x"]).target); // /x
 * ```
 */
export function decodeInode(s: StoredInode): Inode {
  const [mode, uid, gid, size, nlink, atimeMs, mtimeMs, ctimeMs, birthtimeMs, rdev, payload, xattrs] = s;
  const n: Inode = { mode, uid, gid, size, nlink, atimeMs, mtimeMs, ctimeMs, birthtimeMs, rdev };
  if (typeof payload === "string") n.target = payload;
  else if (payload instanceof Uint8Array) n.inline = new Uint8Array(payload);
  else if (Array.isArray(payload)) {
    n.extents = [];
    for (let i = 0; i < payload.length; i += 3) n.extents.push({ page: payload[i], dev: payload[i + 1], count: payload[i + 2] });
  } else if (isReg(mode)) n.inline = new Uint8Array(0);
  if (xattrs) n.xattrs = new Map(Object.entries(xattrs).map(([k, v]) => [k, new Uint8Array(v)]));
  return n;
}
