/**
 * Reading the union of a layer and the layers below it. A name is looked up in the layer
 * first, then down its parent chain; a whiteout hides it, and an opaque directory
 * stops the search, so nothing below shows through it. Inodes are looked up upper-first
 * too, which is what keeps hardlinks whole across layers after a copy-up.
 *
 * Invariant that makes checking only the direct parent enough: every directory an
 * upper layer creates (mkdir, or the target of a directory rename) is opaque there, so
 * below an opaque directory every directory is opaque or new too.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { LookupCache } from "./cache.ts";
import { type Ino, type Inode, isDir, isLink, WHITEOUT } from "./inode.ts";
import type { Layer } from "./layer.ts";
import { basename, components, dirname, join, type LayerPath, NAME_MAX, ROOT } from "./path.ts";

/** How many symbolic links one resolution may follow, as Linux's MAXSYMLINKS. */
export const MAX_SYMLINKS = 40;

/** Where a path leads: its canonical parent directory, its name, and what is there. */
export interface Resolved {
  dir: LayerPath;
  name: string;
  /** Canonical path of the entry. */
  path: LayerPath;
  /** The inode; 0 when nothing is there (the parent exists). */
  ino: Ino;
  inode: Inode | undefined;
}

/**
 * Lookups in layers, with the frozen part of every chain served from the cache.
 *
 * @example
 * ```ts ignore
 * const view = new LayerView(new LookupCache());
 * const r = view.resolve(layer, "/etc/hosts", true, "stat");
 * if (r.ino) console.log(r.inode!.size);
 * ```
 */
export class LayerView {
  constructor(readonly cache: LookupCache) {}

  /** The inode `name` in `dir` names in `layer`'s view; 0 when nothing does. */
  entry(layer: Layer, dir: LayerPath, name: string): Ino {
    if (layer.frozen) return this.#frozenEntry(layer, dir, name);
    const own = layer.tables.entry(dir, name);
    if (own !== undefined) return own;
    return this.lowerEntry(layer, dir, name);
  }

  /** What the layers below `layer` show at `dir`/`name`, as far as `layer` lets them through. */
  lowerEntry(layer: Layer, dir: LayerPath, name: string): Ino {
    if (layer.tables.opaque.has(dir) || !layer.parent) return WHITEOUT;
    return this.#frozenEntry(layer.parent, dir, name);
  }

