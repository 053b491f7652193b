/**
 * An in-memory layer store for the interchange tests: layers are trees of inodes; a
 * child starts as a copy of its parent (inode numbers kept, so identity survives) and a
 * layer's changes are found by walking it against its parent, as continuity's
 * double-walk diff does. It implements the interfaces the real store will.
 */
import { storeError } from "../../src/common/errors.ts";
import type { EntryAttrs, EntryStat, Xattrs } from "../../src/interchange/entry.ts";
import type { ImageCatalog, ImageRecord, LayerHost } from "../../src/interchange/host.ts";
import type { LayerTarget, NewEntry } from "../../src/interchange/target.ts";
import type { Change, LayerSource, MergedView } from "../../src/interchange/view.ts";

interface Inode {
  ino: number;
  type: EntryStat["type"];
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  nlink: number;
  rdev: number;
  /** Bumped by every change, so a diff can tell changed inodes from copies. */
  gen: number;
  data?: Uint8Array;
  target?: string;
  children?: Map<string, number>;
  xattrs?: Xattrs;
}

let nextIno = 1;
let nextGen = 1;

function parts(path: string): string[] {
  return path.split("/").filter((c) => c !== "");
}

function join(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/** One layer's merged tree. */
export class MemTree implements LayerTarget, MergedView {
  inodes = new Map<number, Inode>();
  root: number;
  /** Directories this layer marked opaque. */
  opaque = new Set<string>();
  /** Calls made, for tests that look at how the applier drives a target. */
  calls: string[] = [];
  /** Fail the n-th create (for atomicity tests). */
  failAt?: number;
  #creates = 0;

  constructor(from?: MemTree, keepOpaque = false) {
    if (from) {
      this.inodes = new Map([...from.inodes].map(([k, v]) => [k, { ...v, children: v.children && new Map(v.children), xattrs: v.xattrs && new Map(v.xattrs) }]));
      this.root = from.root;
      if (keepOpaque) this.opaque = new Set(from.opaque);
      return;
    }
    const root = this.#new("dir", { mode: 0o755, uid: 0, gid: 0, mtimeMs: 0 });
    root.children = new Map();
    this.root = root.ino;
  }

  /** A copy sharing nothing mutable (file data is replaced, never changed in place). */
  clone(keepOpaque = false): MemTree {
    return new MemTree(this, keepOpaque);
  }

  #new(type: Inode["type"], a: EntryAttrs): Inode {
    const inode: Inode = { ino: nextIno++, type, mode: a.mode & 0o7777, uid: a.uid, gid: a.gid, mtimeMs: a.mtimeMs, nlink: 1, rdev: 0, gen: nextGen++ };
    if (a.xattrs?.size) inode.xattrs = new Map(a.xattrs);
    this.inodes.set(inode.ino, inode);
    return inode;
  }

  get(path: string): Inode | undefined {
    let cur = this.inodes.get(this.root);
    for (const c of parts(path)) {
      const ino = cur?.children?.get(c);
      cur = ino === undefined ? undefined : this.inodes.get(ino);
      if (!cur) return undefined;
    }
    return cur;
  }

  #dirOf(path: string, syscall: string): [Inode, string] {
    const ps = parts(path);
    const name = ps.pop();
    const dir = this.get(`/${ps.join("/")}`);
    if (!name || dir?.type !== "dir") throw storeError("ENOENT", syscall, path, "parent is not a directory");
    return [dir, name];
  }

  lstat(path: string): Promise<EntryStat | undefined> {
    const i = this.get(path);
    return Promise.resolve(i && {
      type: i.type, mode: i.mode, uid: i.uid, gid: i.gid, size: i.data?.length ?? 0, nlink: i.nlink, ino: i.ino, rdev: i.rdev, mtimeMs: i.mtimeMs,
      ctimeMs: i.gen, // moves on every change, as a change time does
    });
  }

  readdir(path: string): Promise<string[]> {
    const i = this.get(path);
    if (i?.type !== "dir") return Promise.reject(storeError("ENOTDIR", "scandir", path));
    return Promise.resolve([...i.children!.keys()]);
  }

  readlink(path: string): Promise<string> {
    const i = this.get(path);
    if (i?.type !== "symlink") return Promise.reject(storeError("EINVAL", "readlink", path));
    return Promise.resolve(i.target!);
  }

  async *read(path: string): AsyncGenerator<Uint8Array> {
    const i = this.get(path);
    if (i?.type !== "file") throw storeError("EINVAL", "read", path);
    if (i.data?.length) yield i.data;
  }

  xattrs(path: string): Promise<Xattrs | undefined> {
    return Promise.resolve(this.get(path)?.xattrs);
  }

  async create(path: string, entry: NewEntry, attrs: EntryAttrs): Promise<void> {
    this.calls.push(`create ${entry.type} ${path}`);
    if (this.failAt !== undefined && ++this.#creates >= this.failAt) throw storeError("ENOSPC", "create", path, "test failure");
    const [dir, name] = this.#dirOf(path, "create");
    if (dir.children!.has(name)) throw storeError("EEXIST", "create", path);
    const inode = this.#new(entry.type, attrs);
    switch (entry.type) {
      case "dir":
        inode.children = new Map();
        break;
      case "file": {
        const chunks: Uint8Array[] = [];
        let n = 0;
        for await (const c of entry.data) {
          chunks.push(c);
          n += c.length;
        }
        if (n !== entry.size) throw storeError("EIO", "write", path, `size ${n} != ${entry.size}`);
        inode.data = new Uint8Array(n);
        let at = 0;
        for (const c of chunks) {
          inode.data.set(c, at);
          at += c.length;
        }
        break;
      }
      case "symlink":
        inode.target = entry.target;
        break;
      case "char":
      case "block":
        inode.rdev = entry.rdev;
        break;
    }
    dir.children!.set(name, inode.ino);
  }

  link(existing: string, path: string): Promise<void> {
    this.calls.push(`link ${existing} ${path}`);
    const target = this.get(existing);
    if (!target || target.type === "dir") return Promise.reject(storeError("EPERM", "link", existing));
    const [dir, name] = this.#dirOf(path, "link");
    if (dir.children!.has(name)) return Promise.reject(storeError("EEXIST", "link", path));
    target.nlink++;
    target.gen = nextGen++;
    dir.children!.set(name, target.ino);
    return Promise.resolve();
  }

  setAttrs(path: string, a: EntryAttrs): Promise<void> {
    this.calls.push(`attrs ${path}`);
    const i = this.get(path);
    if (!i) return Promise.reject(storeError("ENOENT", "setattrs", path));
    Object.assign(i, { mode: a.mode & 0o7777, uid: a.uid, gid: a.gid, mtimeMs: a.mtimeMs, gen: nextGen++ });
    i.xattrs = a.xattrs?.size ? new Map(a.xattrs) : undefined;
    return Promise.resolve();
  }

  #drop(ino: number): void {
    const i = this.inodes.get(ino)!;
    if (i.type === "dir") {
      for (const child of i.children!.values()) this.#drop(child);
      this.inodes.delete(ino);
    } else if (--i.nlink === 0) {
      this.inodes.delete(ino);
    }
    // Unlinking one name leaves the inode's other names unchanged, as overlayfs sees it.
  }

  remove(path: string): Promise<void> {
    this.calls.push(`remove ${path}`);
    const [dir, name] = this.#dirOf(path, "remove");
    const ino = dir.children!.get(name);
    if (ino === undefined) return Promise.reject(storeError("ENOENT", "remove", path));
    dir.children!.delete(name);
    this.#drop(ino);
    for (const o of this.opaque) if (o === path || o.startsWith(`${path}/`)) this.opaque.delete(o);
    return Promise.resolve();
  }

  markOpaque(dir: string): Promise<void> {
    this.calls.push(`opaque ${dir}`);
    this.opaque.add(dir);
    return Promise.resolve();
  }
}

