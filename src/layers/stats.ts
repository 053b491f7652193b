/**
 * `fs.Stats` and `fs.Dirent` look-alikes for entries of a layer.
 *
 * @module
 */
import { allocatedBytes } from "./fileio.ts";
import { type Ino, type Inode, PAGE, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from "./inode.ts";

/** Type tests shared by stats and directory entries. */
abstract class Typed {
  protected abstract get typeBits(): number;
  isFile(): boolean { return this.typeBits === S_IFREG; }
  isDirectory(): boolean { return this.typeBits === S_IFDIR; }
  isSymbolicLink(): boolean { return this.typeBits === S_IFLNK; }
  isCharacterDevice(): boolean { return this.typeBits === S_IFCHR; }
  isBlockDevice(): boolean { return this.typeBits === S_IFBLK; }
  isFIFO(): boolean { return this.typeBits === S_IFIFO; }
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
  dev: number;
  ino: Ino;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blksize = PAGE;
  blocks: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  birthtimeMs: number;

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

  protected get typeBits(): number { return this.mode & S_IFMT; }
  get atime(): Date { return new Date(this.atimeMs); }
  get mtime(): Date { return new Date(this.mtimeMs); }
  get ctime(): Date { return new Date(this.ctimeMs); }
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
  constructor(readonly name: string, readonly parentPath: string, readonly ino: Ino, private readonly mode: number) {
    super();
  }

  /** Node's older name for `parentPath`. */
  get path(): string { return this.parentPath; }
  protected get typeBits(): number { return this.mode & S_IFMT; }
}
