/**
 * A layer's files addressed the way a kernel addresses them (a FUSE server's requests):
 * a directory by its canonical path together with its inode number (checked on every
 * call, so a path that went stale fails with ENOENT instead of writing entries where no
 * directory is), everything else by inode number. Namespace changes go through
 * {@linkcode LayerTree} exactly as `LayerFs` does them; only the addressing differs.
 *
 * Every result says which layer holds the version of the inode it describes (the layer
 * itself once it changed the file, else the nearest one below): a version held by a
 * committed layer never changes, so a server may give it one node wherever it appears.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { storeError } from "../common/errors.ts";
import { LayerFileHandle } from "./filehandle.ts";
import { leaseData, readData, truncateData, writeData } from "./fileio.ts";
import type { OpenFlags } from "./flags.ts";
import { punchData, seekData } from "./holes.ts";
import type { FsHost } from "./host.ts";
import { type Ino, type Inode, isDir, isReg, newInode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from "./inode.ts";
import type { Layer } from "./layer.ts";
import type { ReadLease } from "../pool/types.ts";
import { join, type LayerPath, NAME_MAX } from "./path.ts";
import type { Resolved } from "./resolve.ts";
import type { LayerTree } from "./tree.ts";

/** An inode as a layer sees it, with the layer whose tables hold that version. */
export interface FoundNode {
  ino: Ino;
  /** The version the layer sees; do not change it. */
  inode: Inode;
  /** The layer holding this version: the layer itself, or one below it. */
  holder: Layer;
}

/** What a new entry is: type and permission bits, owner, and what the type needs. */
export interface NewNode {
  /** Type and permission bits (`S_IFREG | 0o644`); a type of 0 is a regular file. */
  mode: number;
  uid: number;
  gid: number;
  /** Device number, for character and block devices. */
  rdev?: number;
  /** Target, for a symbolic link. */
  target?: string;
}

/** Changes of `setattr`; absent fields stay as they are. Times in ms since the epoch. */
export interface AttrChanges {
  /** Permission bits (the type bits are kept). */
  mode?: number;
  uid?: number;
  gid?: number;
  /** New size of a regular file (EISDIR for a directory, EINVAL for others). */
  size?: number;
  atimeMs?: number;
  mtimeMs?: number;
  /** Set explicitly; otherwise any change sets it to now. */
  ctimeMs?: number;
  /** Clear the set-user-ID bit (and set-group-ID with group execute), as a change by an unprivileged caller does. */
  killSuid?: boolean;
}

/** The attribute a file's capabilities are in; writes, truncations and owner changes drop it. */
export const CAPABILITY_XATTR = "security.capability";

/**
 * What a local file system strips from a file that is written, truncated or given to
 * another owner: its capabilities always, and with `suid` the set-user-ID bit and the
 * set-group-ID bit of a group-executable file.
 */
function killPrivileges(inode: Inode, suid: boolean): void {
  if (isDir(inode.mode)) return;
  if (inode.xattrs?.delete(CAPABILITY_XATTR) && inode.xattrs.size === 0) inode.xattrs = undefined;
  if (!suid) return;
  inode.mode &= ~0o4000;
  if (inode.mode & 0o010) inode.mode &= ~0o2000;
}

/** How `rename` treats an existing destination, as renameat2's flags. */
export interface RenameMode {
  /** EEXIST when the destination exists (RENAME_NOREPLACE). */
  noReplace?: boolean;
  /** Swap source and destination, both of which must exist (RENAME_EXCHANGE). */
  exchange?: boolean;
}

/**
 * The files of one layer by directory path and inode number.
 *
 * @example
 * ```ts ignore
 * const nodes = store.nodes("ctr-1");
 * const etc = await nodes.lookup("/", "etc");
 * const f = await nodes.create(etc!.ino, "/etc", "motd", { mode: S_IFREG | 0o644, uid: 0, gid: 0 });
 * ```
 */
export class LayerNodes {
  readonly #host: FsHost;
  #current: Layer;

  /** For the store: callers get one from `LayerStore.nodes`. */
  constructor(host: FsHost, layer: Layer) {
    this.#host = host;
    this.#current = layer;
  }

