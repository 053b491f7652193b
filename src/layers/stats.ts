/**
 * `fs.Stats` and `fs.Dirent` look-alikes for entries of a layer.
 *
 * @module
 */
import { allocatedBytes } from "./fileio.ts";
import { type Ino, type Inode, PAGE, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from "./inode.ts";

/** Type tests shared by {@linkcode LayerStats} and {@linkcode LayerDirent}, as Node's `Stats` and `Dirent` have them. */
export abstract class Typed {
  /** The entry's type bits (`mode & S_IFMT`), which the tests compare. */
  protected abstract get typeBits(): number;
  /** True for a regular file. */
  isFile(): boolean { return this.typeBits === S_IFREG; }
  /** True for a directory. */
  isDirectory(): boolean { return this.typeBits === S_IFDIR; }
  /** True for a symbolic link (only `lstat` and `readdir` report one; `stat` follows it). */
  isSymbolicLink(): boolean { return this.typeBits === S_IFLNK; }
  /** True for a character device. */
  isCharacterDevice(): boolean { return this.typeBits === S_IFCHR; }
  /** True for a block device. */
  isBlockDevice(): boolean { return this.typeBits === S_IFBLK; }
  /** True for a named pipe. */
  isFIFO(): boolean { return this.typeBits === S_IFIFO; }
  /** True for a socket. */
  isSocket(): boolean { return this.typeBits === S_IFSOCK; }
}

/**
 * What `stat` returns, shaped after Node's `fs.Stats`. `dev` is the layer's device id.
 * Directories report `nlink` as 2 plus their subdirectories, as ext4 does.
 *
 * @example
 * ```ts ignore
 * const st = await layerFs.stat("/etc/hosts");
 * console.log(st.isFile(), st.mode & 0o777, st.size);
 * ```
 */
export class LayerStats extends Typed {
  /** Id of the layer's thin device in the pool. */
  dev: number;
  /** Inode number, unique across the store. */
  ino: Ino;
  /** Type and permission bits, as `st_mode`. */
  mode: number;
  /** Number of hard links; for a directory, 2 plus its subdirectories. */
  nlink: number;
  /** Owner's user id. */
  uid: number;
  /** Owner's group id. */
  gid: number;
  /** Device number of a character or block device (see `makedev`); 0 otherwise. */
  rdev: number;
  /** Size in bytes: file data, or a symbolic link's target. */
  size: number;
  /** Bytes of one page, the unit a layer places file data in (4096). */
  blksize: number = PAGE;
  /** 512-byte units of device space the file takes; an inline file counts its size. */
  blocks: number;
  /** Last access, in milliseconds since the epoch; reads leave it alone (as noatime), `utimes` sets it. */
  atimeMs: number;
  /** Last change of the contents, in milliseconds since the epoch. */
  mtimeMs: number;
  /** Last change of the inode (contents, owner, mode, links, xattrs), in milliseconds since the epoch. */
  ctimeMs: number;
  /** Creation, in milliseconds since the epoch. */
  birthtimeMs: number;

  /** Stats of inode `ino` of the layer on device `dev`; `LayerFs.stat` and its kin make them. */
  constructor(dev: number, ino: Ino, inode: Inode) {
    super();
    this.dev = dev;
    this.ino = ino;
    this.mode = inode.mode;
    this.nlink = inode.nlink;
    this.uid = inode.uid;
    this.gid = inode.gid;
    this.rdev = inode.rdev;
    this.size = inode.size;
    // Inline files hold no device pages, but report their size so tools do not take them for sparse.
    this.blocks = inode.inline ? Math.ceil(inode.size / 512) : allocatedBytes(inode) / 512;
    this.atimeMs = inode.atimeMs;
    this.mtimeMs = inode.mtimeMs;
    this.ctimeMs = inode.ctimeMs;
    this.birthtimeMs = inode.birthtimeMs;
  }

  /** The type bits of `mode`. */
  protected get typeBits(): number { return this.mode & S_IFMT; }
  /** `atimeMs` as a Date. */
  get atime(): Date { return new Date(this.atimeMs); }
  /** `mtimeMs` as a Date. */
  get mtime(): Date { return new Date(this.mtimeMs); }
  /** `ctimeMs` as a Date. */
  get ctime(): Date { return new Date(this.ctimeMs); }
  /** `birthtimeMs` as a Date. */
  get birthtime(): Date { return new Date(this.birthtimeMs); }
}

/**
 * An entry of `readdir(path, { withFileTypes: true })`, shaped after Node's `fs.Dirent`.
 *
 * @example
 * ```ts ignore
 * for (const d of await layerFs.readdir("/etc", { withFileTypes: true })) if (d.isFile()) console.log(d.name);
 * ```
 */
export class LayerDirent extends Typed {
  /**
   * Entry `name` of directory `parentPath`, inode `ino` of type `mode` (only the type bits
   * are used); `readdir` makes them.
   */
  constructor(readonly name: string, readonly parentPath: string, readonly ino: Ino, private readonly mode: number) {
    super();
  }

  /** Node's older name for `parentPath`. */
  get path(): string { return this.parentPath; }
  /** The type bits of the entry's mode. */
  protected get typeBits(): number { return this.mode & S_IFMT; }
}
