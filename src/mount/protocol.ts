/**
 * The FUSE kernel protocol's numbers, as Linux's `include/uapi/linux/fuse.h` defines them
 * at protocol 7.38 (the version this server speaks: newer kernels talk 7.38 to it, and
 * every struct below has its 7.38 layout). Only what the server uses is here.
 *
 * @module
 */

/** Protocol major version. */
export const KERNEL_VERSION = 7;
/** The minor version this server speaks (the kernel adapts to it). */
export const KERNEL_MINOR_VERSION = 38;
/** The lowest minor version whose struct layouts this server reads. */
export const MIN_KERNEL_MINOR_VERSION = 31;
/** Node id of the root directory. */
export const ROOT_ID = 1;

/** Opcodes of requests. */
export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SYNCFS: 50,
  TMPFILE: 51,
} as const;

/** Names of the opcodes, for logs. */
export const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k]));

/** INIT flags (fuse_init_in.flags and fuse_init_out.flags). */
export const Init = {
  ASYNC_READ: 1 << 0,
  POSIX_LOCKS: 1 << 1,
  ATOMIC_O_TRUNC: 1 << 3,
  EXPORT_SUPPORT: 1 << 4,
  BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6,
  FLOCK_LOCKS: 1 << 10,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16,
  PARALLEL_DIROPS: 1 << 18,
  HANDLE_KILLPRIV: 1 << 19,
  HANDLE_KILLPRIV_V2: 1 << 28,
  ABORT_ERROR: 1 << 21,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  INIT_EXT: 1 << 30,
} as const;

/** fuse_open_out.open_flags. */
export const Fopen = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
} as const;

/** fuse_setattr_in.valid bits. */
export const Fattr = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

/** Notification codes (sent with unique 0, the code in the error field). */
export const Notify = {
  INVAL_INODE: 2,
  INVAL_ENTRY: 3,
  DELETE: 6,
} as const;

/** fuse_getattr_in.getattr_flags: `fh` is valid. */
export const GETATTR_FH = 1 << 0;
/** fuse_fsync_in.fsync_flags: data only. */
export const FSYNC_FDATASYNC = 1 << 0;
/** fuse_write_in.write_flags: a page cache writeback (the handle is a guess). */
export const WRITE_CACHE = 1 << 0;
/** fuse_write_in.write_flags: the writer may not keep set-user/group-ID bits (HANDLE_KILLPRIV_V2). */
export const WRITE_KILL_SUIDGID = 1 << 2;
/** fuse_open_in.open_flags: an O_TRUNC open by a writer that may not keep set-user/group-ID bits. */
export const OPEN_KILL_SUIDGID = 1 << 0;

/** renameat2 flags (fuse_rename2_in.flags). */
export const Rename = { NOREPLACE: 1 << 0, EXCHANGE: 1 << 1, WHITEOUT: 1 << 2 } as const;
/** setxattr flags. */
export const Xattr = { CREATE: 1, REPLACE: 2 } as const;
/** fallocate modes. */
export const Falloc = { KEEP_SIZE: 0x01, PUNCH_HOLE: 0x02, ZERO_RANGE: 0x10 } as const;
/** lseek whence values the kernel passes on (the others it answers itself). */
export const Seek = { DATA: 3, HOLE: 4 } as const;

/** open(2) flags, x86-64 / generic Linux values. */
export const O = {
  ACCMODE: 0o3,
  RDONLY: 0o0,
  WRONLY: 0o1,
  RDWR: 0o2,
  CREAT: 0o100,
  EXCL: 0o200,
  TRUNC: 0o1000,
  APPEND: 0o2000,
} as const;

/** Sizes of the fixed structs (bytes). */
export const Size = {
  IN_HEADER: 40,
  OUT_HEADER: 16,
  ATTR: 88,
  ENTRY_OUT: 128,
  ATTR_OUT: 104,
  OPEN_OUT: 16,
  WRITE_IN: 40,
  WRITE_OUT: 8,
  STATFS_OUT: 80,
  INIT_OUT: 64,
  DIRENT: 24,
  GETXATTR_OUT: 8,
  LSEEK_OUT: 8,
  NOTIFY_INVAL_ENTRY: 16,
  NOTIFY_INVAL_INODE: 24,
} as const;

/** Bytes one request may carry beyond `max_write`: the header and the largest fixed part. */
export const HEADER_ROOM = 4096;

/** Linux errno values the server answers with. */
export const Errno: Record<string, number> = {
  EPERM: 1, ENOENT: 2, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, EBADF: 9, EAGAIN: 11, ENOMEM: 12,
  EACCES: 13, ENOTBLK: 15, EBUSY: 16, EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22,
  EFBIG: 27, ENOSPC: 28, EROFS: 30, EMLINK: 31, ERANGE: 34, ENAMETOOLONG: 36, ENOSYS: 38,
  ENOTEMPTY: 39, ELOOP: 40, ENODATA: 61, EOPNOTSUPP: 95, ENOTSUP: 95, ECONNABORTED: 103,
  ENOTCONN: 107, ESTALE: 116,
};

/**
 * The errno to answer for an error: its `code` if it has one the kernel knows (the layer
 * store's errors are Node-style), EIO otherwise.
 *
 * @example
 * ```ts
 * import { errnoOf } from "./protocol.ts";
 * console.log(errnoOf(Object.assign(new Error("x"), { code: "ENOENT" }))); // 2
 * ```
 */
export function errnoOf(e: unknown): number {
  const code = typeof e === "object" && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof code === "string" && Errno[code] !== undefined ? Errno[code] : Errno.EIO;
}