/** A layer against its parent: the double walk. */
class MemSource implements LayerSource {
  constructor(readonly tree: MemTree, readonly base: MemTree | undefined) {}

  lstat(p: string) { return this.tree.lstat(p); }
  readdir(p: string) { return this.tree.readdir(p); }
  readlink(p: string) { return this.tree.readlink(p); }
  read(p: string) { return this.tree.read(p); }
  xattrs(p: string) { return this.tree.xattrs(p); }

  async *changes(): AsyncGenerator<Change> {
    yield* this.#walk("/", this.base?.get("/"), this.tree.get("/")!);
  }

  *#walk(dir: string, a: Inode | undefined, b: Inode): Generator<Change> {
    const names = new Set([...(a?.children?.keys() ?? []), ...b.children!.keys()]);
    for (const name of names) {
      const path = join(dir, name);
      const ai = a?.children?.has(name) ? this.base!.inodes.get(a.children.get(name)!) : undefined;
      const bi = b.children!.has(name) ? this.tree.inodes.get(b.children!.get(name)!) : undefined;
      if (!bi) {
        yield { path, kind: "deleted" };
        continue;
      }
      if (!ai) {
        yield { path, kind: "added" };
        if (bi.type === "dir") yield* this.#walk(path, undefined, bi);
        continue;
      }
      const replaced = ai.ino !== bi.ino;
      const opaque = bi.type === "dir" && (this.tree.opaque.has(path) || (replaced && ai.type === "dir"));
      if (replaced || ai.gen !== bi.gen || opaque) yield { path, kind: "modified", ...(opaque ? { opaque } : {}) };
      if (bi.type === "dir") yield* this.#walk(path, replaced || ai.type !== "dir" ? undefined : ai, bi);
    }
  }
}

