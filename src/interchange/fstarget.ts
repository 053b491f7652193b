/**
 * A layer target and merged view over any object shaped after `node:fs/promises` plus
 * `mknod` and the xattr calls — what the layer store's `store.fs(key)` offers — so that
 * wiring `apply`, `diff` and `checkout` to the store is one call.
 *
 * @module
 */
import { hasCode, storeError } from "../common/errors.ts";
import { CHUNK_SIZE, giveChunk, takeChunk } from "./chunks.ts";
import type { EntryAttrs, EntryStat, Xattrs } from "./entry.ts";
import type { LayerTarget, NewEntry } from "./target.ts";
import type { MergedView } from "./view.ts";

/** Stats as `lstat` gives them: the type in `mode`'s S_IFMT bits, as Node has it. */
export interface FsStats {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino: number | bigint;
  rdev: number;
  mtimeMs: number;
  ctimeMs?: number;
}

/** An open file, as `fs.promises.FileHandle`. */
export interface FsHandle {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  close(): Promise<void>;
}

/**
 * The calls used, as `node:fs/promises` names them (plus mknod and xattrs, as the layer
 * store has them). As in the layer store, an entry made by `open`, `mkdir` or `mknod`
 * gets exactly the mode given (no umask) and owner 0:0, which saves calls per entry.
 */
export interface FsLike {
  lstat(path: string): Promise<FsStats>;
  readdir(path: string): Promise<string[]>;
  readlink(path: string): Promise<string>;
  open(path: string, flags: string, mode?: number): Promise<FsHandle>;
  mkdir(path: string, options: { mode: number }): Promise<unknown>;
  symlink(target: string, path: string): Promise<void>;
  link(existing: string, path: string): Promise<void>;
  lchown(path: string, uid: number, gid: number): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  lutimes(path: string, atime: number, mtime: number): Promise<void>;
  rm(path: string, options: { recursive: boolean; force?: boolean }): Promise<void>;
  mknod?(path: string, mode: number, rdev: number): Promise<void>;
  listxattr?(path: string): Promise<string[]>;
  getxattr?(path: string, name: string): Promise<Uint8Array | undefined>;
  setxattr?(path: string, name: string, value: Uint8Array): Promise<void>;
  removexattr?(path: string, name: string): Promise<void>;
}

const S_IFMT = 0o170000;
const TYPES: Record<number, EntryStat["type"]> = {
  0o100000: "file",
  0o040000: "dir",
  0o120000: "symlink",
  0o020000: "char",
  0o060000: "block",
  0o010000: "fifo",
  0o140000: "socket",
};
const IFMT: Record<string, number> = { char: 0o020000, block: 0o060000, fifo: 0o010000 };

/**
 * `fs` as a layer target and view. Devices and FIFOs need `fs.mknod`, xattrs
 * `fs.setxattr`; without them such entries fail with EINVAL naming what is missing.
 *
 * @example
 * ```ts ignore
 * await applyTar(fsTarget(store.fs("extract-1")), "layer.tar.gz");
 * ```
 */