  /** The layer (following a transaction's replacement). */
  get layer(): Layer {
    while (this.#current.replacedBy) this.#current = this.#current.replacedBy;
    return this.#current;
  }

  /** The root directory's inode number. */
  get root(): Ino {
    return this.layer.record.root;
  }

  /** True for an active layer. */
  get writable(): boolean {
    return this.layer.writable;
  }

  /** The layer holding the version of `ino` that this layer sees. */
  holder(ino: Ino): Layer {
    for (let l: Layer | undefined = this.layer; l; l = l.parent) if (l.tables.inodes.has(ino)) return l;
    throw storeError("EIO", "lookup", `inode ${ino}`, "an entry names an inode no layer holds; run 'thinstack check'");
  }

  /** The inode `ino` as this layer sees it now; undefined if it sees none. */
  stat(ino: Ino): Promise<FoundNode | undefined> {
    return this.#read("stat", () => this.#found(ino));
  }

  /** Several inodes at once (for a directory listing with attributes). */
  statMany(inos: Ino[]): Promise<(FoundNode | undefined)[]> {
    return this.#read("stat", () => inos.map((ino) => this.#found(ino)));
  }

  /** The version of `ino` that `holder` (this layer or one below) holds. */
  held(holder: Layer, ino: Ino): Promise<Inode | undefined> {
    return this.#host.reading(holder, "stat", () => this.#host.view.inode(holder, ino));
  }

  /** What `name` in directory `dir` (inode `dirIno`) is; undefined when nothing is there. */
  lookup(dirIno: Ino, dir: LayerPath, name: string): Promise<FoundNode | undefined> {
    return this.#read("lookup", () => {
      this.#checkDir(dirIno, dir, "lookup");
      const ino = this.#host.view.entry(this.layer, dir, name);
      return ino ? this.#found(ino) : undefined;
    });
  }

  /** The merged entries of a directory: name and inode number, in no particular order. */
  list(dirIno: Ino, dir: LayerPath): Promise<[string, Ino][]> {
    return this.#read("scandir", () => {
      this.#checkDir(dirIno, dir, "scandir");
      return [...this.#host.view.list(this.layer, dir)];
    });
  }

  /**
   * Makes `name` in `dir`: a regular file, directory, symbolic link, device, fifo or socket
   * as `node.mode` says. EEXIST when the name is taken. New entries of a set-group-ID
   * directory take its group, and new directories the bit.
   */
  create(dirIno: Ino, dir: LayerPath, name: string, node: NewNode): Promise<FoundNode> {
    return this.#write("mknod", join(dir, name), (tree) => {
      const r = this.#entry(tree, dirIno, dir, name, "mknod");
      if (r.ino) throw storeError("EEXIST", "mknod", r.path);
      return this.#sure(this.#make(tree, r, node));
    });
  }

  /**
   * Opens `name` in `dir` for `flags`, creating a regular file when it is missing, as
   * open(O_CREAT) does: EEXIST if it exists and `flags.exclusive`, EISDIR for a
   * directory. An existing file opened for writing is copied up first, so the handle
   * and the result describe this layer's own version.
   */
  createFile(dirIno: Ino, dir: LayerPath, name: string, node: NewNode, flags: OpenFlags, killSuid = false): Promise<{ node: FoundNode; handle: LayerFileHandle; created: boolean }> {
    return this.#write("open", join(dir, name), async (tree) => {
      const r = this.#entry(tree, dirIno, dir, name, "open");
      let ino = r.ino;
      const created = !ino;
      if (ino) {
        if (flags.exclusive) throw storeError("EEXIST", "open", r.path);
        if (isDir(r.inode!.mode)) throw storeError("EISDIR", "open", r.path);
        if (!isReg(r.inode!.mode)) throw storeError("EINVAL", "open", r.path, "only regular files hold data in a layer");
        const own = tree.own(ino);
        if (flags.truncate && own.size > 0) {
          killPrivileges(own, killSuid);
          await truncateData(this.#host.data(this.layer), own, 0);
          own.mtimeMs = own.ctimeMs = tree.now;
        }
      } else {
        ino = this.#make(tree, r, { ...node, mode: S_IFREG | (node.mode & 0o7777) });
      }
      return { node: this.#sure(ino), handle: new LayerFileHandle(this.#host, this.layer, ino, flags), created };
    });
  }

  /** Makes `name` in `dir` a new link to `ino`. EPERM for a directory, EEXIST if taken, EXDEV if this layer sees no such inode. */
  link(ino: Ino, dirIno: Ino, dir: LayerPath, name: string): Promise<FoundNode> {
    return this.#write("link", join(dir, name), (tree) => {
      const inode = tree.inode(ino);
      if (!inode) throw storeError("EXDEV", "link", join(dir, name), "the file is not in this layer");
      const dst = this.#entry(tree, dirIno, dir, name, "link");
      tree.link({ dir, name, path: `inode ${ino}`, ino, inode }, dst, "link");
      return this.#sure(ino);
    });
  }

  /** Removes a non-directory entry; returns its inode number. EISDIR for a directory. */
  unlink(dirIno: Ino, dir: LayerPath, name: string): Promise<Ino> {
    return this.#write("unlink", join(dir, name), async (tree) => {
      const r = this.#existing(tree, dirIno, dir, name, "unlink");
      if (isDir(r.inode.mode)) throw storeError("EISDIR", "unlink", r.path);
      await tree.unlink(r);
      return r.ino;
    });
  }

  /** Removes an empty directory; returns its inode number. ENOTDIR, ENOTEMPTY. */
  rmdir(dirIno: Ino, dir: LayerPath, name: string): Promise<Ino> {
    return this.#write("rmdir", join(dir, name), (tree) => {
      const r = this.#existing(tree, dirIno, dir, name, "rmdir");
      if (!isDir(r.inode.mode)) throw storeError("ENOTDIR", "rmdir", r.path);
      tree.rmdir(r, "rmdir");
      return r.ino;
    });
  }

  /**
   * Renames `srcDir/srcName` to `dstDir/dstName` with POSIX rules (renameat2's flags in
   * `mode`); returns the inode numbers that moved: the source, and with `exchange` the
   * destination too.
   */
  rename(src: [Ino, LayerPath, string], dst: [Ino, LayerPath, string], mode: RenameMode = {}): Promise<Ino[]> {
    return this.#write("rename", join(src[1], src[2]), async (tree) => {
      const s = this.#existing(tree, src[0], src[1], src[2], "rename");
      const d = this.#entry(tree, dst[0], dst[1], dst[2], "rename");
      if (mode.noReplace && d.ino) throw storeError("EEXIST", "rename", d.path);
      if (!mode.exchange) {
        await tree.rename(s, d, "rename");
        return [s.ino];
      }
      if (!d.ino) throw storeError("ENOENT", "rename", d.path);
      if (s.ino === d.ino) return [];
      await this.#exchange(tree, s, d as Resolved & { inode: Inode });
      return [s.ino, d.ino];
    });
  }

  async #exchange(tree: LayerTree, s: Resolved & { inode: Inode }, d: Resolved & { inode: Inode }): Promise<void> {
    if (!isDir(s.inode.mode) && !isDir(d.inode.mode)) {
      const t = this.layer.tables;
      t.setEntry(s.dir, s.name, d.ino);
      t.setEntry(d.dir, d.name, s.ino);
      tree.own(s.ino).ctimeMs = tree.now;
      tree.own(d.ino).ctimeMs = tree.now;
      tree.touchDir(s.dir);
      tree.touchDir(d.dir);
      return;
    }
    // A directory's entries are keyed by its path, so it moves through a free name.
    let tmp = `.thinstack-exchange-${s.ino}`;
    while (this.#host.view.entry(this.layer, s.dir, tmp)) tmp += "~";
    const at = (dir: LayerPath, name: string): Resolved => {
      const ino = this.#host.view.entry(this.layer, dir, name);
      return { dir, name, path: join(dir, name), ino, inode: ino ? tree.inode(ino) : undefined };
    };
    await tree.rename(s, at(s.dir, tmp), "rename");
    await tree.rename(at(d.dir, d.name), at(s.dir, s.name), "rename");
    await tree.rename(at(s.dir, tmp), at(d.dir, d.name), "rename");
  }

  /** Changes an inode's attributes (copying it up first); returns it as changed. */
  setattr(ino: Ino, c: AttrChanges): Promise<FoundNode> {
    return this.#write("setattr", `inode ${ino}`, async (tree) => {
      const seen = tree.inode(ino);
      if (!seen) throw storeError("ENOENT", "setattr", `inode ${ino}`);
      if (c.size !== undefined) {
        if (isDir(seen.mode)) throw storeError("EISDIR", "truncate", `inode ${ino}`);
        if (!isReg(seen.mode)) throw storeError("EINVAL", "truncate", `inode ${ino}`, "only regular files can be truncated");
      }
      const inode = tree.own(ino);
      if (c.size !== undefined || c.uid !== undefined || c.gid !== undefined || c.killSuid) killPrivileges(inode, c.killSuid === true);
      if (c.mode !== undefined) inode.mode = (inode.mode & S_IFMT) | (c.mode & 0o7777);
      if (c.uid !== undefined) inode.uid = c.uid;
      if (c.gid !== undefined) inode.gid = c.gid;
      if (c.size !== undefined && c.size !== inode.size) {
        await truncateData(this.#host.data(this.layer), inode, c.size);
        inode.mtimeMs = tree.now;
      }
      if (c.atimeMs !== undefined) inode.atimeMs = c.atimeMs;
      if (c.mtimeMs !== undefined) inode.mtimeMs = c.mtimeMs;
      inode.ctimeMs = c.ctimeMs ?? tree.now;
      return this.#sure(ino);
    });
  }

  /**
   * Sets an extended attribute: with `mode` "create" EEXIST if it exists, with "replace"
   * ENODATA if it does not (setxattr's XATTR_CREATE and XATTR_REPLACE).
   */
  setxattr(ino: Ino, name: string, value: Uint8Array, mode?: "create" | "replace"): Promise<void> {
    return this.#write("setxattr", `inode ${ino}`, (tree) => {
      const seen = tree.inode(ino);
      if (!seen) throw storeError("ENOENT", "setxattr", `inode ${ino}`);
      const has = seen.xattrs?.has(name) ?? false;
      if (mode === "create" && has) throw storeError("EEXIST", "setxattr", name);
      if (mode === "replace" && !has) throw storeError("ENODATA", "setxattr", name);
      const inode = tree.own(ino);
      inode.xattrs ??= new Map();
      inode.xattrs.set(name, new Uint8Array(value));
      inode.ctimeMs = tree.now;
    });
  }

  /** Removes an extended attribute; ENODATA when there is none of that name. */
  removexattr(ino: Ino, name: string): Promise<void> {
    return this.#write("removexattr", `inode ${ino}`, (tree) => {
      const seen = tree.inode(ino);
      if (!seen) throw storeError("ENOENT", "removexattr", `inode ${ino}`);
      if (!seen.xattrs?.has(name)) throw storeError("ENODATA", "removexattr", name);
      const inode = tree.own(ino);
      inode.xattrs!.delete(name);
      if (inode.xattrs!.size === 0) inode.xattrs = undefined;
      inode.ctimeMs = tree.now;
    });
  }

  /**
   * Writes `data` at `position` into this layer's version of `ino` (copying it up first),
   * dropping its capabilities, and with `killSuid` its set-user/group-ID bits, as a
   * local file system's write does.
   */
  write(ino: Ino, position: number, data: Uint8Array, killSuid = false): Promise<void> {
    return this.#write("write", `inode ${ino}`, async (tree) => {
      const seen = tree.inode(ino);
      if (!seen) throw storeError("EBADF", "write", `inode ${ino}`, "the file is gone");
      if (!isReg(seen.mode)) throw storeError(isDir(seen.mode) ? "EISDIR" : "EINVAL", "write", `inode ${ino}`);
      const inode = tree.own(ino);
      if (killSuid || inode.xattrs?.has(CAPABILITY_XATTR)) {
        killPrivileges(inode, killSuid);
        inode.ctimeMs = tree.now;
      }
      await writeData(this.#host.data(this.layer), inode, position, data);
      inode.mtimeMs = inode.ctimeMs = tree.now;
    });
  }

  /** Makes this layer hold its own copy of `ino` (metadata only; data stays shared until written). */
  copyUp(ino: Ino): Promise<FoundNode> {
    return this.#write("copyup", `inode ${ino}`, (tree) => {
      if (!tree.inode(ino)) throw storeError("ENOENT", "copyup", `inode ${ino}`);
      tree.own(ino);
      return this.#sure(ino);
    });
  }

  /**
   * Opens inode `ino` as `holder` holds it. Writing (or truncating) needs `holder` to be
   * this layer, and so a version this layer holds: copy it up first.
   */
  open(ino: Ino, holder: Layer, flags: OpenFlags, killSuid = false): Promise<LayerFileHandle> {
    const check = (inode: Inode | undefined): void => {
      if (!inode) throw storeError("ENOENT", "open", `inode ${ino}`);
      if (isDir(inode.mode)) throw storeError("EISDIR", "open", `inode ${ino}`);
      if (!isReg(inode.mode)) throw storeError("EINVAL", "open", `inode ${ino}`, "only regular files hold data in a layer");
    };
    if (!flags.write && !flags.truncate) {
      return this.#host.reading(holder, "open", () => {
        check(this.#host.view.inode(holder, ino));
        return new LayerFileHandle(this.#host, holder, ino, flags);
      });
    }
    if (holder !== this.layer) return Promise.reject(storeError("EINVAL", "open", `inode ${ino}`, "a file is opened for writing in the layer holding it; copy it up first"));
    return this.#write("open", `inode ${ino}`, async (tree) => {
      check(tree.inode(ino));
      const inode = tree.own(ino);
      if (flags.truncate && inode.size > 0) {
        killPrivileges(inode, killSuid);
        await truncateData(this.#host.data(this.layer), inode, 0);
        inode.mtimeMs = inode.ctimeMs = tree.now;
      }
      return new LayerFileHandle(this.#host, this.layer, ino, flags);
    });
  }

  /**
   * fallocate(2) on a regular file: `punch` makes the range a hole, `zero` makes it read
   * as zeros; without `keepSize` the file grows to cover the range. Plain allocation
   * only grows the file (pages are taken when written).
   */
  allocate(ino: Ino, offset: number, length: number, how: { punch?: boolean; zero?: boolean; keepSize?: boolean }): Promise<void> {
    return this.#write("fallocate", `inode ${ino}`, async (tree) => {
      const seen = tree.inode(ino);
      if (!seen) throw storeError("ENOENT", "fallocate", `inode ${ino}`);
      if (!isReg(seen.mode)) throw storeError(isDir(seen.mode) ? "EISDIR" : "ENODEV", "fallocate", `inode ${ino}`);
      const inode = tree.own(ino);
      const ctx = this.#host.data(this.layer);
      if (how.punch || how.zero) await punchData(ctx, inode, offset, length);
      if (!how.keepSize && offset + length > inode.size) await truncateData(ctx, inode, offset + length);
      if (how.punch || how.zero || !how.keepSize) inode.mtimeMs = inode.ctimeMs = tree.now;
    });
  }

  /**
   * Reads up to `length` bytes at `position` of the version of `ino` that `holder` holds
   * (stopping at the end of the file): the device's own array when the range is one run
   * of pages, so a server can pass it on without copying.
   */
  read(holder: Layer, ino: Ino, position: number, length: number): Promise<Uint8Array> {
    return this.#host.reading(holder, "read", () => {
      const inode = this.#host.view.inode(holder, ino);
      if (!inode) throw storeError("EBADF", "read", `inode ${ino}`, "the file is gone");
      if (!isReg(inode.mode)) throw storeError(isDir(inode.mode) ? "EISDIR" : "EINVAL", "read", `inode ${ino}`);
      return readData(this.#host.data(holder), inode, position, length);
    });
  }

  /**
   * {@linkcode read} into memory shared with the I/O workers, for a server that writes
   * the bytes on and then releases them (see `ThinDevice.lease`); undefined, reading
   * nothing, when that does not apply (see `leaseData`): use {@linkcode read} then.
   */
  lease(holder: Layer, ino: Ino, position: number, length: number): Promise<ReadLease | undefined> {
    return this.#host.reading(holder, "read", () => {
      const inode = this.#host.view.inode(holder, ino);
      if (!inode || !isReg(inode.mode)) return undefined;
      return leaseData(this.#host.data(holder), inode, position, length);
    });
  }

  /**
   * Gives back an array {@linkcode read} returned, once the caller is done with it (see
   * `ThinDevice.recycle`): its buffer may serve a later read.
   */
  recycle(holder: Layer, bytes: Uint8Array): void {
    this.#host.data(holder).device.recycle(bytes);
  }

  /** lseek's SEEK_DATA (or SEEK_HOLE with `hole`) in the version `holder` holds; ENXIO past the data. */
  seek(holder: Layer, ino: Ino, offset: number, hole: boolean): Promise<number> {
    return this.#host.reading(holder, "lseek", () => {
      const inode = this.#host.view.inode(holder, ino);
      if (!inode) throw storeError("ENOENT", "lseek", `inode ${ino}`);
      const at = seekData(inode, offset, hole);
      if (at === undefined) throw storeError("ENXIO", "lseek", `inode ${ino}`);
      return at;
    });
  }

  #found(ino: Ino): FoundNode | undefined {
    const inode = this.#host.view.inode(this.layer, ino);
    return inode ? { ino, inode, holder: this.holder(ino) } : undefined;
  }

  /** What an operation just made or changed: there, or the metadata is damaged. */
  #sure(ino: Ino): FoundNode {
    const found = this.#found(ino);
    if (!found) throw storeError("EIO", "lookup", `inode ${ino}`, "an entry names an inode no layer holds; run 'thinstack check'");
    return found;
  }

  #make(tree: LayerTree, r: Resolved, node: NewNode): Ino {
    if (Buffer.byteLength(r.name) > NAME_MAX) throw storeError("ENAMETOOLONG", "mknod", r.path);
    let mode = node.mode;
    if ((mode & S_IFMT) === 0) mode |= S_IFREG;
    const inode = newInode(mode & (S_IFMT | 0o7777), tree.now);
    inode.uid = node.uid;
    inode.gid = node.gid;
    const parent = tree.inode(tree.dirIno(r.dir))!;
    if (parent.mode & 0o2000) {
      inode.gid = parent.gid;
      if (isDir(mode)) inode.mode |= 0o2000;
    }
    if ((mode & S_IFMT) === S_IFLNK) {
      inode.target = node.target ?? "";
      inode.size = Buffer.byteLength(inode.target);
    } else if ((mode & S_IFMT) !== S_IFDIR && (mode & S_IFMT) !== S_IFREG) {
      inode.rdev = node.rdev ?? 0;
    }
    return tree.create(r.dir, r.name, inode);
  }

  /** ENOENT unless `dir` still leads to directory `dirIno` in this layer. */
  #checkDir(dirIno: Ino, dir: LayerPath, syscall: string): void {
    const r = this.#host.view.resolve(this.layer, dir, false, syscall);
    if (r.ino !== dirIno || !r.inode || !isDir(r.inode.mode)) {
      throw storeError("ENOENT", syscall, dir, "the directory was removed or moved");
    }
  }

  #entry(tree: LayerTree, dirIno: Ino, dir: LayerPath, name: string, syscall: string): Resolved {
    this.#checkDir(dirIno, dir, syscall);
    const ino = this.#host.view.entry(this.layer, dir, name);
    return { dir, name, path: join(dir, name), ino, inode: ino ? tree.inode(ino) : undefined };
  }

  #existing(tree: LayerTree, dirIno: Ino, dir: LayerPath, name: string, syscall: string): Resolved & { inode: Inode } {
    const r = this.#entry(tree, dirIno, dir, name, syscall);
    if (!r.ino || !r.inode) throw storeError("ENOENT", syscall, r.path);
    return r as Resolved & { inode: Inode };
  }

  #read<T>(syscall: string, fn: () => T | Promise<T>): Promise<T> {
    return this.#host.reading(this.layer, syscall, fn);
  }

  #write<T>(syscall: string, path: string, fn: (tree: LayerTree) => T | Promise<T>): Promise<T> {
    return this.#host.writing(this.layer, syscall, path, fn);
  }
}
