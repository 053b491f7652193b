/**
 * A layer's files, through an object shaped after `node:fs/promises`. Reads see the
 * union of the layer and the layers below; writes go to the layer alone and fail with
 * EROFS on views and committed layers.
 *
 * Durability: changes are in memory until the next commit of the store — `sync()`, any
 * lifecycle call (prepare, view, commit, remove, update) or `close()` — as a file
 * system's writes wait for fsync. A crash loses what came after the last commit and
 * nothing before it.
 *
 * Beyond Node's API: `mknod` (devices and fifos, which image layers carry) and extended
 * attributes (`getxattr`, `setxattr`, `listxattr`, `removexattr`, on the entry itself,
 * as the `l*xattr` calls). Permissions are not checked: callers act as root.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { constants } from "node:fs";
import { hasCode, storeError } from "../common/errors.ts";
import { LayerFileHandle, toBytes } from "./filehandle.ts";
import { readData, truncateData, writeData } from "./fileio.ts";
import { type OpenFlags, parseFlags } from "./flags.ts";
import type { ChangedName, LayerChange } from "./holds.ts";
import type { FsHost } from "./host.ts";
import { type Ino, type Inode, isDir, isLink, isReg, newInode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from "./inode.ts";
import type { Layer } from "./layer.ts";
import { components, join, type LayerPath, ROOT } from "./path.ts";
import type { Resolved } from "./resolve.ts";
import { LayerDirent, LayerStats } from "./stats.ts";
import type { LayerTree } from "./tree.ts";

/**
 * The names a change touches, for the layer's holders (see holds.ts): `paths` resolved
 * as the call resolves them (`follow`: the last component's symbolic link too), and for a
 * rename of a directory, where it moved.
 */
interface Touched {
  readonly paths: readonly string[];
  readonly follow: boolean;
  readonly moved?: () => { from: LayerPath; to: LayerPath } | undefined;
}

/** Where a touched path leads at one moment. */
interface Peeked {
  dir: LayerPath;
  dirIno: Ino;
  name: string;
  ino: Ino;
  inode: Inode | undefined;
}

/** File contents as the calls take them. */
export type FileData = string | ArrayBufferView;
/** A time as `utimes` takes it: seconds since the epoch, a numeric string, or a Date. */
export type TimeLike = number | string | Date;
/** Options of `readFile`. */
export type ReadFileOptions = BufferEncoding | { encoding?: BufferEncoding | null; flag?: string };
/** Options of `writeFile` and `appendFile`. */
export type WriteFileOptions = BufferEncoding | { encoding?: BufferEncoding | null; mode?: number; flag?: string };

function toMs(t: TimeLike): number {
  if (t instanceof Date) return t.getTime();
  if (typeof t === "number") return t * 1000;
  const n = Number(t);
  return Number.isFinite(n) ? n * 1000 : Date.parse(t);
}

function encodingOf(options: ReadFileOptions | WriteFileOptions | undefined): BufferEncoding | undefined {
  if (typeof options === "string") return options;
  return options?.encoding ?? undefined;
}

/**
 * The files of one layer.
 *
 * @example
 * ```ts ignore
 * const fs = store.fs("container-1");
 * await fs.mkdir("/etc", { recursive: true });
 * await fs.writeFile("/etc/hostname", "web-1\n");
 * console.log(await fs.readFile("/etc/hostname", "utf8"));
 * await store.sync(); // durable from here
 * ```
 */
export class LayerFs {
  readonly #host: FsHost;
  #current: Layer;

  /** For the store: callers get a layer's files from `LayerStore.fs`. */
  constructor(host: FsHost, layer: Layer) {
    this.#host = host;
    this.#current = layer;
  }

  /** The layer, following a transaction's replacement: an fs object outlives an apply. */
  get #layer(): Layer {
    while (this.#current.replacedBy) this.#current = this.#current.replacedBy;
    return this.#current;
  }