  #frozenEntry(top: Layer, dir: LayerPath, name: string): Ino {
    const path = join(dir, name);
    const hit = this.cache.entry(top.id, path);
    if (hit !== undefined) return hit;
    let found = WHITEOUT;
    for (let l: Layer | undefined = top; l; l = l.parent) {
      const own = l.tables.entry(dir, name);
      if (own !== undefined) {
        found = own;
        break;
      }
      if (l.tables.opaque.has(dir)) break;
    }
    this.cache.setEntry(top.id, path, found);
    return found;
  }

  /** The inode `ino` as `layer` sees it: its own copy, or the nearest one below. */
  inode(layer: Layer, ino: Ino): Inode | undefined {
    if (!layer.frozen) {
      const own = layer.tables.inodes.get(ino);
      if (own) return own;
      return layer.parent ? this.#frozenInode(layer.parent, ino) : undefined;
    }
    return this.#frozenInode(layer, ino);
  }

  #frozenInode(top: Layer, ino: Ino): Inode | undefined {
    const hit = this.cache.inode(top.id, ino);
    if (hit !== undefined) return hit || undefined;
    let found: Inode | undefined;
    for (let l: Layer | undefined = top; l && !found; l = l.parent) found = l.tables.inodes.get(ino);
    this.cache.setInode(top.id, ino, found ?? false);
    return found;
  }

  /** The merged entries of directory `dir` in `layer`'s view: name → inode. */
  list(layer: Layer, dir: LayerPath): ReadonlyMap<string, Ino> {
    if (layer.frozen) return this.#frozenList(layer, dir);
    const own = layer.tables.dirs.get(dir);
    const below = layer.tables.opaque.has(dir) || !layer.parent ? undefined : this.#frozenList(layer.parent, dir);
    if (!own) return below ?? new Map();
    const out = new Map(below);
    for (const [name, ino] of own) {
      if (ino === WHITEOUT) out.delete(name);
      else out.set(name, ino);
    }
    return out;
  }

  #frozenList(top: Layer, dir: LayerPath): ReadonlyMap<string, Ino> {
    const hit = this.cache.listing(top.id, dir);
    if (hit) return hit;
    const chain: Layer[] = [];
    for (let l: Layer | undefined = top; l; l = l.parent) {
      chain.push(l);
      if (l.tables.opaque.has(dir)) break;
    }
    const out = new Map<string, Ino>();
    for (let i = chain.length - 1; i >= 0; i--) {
      const own = chain[i].tables.dirs.get(dir);
      if (!own) continue;
      for (const [name, ino] of own) {
        if (ino === WHITEOUT) out.delete(name);
        else out.set(name, ino);
      }
    }
    this.cache.setListing(top.id, dir, out);
    return out;
  }

  /**
   * Resolves a path in `layer`: every directory on the way must exist, symbolic links
   * on the way are followed (the last one too when `follow`), inside the layer's root.
   * ENOENT when a directory on the way is missing, ENOTDIR when one is not a directory,
   * ELOOP past {@linkcode MAX_SYMLINKS}. The last component may be missing (ino 0).
   */
  resolve(layer: Layer, path: string, follow: boolean, syscall: string): Resolved {
    if (typeof path !== "string") throw storeError("EINVAL", syscall, String(path), "the path must be a string");
    if (path.includes("\0")) throw storeError("EINVAL", syscall, path, "the path contains a NUL byte");
    let comps = components(path);
    // A trailing slash (or `/.`) says the path names a directory: the last link is
    // followed, and an existing non-directory there is ENOTDIR, as on Linux.
    const dirOnly = comps.length > 0 && /\/\.?$/.test(path);
    if (dirOnly) follow = true;
    let cur: LayerPath = ROOT;
    let curIno = layer.record.root;
    let links = 0;
    for (let i = 0; i < comps.length; i++) {
      const c = comps[i];
      if (c.length > NAME_MAX) throw storeError("ENAMETOOLONG", syscall, path, `the name '${c.slice(0, 32)}…' is longer than ${NAME_MAX} bytes`);
      const last = i === comps.length - 1;
      if (c === "..") {
        cur = dirname(cur);
        curIno = this.#dirIno(layer, cur);
        continue;
      }
      const dirInode = this.inode(layer, curIno);
      if (!dirInode || !isDir(dirInode.mode)) throw storeError("ENOTDIR", syscall, path);
      const ino = this.entry(layer, cur, c);
      const inode = ino ? this.inode(layer, ino) : undefined;
      if (inode && isLink(inode.mode) && (!last || follow)) {
        if (++links > MAX_SYMLINKS) throw storeError("ELOOP", syscall, path);
        const target = inode.target ?? "";
        comps = [...components(target), ...comps.slice(i + 1)];
        if (target.startsWith("/")) {
          cur = ROOT;
          curIno = layer.record.root;
        }
        i = -1;
        continue;
      }
      if (last) {
        if (dirOnly && inode && !isDir(inode.mode)) throw storeError("ENOTDIR", syscall, path);
        return { dir: cur, name: c, path: join(cur, c), ino, inode };
      }
      if (!ino) throw storeError("ENOENT", syscall, path);
      if (!isDir(inode!.mode)) throw storeError("ENOTDIR", syscall, path);
      cur = join(cur, c);
      curIno = ino;
    }
    // The path named a directory by `..`, `/` or a link to one: it exists.
    return { dir: dirname(cur), name: basename(cur), path: cur, ino: curIno, inode: this.inode(layer, curIno) };
  }

  /** The inode of a directory reached by canonical path (its parent chain was checked). */
  #dirIno(layer: Layer, dir: LayerPath): Ino {
    if (dir === ROOT) return layer.record.root;
    return this.entry(layer, dirname(dir), basename(dir));
  }
}
