/**
 * Changes to an active layer's tree: creating and removing names, copy-up of inodes,
 * links, and renames (of entries from lower layers too). Everything goes into the
 * layer's own tables; lower layers are never touched.
 *
 * - Removing a name that a lower layer shows leaves a whiteout; otherwise the layer's
 *   own entry just goes.
 * - Changing an inode that a lower layer holds copies it up first (metadata only: its
 *   extents keep pointing at the same device pages, which the layer's device shares
 *   with its parent until written).
 * - A directory created in a layer that has a parent is opaque there; renaming a
 *   directory copies its visible subtree's entries to the new place (no data moves).
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { type DataContext, freeData } from "./fileio.ts";
import { cloneInode, type Ino, type Inode, isDir, WHITEOUT } from "./inode.ts";
import type { Layer } from "./layer.ts";
import { basename, dirname, isWithin, join, type LayerPath, ROOT } from "./path.ts";
import type { LayerView, Resolved } from "./resolve.ts";

/** What tree changes need from the store. */
export interface TreeHost {
  readonly view: LayerView;
  /** A new inode number, unique across the store. */
  nextIno(): Ino;
  /** File I/O context of a layer. */
  data(layer: Layer): DataContext;
}

/**
 * Mutations of one active layer.
 *
 * @example
 * ```ts ignore
 * const tree = new LayerTree(host, layer);
 * const r = host.view.resolve(layer, "/etc/old", false, "unlink");
 * await tree.unlink(r);
 * ```
 */
export class LayerTree {
  readonly now = Date.now();

  constructor(readonly host: TreeHost, readonly layer: Layer) {}

  /** The inode as the layer sees it (do not change it: use {@linkcode own}). */
  inode(ino: Ino): Inode | undefined {
    return this.host.view.inode(this.layer, ino);
  }

  /** The layer's own, changeable copy of an inode, copying it up from below if needed. */
  own(ino: Ino): Inode {
    const t = this.layer.tables;
    let inode = t.inodes.get(ino);
    if (inode) {
      t.touchInode(ino);
      return inode;
    }
    const below = this.inode(ino);
    if (!below) throw storeError("EIO", "copyup", `inode ${ino}`, "an entry names an inode no layer holds; the layer's metadata is damaged");
    inode = cloneInode(below);
    t.putInode(ino, inode);
    return inode;
  }

  /** The inode of a directory given by canonical path. */
  dirIno(dir: LayerPath): Ino {
    return dir === ROOT ? this.layer.record.root : this.host.view.entry(this.layer, dirname(dir), basename(dir));
  }

  /** Updates a directory's times after its entries changed, and its link count by `links`. */
  touchDir(dir: LayerPath, links = 0): void {
    const inode = this.own(this.dirIno(dir));
    inode.mtimeMs = inode.ctimeMs = this.now;
    inode.nlink += links;
  }

  /** Creates `name` in `dir` for a new inode; returns its number. The name must be free. */
  create(dir: LayerPath, name: string, inode: Inode): Ino {
    const ino = this.host.nextIno();
    const t = this.layer.tables;
    t.putInode(ino, inode);
    t.setEntry(dir, name, ino);
    if (isDir(inode.mode)) {
      // Nothing below may show through a new directory.
      if (this.layer.parent) t.setOpaque(join(dir, name), true);
      this.touchDir(dir, 1);
    } else {
      this.touchDir(dir);
    }
    return ino;
  }

  /** Takes a name out of the layer's view: a whiteout if a lower layer shows it. */
  removeName(dir: LayerPath, name: string): void {
    const t = this.layer.tables;
    if (this.host.view.lowerEntry(this.layer, dir, name) !== WHITEOUT) t.setEntry(dir, name, WHITEOUT);
    else t.dropEntry(dir, name);
  }

  /** Removes a non-directory entry; its inode goes with its last link (and last open handle). */
  async unlink(r: Resolved): Promise<void> {
    const inode = this.own(r.ino);
    inode.nlink--;
    inode.ctimeMs = this.now;
    this.removeName(r.dir, r.name);
    this.touchDir(r.dir);
    if (inode.nlink <= 0) await this.release(r.ino);
  }