export function fsTarget(fs: FsLike): LayerTarget & MergedView {
  async function attrs(path: string, a: EntryAttrs, type: string): Promise<void> {
    await fs.lchown(path, a.uid, a.gid);
    // chmod follows symlinks, and a symlink's own mode means nothing on Linux.
    if (type !== "symlink") await fs.chmod(path, a.mode & 0o7777);
    await fs.lutimes(path, a.mtimeMs / 1000, a.mtimeMs / 1000);
    await setXattrs(path, a.xattrs);
  }

  async function setXattrs(path: string, xattrs: Xattrs | undefined): Promise<void> {
    const old = fs.listxattr ? await fs.listxattr(path) : [];
    for (const name of old) if (!xattrs?.has(name)) await fs.removexattr!(path, name);
    if (!xattrs?.size) return;
    if (!fs.setxattr) throw storeError("EINVAL", "setxattr", path, "this layer cannot hold extended attributes");
    for (const [name, value] of xattrs) await fs.setxattr(path, name, value);
  }

  return {
    async lstat(path) {
      try {
        const s = await fs.lstat(path);
        const type = TYPES[s.mode & S_IFMT] ?? "file";
        return { type, mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, size: s.size, nlink: s.nlink, ino: s.ino, rdev: s.rdev, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs };
      } catch (e) {
        if (hasCode(e, "ENOENT") || hasCode(e, "ENOTDIR")) return undefined;
        throw e;
      }
    },
    readdir: (path) => fs.readdir(path),
    readlink: (path) => fs.readlink(path),
    async *read(path) {
      const fh = await fs.open(path, "r");
      try {
        for (let at = 0;;) {
          // A chunk the consumer may give back (chunks.ts); one it keeps stays its own.
          const buf = takeChunk();
          const { bytesRead } = await fh.read(buf, 0, CHUNK_SIZE, at);
          if (bytesRead === 0) {
            giveChunk(buf);
            return;
          }
          at += bytesRead;
          yield bytesRead === CHUNK_SIZE ? buf : buf.subarray(0, bytesRead);
        }
      } finally {
        await fh.close();
      }
    },
    async xattrs(path) {
      if (!fs.listxattr || !fs.getxattr) return undefined;
      const out: Xattrs = new Map();
      for (const name of await fs.listxattr(path)) out.set(name, (await fs.getxattr(path, name))!);
      return out;
    },
    async create(path: string, entry: NewEntry, a: EntryAttrs) {
      switch (entry.type) {
        case "dir":
          await fs.mkdir(path, { mode: a.mode & 0o7777 });
          break;
        case "file": {
          const fh = await fs.open(path, "wx", a.mode & 0o7777);
          try {
            await writeCoalesced(fh, entry.data);
          } finally {
            await fh.close();
          }
          break;
        }
        case "symlink":
          await fs.symlink(entry.target, path);
          break;
        default:
          if (!fs.mknod) throw storeError("EINVAL", "mknod", path, `this layer cannot hold ${entry.type} entries (no mknod)`);
          await fs.mknod(path, IFMT[entry.type] | (a.mode & 0o7777), entry.type === "fifo" ? 0 : entry.rdev);
      }
      // The mode is set and the owner is root already: only what differs is set.
      if (a.uid !== 0 || a.gid !== 0) await fs.lchown(path, a.uid, a.gid);
      await fs.lutimes(path, a.mtimeMs / 1000, a.mtimeMs / 1000);
      if (a.xattrs?.size) await setXattrs(path, a.xattrs);
    },
    link: (existing, path) => fs.link(existing, path),
    async setAttrs(path, a) {
      await attrs(path, a, TYPES[(await fs.lstat(path)).mode & S_IFMT]);
    },
    remove: (path) => fs.rm(path, { recursive: true }),
  };
}

/**
 * Writes `data` to `fh` from offset 0 in writes of up to {@linkcode CHUNK_SIZE}: a tar read
 * from a pipe comes in 64 KiB pieces, and each write to a layer is a round trip to its
 * block I/O workers, so sixteen pieces go as one (a copy costs far less than a trip).
 */
async function writeCoalesced(fh: FsHandle, data: AsyncIterable<Uint8Array>): Promise<void> {
  let at = 0;
  let buf: Uint8Array | undefined;
  let filled = 0;
  const put = async (bytes: Uint8Array) => {
    for (let off = 0; off < bytes.length;) off += (await fh.write(bytes, off, bytes.length - off, at + off)).bytesWritten;
    at += bytes.length;
  };
  try {
    for await (const chunk of data) {
      if (chunk.length >= CHUNK_SIZE / 2 && !filled) {
        await put(chunk); // big enough alone: no copy
        continue;
      }
      buf ??= takeChunk();
      for (let from = 0; from < chunk.length;) {
        const n = Math.min(chunk.length - from, CHUNK_SIZE - filled);
        buf.set(chunk.subarray(from, from + n), filled);
        filled += n;
        from += n;
        if (filled === CHUNK_SIZE) {
          await put(buf);
          filled = 0;
        }
      }
    }
    if (filled) await put(buf!.subarray(0, filled));
  } finally {
    if (buf) giveChunk(buf);
  }
}
