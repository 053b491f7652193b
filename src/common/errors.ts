/**
 * Errors shaped like Node's fs errors: `code`, `errno`, `syscall`, `path`, and a
 * message such as `ENOENT: no such file or directory, open '/x'`, followed by a
 * sentence that says what to do.
 *
 * @module
 */

/** The error codes thinstack raises, as Node's fs does. */
export type ErrorCode =
  | "ENOENT" | "EEXIST" | "ENOTDIR" | "EISDIR" | "ENOTEMPTY" | "EROFS"
  | "ENOSPC" | "EBUSY" | "EINVAL" | "EIO" | "ELOOP" | "EXDEV" | "EPERM"
  | "EACCES" | "EBADF" | "ENAMETOOLONG" | "EMLINK" | "EFBIG" | "ENOTBLK" | "ENODATA" | "ENXIO"
  | "EOPNOTSUPP" | "ERANGE" | "ESTALE" | "ENOSYS" | "ENOTCONN" | "ENODEV"
  | "ECONNREFUSED" | "ECONNRESET" | "ETIMEDOUT" | "EPROTO";

const descriptions: Record<ErrorCode, [string, number]> = {
  ENOENT: ["no such file or directory", -2],
  EEXIST: ["file already exists", -17],
  ENOTDIR: ["not a directory", -20],
  EISDIR: ["illegal operation on a directory", -21],
  ENOTEMPTY: ["directory not empty", -39],
  EROFS: ["read-only file system", -30],
  ENOSPC: ["no space left on device", -28],
  EBUSY: ["resource busy or locked", -16],
  EINVAL: ["invalid argument", -22],
  EIO: ["i/o error", -5],
  ELOOP: ["too many symbolic links encountered", -40],
  EXDEV: ["cross-device link not permitted", -18],
  EPERM: ["operation not permitted", -1],
  EACCES: ["permission denied", -13],
  EBADF: ["bad file descriptor", -9],
  ENAMETOOLONG: ["name too long", -36],
  EMLINK: ["too many links", -31],
  EFBIG: ["file too large", -27],
  ENOTBLK: ["block device required", -15],
  ENODATA: ["no data available", -61],
  ENXIO: ["no such device or address", -6],
  EOPNOTSUPP: ["operation not supported on socket", -95],
  ERANGE: ["result too large", -34],
  ESTALE: ["stale file handle", -116],
  ENOSYS: ["function not implemented", -38],
  ENOTCONN: ["socket is not connected", -107],
  ENODEV: ["no such device", -19],
  ECONNREFUSED: ["connection refused", -111],
  ECONNRESET: ["connection reset by peer", -104],
  ETIMEDOUT: ["connection timed out", -110],
  EPROTO: ["protocol error", -71],
};

/** An Error with Node's fs error fields. */
export interface StoreError extends Error {
  /** The error code, such as `ENOENT`. */
  code: ErrorCode;
  /** The negated Linux errno of `code`, as Node gives it (`ENOENT` is -2). */
  errno: number;
  /** The operation that failed, as Node names it: `open`, `scandir`, or a store call. */
  syscall: string;
  /** The path, layer, device or pool the operation was on, when there is one. */
  path?: string;
}

/**
 * Makes an error in Node's format.
 *
 * @example
 * ```ts
 * import { storeError } from "thinstack";
 * const e = storeError("ENOENT", "open", "/x");
 * console.log(e.message); // ENOENT: no such file or directory, open '/x'
 * ```
 */
export function storeError(code: ErrorCode, syscall: string, path?: string | number, hint?: string): StoreError {
  const [text, errno] = descriptions[code];
  const where = path === undefined ? "" : ` '${path}'`;
  const err = new Error(`${code}: ${text}, ${syscall}${where}${hint ? `: ${hint}` : ""}`) as StoreError;
  err.code = code;
  err.errno = errno;
  err.syscall = syscall;
  if (path !== undefined) err.path = String(path);
  return err;
}

/** True when `e` is an error carrying `code`. */
export function hasCode(e: unknown, code: ErrorCode | string): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === code;
}