  /** Removes an empty directory. ENOTEMPTY otherwise. */
  rmdir(r: Resolved, syscall: string): void {
    if (this.host.view.list(this.layer, r.path).size > 0) throw storeError("ENOTEMPTY", syscall, r.path);
    this.layer.tables.dropDir(r.path);
    this.removeName(r.dir, r.name);
    this.touchDir(r.dir, -1);
    this.layer.tables.dropInode(r.ino);
  }

  /** Frees an inode nothing links to, unless a handle still has it open (then at its close). */
  async release(ino: Ino): Promise<void> {
    if (this.layer.handles.get(ino)) return;
    const inode = this.layer.tables.inodes.get(ino);
    if (!inode) return;
    if (inode.extents) await freeData(this.host.data(this.layer), inode);
    this.layer.tables.dropInode(ino);
  }

  /** Makes `dst` a new name of the inode at `src`. EPERM for directories, EEXIST if `dst` is taken. */
  link(src: Resolved, dst: Resolved, syscall: string): void {
    if (!src.ino) throw storeError("ENOENT", syscall, src.path);
    if (isDir(src.inode!.mode)) throw storeError("EPERM", syscall, src.path, "directories cannot be hard linked");
    if (dst.ino) throw storeError("EEXIST", syscall, dst.path);
    const inode = this.own(src.ino);
    inode.nlink++;
    inode.ctimeMs = this.now;
    this.layer.tables.setEntry(dst.dir, dst.name, src.ino);
    this.touchDir(dst.dir);
  }

  /** Renames `src` to `dst` with POSIX rules; works on entries from lower layers too. */
  async rename(src: Resolved, dst: Resolved, syscall: string): Promise<void> {
    if (!src.ino) throw storeError("ENOENT", syscall, src.path);
    if (src.path === ROOT || dst.path === ROOT) throw storeError("EBUSY", syscall, ROOT);
    const srcDir = isDir(src.inode!.mode);
    if (srcDir && isWithin(dst.path, src.path) && dst.path !== src.path) {
      throw storeError("EINVAL", syscall, src.path, `cannot move a directory into itself ('${dst.path}')`);
    }
    if (dst.ino === src.ino) return; // The same file: POSIX says do nothing.
    if (dst.ino) {
      const dstDir = isDir(dst.inode!.mode);
      if (srcDir && !dstDir) throw storeError("ENOTDIR", syscall, dst.path);
      if (!srcDir && dstDir) throw storeError("EISDIR", syscall, dst.path);
      if (dstDir) this.rmdir(dst, syscall);
      else await this.unlink(dst);
    }
    const t = this.layer.tables;
    if (!srcDir) {
      t.setEntry(dst.dir, dst.name, src.ino);
      this.removeName(src.dir, src.name);
      this.own(src.ino).ctimeMs = this.now;
      this.touchDir(src.dir);
      this.touchDir(dst.dir);
      return;
    }
    const subtree = this.#subtree(src.path);
    t.setEntry(dst.dir, dst.name, src.ino);
    const opaque = this.layer.parent !== undefined;
    if (opaque) t.setOpaque(dst.path, true);
    for (const e of subtree) {
      const dir = dst.path + e.dir.slice(src.path.length);
      t.setEntry(dir, e.name, e.ino);
      if (e.isDir && opaque) t.setOpaque(join(dir, e.name), true);
    }
    for (let i = subtree.length - 1; i >= 0; i--) if (subtree[i].isDir) t.dropDir(join(subtree[i].dir, subtree[i].name));
    t.dropDir(src.path);
    this.removeName(src.dir, src.name);
    this.own(src.ino).ctimeMs = this.now;
    this.touchDir(src.dir, -1);
    this.touchDir(dst.dir, 1);
  }

  /** Every visible entry below a directory, parents before children. */
  #subtree(root: LayerPath): { dir: LayerPath; name: string; ino: Ino; isDir: boolean }[] {
    const out: { dir: LayerPath; name: string; ino: Ino; isDir: boolean }[] = [];
    const walk = (dir: LayerPath) => {
      for (const [name, ino] of this.host.view.list(this.layer, dir)) {
        const d = isDir(this.inode(ino)!.mode);
        out.push({ dir, name, ino, isDir: d });
        if (d) walk(join(dir, name));
      }
    };
    walk(root);
    return out;
  }
}