interface MemLayer {
  parent?: string;
  tree: MemTree;
  committed: boolean;
}

/** The in-memory store. */
export class MemStore implements LayerHost, ImageCatalog {
  layers = new Map<string, MemLayer>();
  images = new Map<string, ImageRecord>();

  #get(name: string, syscall: string): MemLayer {
    const l = this.layers.get(name);
    if (!l) throw storeError("ENOENT", syscall, name);
    return l;
  }

  exists(name: string): Promise<boolean> {
    return Promise.resolve(this.layers.get(name)?.committed === true);
  }

  prepare(key: string, parent?: string): Promise<void> {
    if (this.layers.has(key)) return Promise.reject(storeError("EEXIST", "prepare", key));
    const p = parent === undefined ? undefined : this.#get(parent, "prepare");
    if (p && !p.committed) return Promise.reject(storeError("EINVAL", "prepare", parent));
    this.layers.set(key, { parent, tree: p ? p.tree.clone() : new MemTree(), committed: false });
    return Promise.resolve();
  }

  commit(name: string, key: string): Promise<void> {
    if (this.layers.has(name)) return Promise.reject(storeError("EEXIST", "commit", name));
    const l = this.#get(key, "commit");
    this.layers.delete(key);
    this.layers.set(name, { ...l, committed: true });
    return Promise.resolve();
  }

  remove(name: string): Promise<void> {
    this.#get(name, "remove");
    for (const l of this.layers.values()) if (l.parent === name) return Promise.reject(storeError("EBUSY", "remove", name));
    this.layers.delete(name);
    return Promise.resolve();
  }

  target(key: string): MemTree {
    const l = this.#get(key, "target");
    if (l.committed) throw storeError("EROFS", "target", key);
    return l.tree;
  }

  view(name: string): MemTree {
    return this.#get(name, "view").tree;
  }

  source(name: string): LayerSource {
    const l = this.#get(name, "source");
    return new MemSource(l.tree, l.parent === undefined ? undefined : this.#get(l.parent, "source").tree);
  }

  async transaction<T>(key: string, fn: (target: LayerTarget) => Promise<T>): Promise<T> {
    const l = this.#get(key, "apply");
    const scratch = l.tree.clone(true);
    const out = await fn(scratch);
    l.tree = scratch;
    return out;
  }

  getImage(name: string): Promise<ImageRecord | undefined> {
    return Promise.resolve(this.images.get(name));
  }

  putImage(record: ImageRecord): Promise<void> {
    this.images.set(record.name, record);
    return Promise.resolve();
  }

  listImages(): Promise<ImageRecord[]> {
    return Promise.resolve([...this.images.values()]);
  }
}

