/**
 * Open flags, as Node's `fs.open` takes them: strings such as `"r+"` or `"wx"`, or the
 * numeric `fs.constants` bits.
 *
 * @module
 */
import { constants } from "node:fs";
import { storeError } from "../common/errors.ts";

/** What an open asks for. */
export interface OpenFlags {
  read: boolean;
  write: boolean;
  create: boolean;
  exclusive: boolean;
  truncate: boolean;
  append: boolean;
  /** Fail with ELOOP rather than follow a symbolic link at the end of the path. */
  noFollow: boolean;
}

const named: Record<string, number> = {
  "r": constants.O_RDONLY,
  "rs": constants.O_RDONLY,
  "sr": constants.O_RDONLY,
  "r+": constants.O_RDWR,
  "rs+": constants.O_RDWR,
  "sr+": constants.O_RDWR,
  "w": constants.O_TRUNC | constants.O_CREAT | constants.O_WRONLY,
  "wx": constants.O_TRUNC | constants.O_CREAT | constants.O_WRONLY | constants.O_EXCL,
  "xw": constants.O_TRUNC | constants.O_CREAT | constants.O_WRONLY | constants.O_EXCL,
  "w+": constants.O_TRUNC | constants.O_CREAT | constants.O_RDWR,
  "wx+": constants.O_TRUNC | constants.O_CREAT | constants.O_RDWR | constants.O_EXCL,
  "xw+": constants.O_TRUNC | constants.O_CREAT | constants.O_RDWR | constants.O_EXCL,
  "w+x": constants.O_TRUNC | constants.O_CREAT | constants.O_RDWR | constants.O_EXCL,
  "a": constants.O_APPEND | constants.O_CREAT | constants.O_WRONLY,
  "as": constants.O_APPEND | constants.O_CREAT | constants.O_WRONLY,
  "sa": constants.O_APPEND | constants.O_CREAT | constants.O_WRONLY,
  "ax": constants.O_APPEND | constants.O_CREAT | constants.O_WRONLY | constants.O_EXCL,
  "xa": constants.O_APPEND | constants.O_CREAT | constants.O_WRONLY | constants.O_EXCL,
  "a+": constants.O_APPEND | constants.O_CREAT | constants.O_RDWR,
  "as+": constants.O_APPEND | constants.O_CREAT | constants.O_RDWR,
  "sa+": constants.O_APPEND | constants.O_CREAT | constants.O_RDWR,
  "ax+": constants.O_APPEND | constants.O_CREAT | constants.O_RDWR | constants.O_EXCL,
  "xa+": constants.O_APPEND | constants.O_CREAT | constants.O_RDWR | constants.O_EXCL,
  "a+x": constants.O_APPEND | constants.O_CREAT | constants.O_RDWR | constants.O_EXCL,
};

/**
 * Parses open flags.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * console.log(parseFlags("wx").exclusive); // true
 * ```
 */
export function parseFlags(flags: string | number = "r"): OpenFlags {
  const bits = typeof flags === "number" ? flags : named[flags];
  if (bits === undefined) throw storeError("EINVAL", "open", undefined, `unknown open flags '${flags}'`);
  const access = bits & 3;
  return {
    read: access === constants.O_RDONLY || access === constants.O_RDWR,
    write: access === constants.O_WRONLY || access === constants.O_RDWR,
    create: (bits & constants.O_CREAT) !== 0,
    exclusive: (bits & constants.O_EXCL) !== 0,
    truncate: (bits & constants.O_TRUNC) !== 0,
    append: (bits & constants.O_APPEND) !== 0,
    noFollow: (bits & (constants.O_NOFOLLOW ?? 0)) !== 0,
  };
}