  #resolve(path: string, follow: boolean, syscall: string): Resolved {
    return this.#host.view.resolve(this.#layer, path, follow, syscall);
  }

  #existing(path: string, follow: boolean, syscall: string): Resolved & { inode: Inode } {
    const r = this.#resolve(path, follow, syscall);
    if (!r.ino || !r.inode) throw storeError("ENOENT", syscall, path);
    return r as Resolved & { inode: Inode };
  }

  #read<T>(syscall: string, fn: () => T | Promise<T>): Promise<T> {
    return this.#host.reading(this.#layer, syscall, fn);
  }

  /**
   * Runs a change under the store's lock. When something holding the layer (a mount)
   * watches it, the names the change touches are resolved before and after it, still
   * under the lock, and told to the holders once the lock is released (the change has
   * happened even if it failed part way). Nothing of this runs for an unwatched layer.
   */
  async #write<T>(syscall: string, path: string, fn: (tree: LayerTree) => T | Promise<T>, touched: Touched = { paths: [path], follow: false }): Promise<T> {
    const layer = this.#layer;
    if (!this.#host.watched(layer)) return await this.#host.writing(layer, syscall, path, fn);
    let change: LayerChange | undefined;
    try {
      return await this.#host.writing(layer, syscall, path, async (tree) => {
        const before = touched.paths.map((p) => this.#peek(layer, p, touched.follow));
        try {
          return await fn(tree);
        } finally {
          const names: ChangedName[] = [];
          touched.paths.forEach((p, i) => {
            const was = before[i];
            const now = this.#peek(layer, p, touched.follow);
            const at = now ?? was;
            if (!at) return;
            names.push({ dir: at.dir, dirIno: at.dirIno, name: at.name, before: was?.ino ?? 0, was: was?.inode, after: now?.ino ?? 0 });
          });
          change = { names, moved: touched.moved?.() };
        }
      });
    } finally {
      if (change) await this.#host.changed(layer, change);
    }
  }

  /** Where `path` leads in `layer` now, or undefined when its directory does not exist. */
  #peek(layer: Layer, path: string, follow: boolean): Peeked | undefined {
    try {
      const r = this.#host.view.resolve(layer, path, follow, "peek");
      if (r.path === ROOT) return { dir: ROOT, dirIno: r.ino, name: "", ino: r.ino, inode: r.inode };
      const dir = this.#host.view.resolve(layer, r.dir, true, "peek");
      return { dir: r.dir, dirIno: dir.ino, name: r.name, ino: r.ino, inode: r.inode };
    } catch {
      return undefined;
    }
  }

  /** Reads a whole file: a Buffer, or a string when an encoding is given. */
  readFile(path: string, options?: ReadFileOptions): Promise<Buffer | string>;
  /** Reads a whole file as a string in the given encoding. */
  readFile(path: string, options: BufferEncoding | { encoding: BufferEncoding }): Promise<string>;
  async readFile(path: string, options?: ReadFileOptions): Promise<Buffer | string> {
    const bytes = await this.#read("open", () => {
      const r = this.#existing(path, true, "open");
      if (isDir(r.inode.mode)) throw storeError("EISDIR", "read", path);
      if (!isReg(r.inode.mode)) throw storeError("EINVAL", "read", path, "only regular files hold data in a layer");
      return readData(this.#host.data(this.#layer), r.inode, 0, r.inode.size);
    });
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const enc = encodingOf(options);
    return enc ? buf.toString(enc) : buf;
  }

  /** Replaces a file's contents, creating it (mode 0o666 unless given) if missing. */
  writeFile(path: string, data: FileData, options?: WriteFileOptions): Promise<void> {
    const flags = parseFlags(typeof options === "object" && options.flag ? options.flag : "w");
    return this.#writeWith(path, data, options, flags, "open");
  }

  /** Appends to a file, creating it if missing. */
  appendFile(path: string, data: FileData, options?: WriteFileOptions): Promise<void> {
    const flags = parseFlags(typeof options === "object" && options.flag ? options.flag : "a");
    return this.#writeWith(path, data, options, flags, "open");
  }

  #writeWith(path: string, data: FileData, options: WriteFileOptions | undefined, flags: OpenFlags, syscall: string): Promise<void> {
    const bytes = toBytes(data, encodingOf(options) ?? "utf8");
    const mode = typeof options === "object" && options.mode !== undefined ? options.mode : 0o666;
    return this.#write(syscall, path, async (tree) => {
      const ino = await this.#openIno(tree, path, flags, mode, syscall);
      if (!isReg(tree.inode(ino)!.mode)) throw storeError("EINVAL", "write", path, "only regular files hold data in a layer");
      const inode = tree.own(ino);
      await writeData(this.#host.data(this.#layer), inode, flags.append ? inode.size : 0, bytes);
      inode.mtimeMs = inode.ctimeMs = tree.now;
    }, { paths: [path], follow: !flags.noFollow });
  }

  /** Opens (and with create flags makes or truncates) a file in a write call. */
  async #openIno(tree: LayerTree, path: string, flags: OpenFlags, mode: number, syscall: string): Promise<Ino> {
    const r = this.#resolve(path, !flags.noFollow && !(flags.create && flags.exclusive), syscall);
    if (r.ino) {
      const inode = r.inode!;
      if (flags.create && flags.exclusive) throw storeError("EEXIST", syscall, path);
      if (isLink(inode.mode)) throw storeError("ELOOP", syscall, path);
      if (isDir(inode.mode)) {
        if (flags.write) throw storeError("EISDIR", syscall, path);
        return r.ino;
      }
      if (flags.truncate && flags.write && isReg(inode.mode) && inode.size > 0) {
        const own = tree.own(r.ino);
        await truncateData(this.#host.data(this.#layer), own, 0);
        own.mtimeMs = own.ctimeMs = tree.now;
      }
      return r.ino;
    }
    if (!flags.create) throw storeError("ENOENT", syscall, path);
    return tree.create(r.dir, r.name, newInode(S_IFREG | (mode & 0o7777), tree.now));
  }

  /** Opens a file; see Node's `fs.open` for flags. Write flags need an active layer (EROFS). */
  async open(path: string, flags: string | number = "r", mode = 0o666): Promise<LayerFileHandle> {
    const f = parseFlags(flags);
    if (f.write || f.create || f.truncate) {
      return await this.#write("open", path, async (tree) => new LayerFileHandle(this.#host, this.#layer, await this.#openIno(tree, path, f, mode, "open"), f), { paths: [path], follow: !f.noFollow });
    }
    return await this.#read("open", () => {
      const r = this.#existing(path, !f.noFollow, "open");
      if (isLink(r.inode.mode)) throw storeError("ELOOP", "open", path);
      return new LayerFileHandle(this.#host, this.#layer, r.ino, f);
    });
  }

  /** Stats of what `path` leads to, following symbolic links. */
  stat(path: string): Promise<LayerStats> {
    return this.#read("stat", () => {
      const r = this.#existing(path, true, "stat");
      return new LayerStats(this.#layer.record.device, r.ino, r.inode);
    });
  }

  /** Stats of the entry itself (a symbolic link is not followed). */
  lstat(path: string): Promise<LayerStats> {
    return this.#read("lstat", () => {
      const r = this.#existing(path, false, "lstat");
      return new LayerStats(this.#layer.record.device, r.ino, r.inode);
    });
  }

  /** The names in a directory, sorted; with `withFileTypes`, Dirent-like entries. */
  readdir(path: string, options?: BufferEncoding | { withFileTypes?: false; encoding?: BufferEncoding }): Promise<string[]>;
  /** The entries of a directory, sorted by name, with their types. */
  readdir(path: string, options: { withFileTypes: true }): Promise<LayerDirent[]>;
  readdir(path: string, options?: BufferEncoding | { withFileTypes?: boolean; encoding?: BufferEncoding }): Promise<string[] | LayerDirent[]> {
    const withTypes = typeof options === "object" && options.withFileTypes === true;
    return this.#read("scandir", () => {
      const r = this.#existing(path, true, "scandir");
      if (!isDir(r.inode.mode)) throw storeError("ENOTDIR", "scandir", path);
      const entries = [...this.#host.view.list(this.#layer, r.path)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      if (!withTypes) return entries.map(([name]) => name);
      return entries.map(([name, ino]) => new LayerDirent(name, r.path, ino, this.#host.view.inode(this.#layer, ino)?.mode ?? 0));
    });
  }

  /**
   * Makes a directory (mode 0o777 unless given). With `recursive`, makes the missing
   * parents too and returns the first directory made (undefined if none was).
   */
  mkdir(path: string, options?: number | { recursive?: boolean; mode?: number }): Promise<string | undefined> {
    const recursive = typeof options === "object" && options.recursive === true;
    const mode = (typeof options === "number" ? options : options?.mode) ?? 0o777;
    return this.#write("mkdir", path, (tree) => {
      const make = (r: Resolved) => {
        tree.create(r.dir, r.name, newInode(S_IFDIR | (mode & 0o7777), tree.now));
        return r.path;
      };
      if (!recursive) {
        const r = this.#resolve(path, false, "mkdir");
        if (r.ino) throw storeError("EEXIST", "mkdir", path);
        make(r);
        return undefined;
      }
      let first: string | undefined;
      const comps = components(path);
      for (let i = 1; i <= comps.length; i++) {
        const r = this.#resolve("/" + comps.slice(0, i).join("/"), true, "mkdir");
        if (r.ino) {
          if (!isDir(r.inode!.mode)) throw storeError(i === comps.length ? "EEXIST" : "ENOTDIR", "mkdir", path);
          continue;
        }
        const made = make(r);
        first ??= made;
      }
      return first;
    }, { paths: recursive ? components(path).map((_, i, c) => "/" + c.slice(0, i + 1).join("/")) : [path], follow: false });
  }

  /** Removes a file, or with `recursive` a directory tree; `force` ignores a missing path. */
  rm(path: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    return this.#write("rm", path, async (tree) => {
      let r: Resolved;
      try {
        r = this.#resolve(path, false, "rm");
      } catch (e) {
        // A missing parent is a missing path too (as Node's rm has it); a file as parent is not.
        if (options.force && hasCode(e, "ENOENT")) return;
        throw e;
      }
      if (!r.ino) {
        if (options.force) return;
        throw storeError("ENOENT", "rm", path);
      }
      if (isDir(r.inode!.mode)) {
        if (!options.recursive) throw storeError("EISDIR", "rm", path, "it is a directory; pass { recursive: true }");
        if (r.path === ROOT) throw storeError("EBUSY", "rm", path, "the root directory cannot be removed");
        await this.#removeTree(tree, r);
      } else {
        await tree.unlink(r);
      }
    });
  }

  async #removeTree(tree: LayerTree, r: Resolved): Promise<void> {
    for (const [name, ino] of [...this.#host.view.list(this.#layer, r.path)]) {
      const inode = this.#host.view.inode(this.#layer, ino)!;
      const child: Resolved = { dir: r.path, name, path: join(r.path, name), ino, inode };
      if (isDir(inode.mode)) await this.#removeTree(tree, child);
      else await tree.unlink(child);
    }
    tree.rmdir(r, "rm");
  }

  /** Removes a name of a non-directory. EISDIR for directories. */
  unlink(path: string): Promise<void> {
    return this.#write("unlink", path, async (tree) => {
      const r = this.#existing(path, false, "unlink");
      if (isDir(r.inode.mode)) throw storeError("EISDIR", "unlink", path);
      await tree.unlink(r);
    });
  }

  /** Removes an empty directory. */
  rmdir(path: string): Promise<void> {
    return this.#write("rmdir", path, (tree) => {
      // rmdir(2) refuses a path ending in `.`: it would remove the directory it is in.
      if (/(^|\/)\.\/*$/.test(path)) throw storeError("EINVAL", "rmdir", path, "the last component is '.'");
      const r = this.#existing(path, false, "rmdir");
      if (!isDir(r.inode.mode)) throw storeError("ENOTDIR", "rmdir", path);
      if (r.path === ROOT) throw storeError("EBUSY", "rmdir", path, "the root directory cannot be removed");
      tree.rmdir(r, "rmdir");
    });
  }

  /** Renames with POSIX rules; entries from lower layers can be renamed too. */
  rename(oldPath: string, newPath: string): Promise<void> {
    let moved: { from: LayerPath; to: LayerPath } | undefined;
    return this.#write("rename", oldPath, async (tree) => {
      const src = this.#existing(oldPath, false, "rename");
      const dst = this.#resolve(newPath, false, "rename");
      await tree.rename(src, dst, "rename");
      if (isDir(src.inode.mode)) moved = { from: src.path, to: dst.path };
    }, { paths: [oldPath, newPath], follow: false, moved: () => moved });
  }

  /** Makes a symbolic link at `path` pointing at `target` (kept as given). */
  symlink(target: string, path: string): Promise<void> {
    return this.#write("symlink", path, (tree) => {
      const r = this.#resolve(path, false, "symlink");
      if (r.ino) throw storeError("EEXIST", "symlink", path);
      const inode = newInode(S_IFLNK | 0o777, tree.now);
      inode.target = target;
      inode.size = Buffer.byteLength(target);
      tree.create(r.dir, r.name, inode);
    });
  }

  /** The target of a symbolic link. EINVAL for anything else. */
  readlink(path: string): Promise<string> {
    return this.#read("readlink", () => {
      const r = this.#existing(path, false, "readlink");
      if (!isLink(r.inode.mode)) throw storeError("EINVAL", "readlink", path, "not a symbolic link");
      return r.inode.target!;
    });
  }

  /** Makes `newPath` a hard link to `existingPath` (not followed if a symbolic link, as link(2)). */
  link(existingPath: string, newPath: string): Promise<void> {
    return this.#write("link", newPath, (tree) => {
      const src = this.#existing(existingPath, false, "link");
      tree.link(src, this.#resolve(newPath, false, "link"), "link");
    }, { paths: [existingPath, newPath], follow: false });
  }

  /** Sets permission bits (following symbolic links). */
  chmod(path: string, mode: number): Promise<void> {
    return this.#change("chmod", path, true, (inode) => {
      inode.mode = (inode.mode & S_IFMT) | (mode & 0o7777);
    });
  }

  /** Sets owner and group (following symbolic links); -1 keeps one unchanged. */
  chown(path: string, uid: number, gid: number): Promise<void> {
    return this.#change("chown", path, true, (inode) => setOwner(inode, uid, gid));
  }

  /** Sets owner and group of the entry itself. */
  lchown(path: string, uid: number, gid: number): Promise<void> {
    return this.#change("lchown", path, false, (inode) => setOwner(inode, uid, gid));
  }

  /** Sets access and modification times (following symbolic links). */
  utimes(path: string, atime: TimeLike, mtime: TimeLike): Promise<void> {
    return this.#change("utime", path, true, (inode) => {
      inode.atimeMs = toMs(atime);
      inode.mtimeMs = toMs(mtime);
    });
  }

  /** Sets access and modification times of the entry itself. */
  lutimes(path: string, atime: TimeLike, mtime: TimeLike): Promise<void> {
    return this.#change("lutime", path, false, (inode) => {
      inode.atimeMs = toMs(atime);
      inode.mtimeMs = toMs(mtime);
    });
  }

  #change(syscall: string, path: string, follow: boolean, fn: (inode: Inode) => void): Promise<void> {
    return this.#write(syscall, path, (tree) => {
      const r = this.#existing(path, follow, syscall);
      const inode = tree.own(r.ino);
      fn(inode);
      inode.ctimeMs = tree.now;
    }, { paths: [path], follow });
  }

  /** Checks that `path` exists; asking for write access on a read-only layer gives EROFS. */
  access(path: string, mode: number = constants.F_OK): Promise<void> {
    return this.#read("access", () => {
      this.#existing(path, true, "access");
      if (mode & constants.W_OK && !this.#layer.writable) throw storeError("EROFS", "access", path);
    });
  }

  /** Cuts or extends a file to `length` bytes. */
  truncate(path: string, length = 0): Promise<void> {
    if (!Number.isSafeInteger(length) || length < 0) return Promise.reject(storeError("EINVAL", "truncate", path, `length '${length}' must be a whole number of bytes`));
    return this.#write("truncate", path, async (tree) => {
      const r = this.#existing(path, true, "truncate");
      if (isDir(r.inode.mode)) throw storeError("EISDIR", "truncate", path);
      if (!isReg(r.inode.mode)) throw storeError("EINVAL", "truncate", path, "only regular files can be truncated");
      const inode = tree.own(r.ino);
      await truncateData(this.#host.data(this.#layer), inode, length);
      inode.mtimeMs = inode.ctimeMs = tree.now;
    }, { paths: [path], follow: true });
  }

  /**
   * Makes a special file: `mode` carries the type (`S_IFCHR`, `S_IFBLK`, `S_IFIFO`,
   * `S_IFSOCK`, or `S_IFREG`/0 for an empty regular file) and the permissions; `rdev`
   * is the device number of a device.
   */
  mknod(path: string, mode: number, rdev = 0): Promise<void> {
    return this.#write("mknod", path, (tree) => {
      const type = (mode & S_IFMT) || S_IFREG;
      if (type === S_IFDIR || type === S_IFLNK) throw storeError("EINVAL", "mknod", path, "use mkdir or symlink for these");
      const r = this.#resolve(path, false, "mknod");
      if (r.ino) throw storeError("EEXIST", "mknod", path);
      const inode = newInode(type | (mode & 0o7777), tree.now);
      inode.rdev = rdev;
      tree.create(r.dir, r.name, inode);
    });
  }

  /** The canonical path `path` leads to, symbolic links resolved. */
  realpath(path: string): Promise<LayerPath> {
    return this.#read("realpath", () => this.#existing(path, true, "realpath").path);
  }

  /** An extended attribute of the entry itself, or undefined when it has none of that name. */
  getxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    return this.#read("lgetxattr", () => this.#existing(path, false, "lgetxattr").inode.xattrs?.get(name));
  }

  /** The names of the entry's extended attributes. */
  listxattr(path: string): Promise<string[]> {
    return this.#read("llistxattr", () => [...this.#existing(path, false, "llistxattr").inode.xattrs?.keys() ?? []].sort());
  }

  /** Sets an extended attribute of the entry itself. */
  setxattr(path: string, name: string, value: FileData): Promise<void> {
    const bytes = new Uint8Array(toBytes(value));
    return this.#change("lsetxattr", path, false, (inode) => {
      inode.xattrs ??= new Map();
      inode.xattrs.set(name, bytes);
    });
  }

  /** Removes an extended attribute of the entry itself (nothing if absent). */
  removexattr(path: string, name: string): Promise<void> {
    return this.#change("lremovexattr", path, false, (inode) => {
      inode.xattrs?.delete(name);
      if (inode.xattrs?.size === 0) inode.xattrs = undefined;
    });
  }
}

function setOwner(inode: Inode, uid: number, gid: number): void {
  if (uid !== -1) inode.uid = uid;
  if (gid !== -1) inode.gid = gid;
}
