/**
 * The test oracle: a flat, in-memory file tree with POSIX rules, written as plainly as
 * possible (a map from canonical path to inode object; hardlinks are two paths holding
 * the same object). It offers the subset of the layer file API that the tests apply to
 * both, and a description of the tree that the tests compare.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { storeError } from "../../src/common/errors.ts";

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

/** An inode of the model. */
export interface MemInode {
  mode: number;
  uid: number;
  gid: number;
  rdev: number;
  data: Uint8Array;
  target?: string;
}

const isDir = (n: MemInode) => (n.mode & S_IFMT) === S_IFDIR;
const isLink = (n: MemInode) => (n.mode & S_IFMT) === S_IFLNK;
const isReg = (n: MemInode) => (n.mode & S_IFMT) === S_IFREG;
const join = (dir: string, name: string) => (dir === "/" ? `/${name}` : `${dir}/${name}`);
const dirname = (p: string) => (p.lastIndexOf("/") <= 0 ? "/" : p.slice(0, p.lastIndexOf("/")));
const basename = (p: string) => p.slice(p.lastIndexOf("/") + 1);
const comps = (p: string) => p.split("/").filter((c) => c !== "" && c !== ".");
const bytesOf = (d: string | Uint8Array) => (typeof d === "string" ? new Uint8Array(Buffer.from(d)) : new Uint8Array(d));

interface Res { path: string; dir: string; name: string; node: MemInode | undefined }

/** One entry of a tree description. */
export interface EntryDesc {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  /** File bytes as hex, link target, or device number. */
  content: string;
  /** First path (sorted) of the entry's hardlink group, for files with more than one name. */
  group?: string;
}

/** The model tree. */
export class MemFs {
  nodes = new Map<string, MemInode>();

  constructor() {
    this.nodes.set("/", { mode: S_IFDIR | 0o755, uid: 0, gid: 0, rdev: 0, data: new Uint8Array() });
  }

  /** A deep copy keeping hardlink groups (the layer a child starts from). */
  clone(): MemFs {
    const out = new MemFs();
    const copies = new Map<MemInode, MemInode>();
    out.nodes = new Map();
    for (const [p, n] of this.nodes) {
      let c = copies.get(n);
      // A copy, never a view (Buffer's slice is a view).
      if (!c) copies.set(n, c = { ...n, data: new Uint8Array(n.data) });
      out.nodes.set(p, c);
    }
    return out;
  }

  #children(dir: string): string[] {
    const out: string[] = [];
    for (const p of this.nodes.keys()) if (p !== "/" && dirname(p) === dir) out.push(basename(p));
    return out.sort();
  }

  #resolve(path: string, follow: boolean, syscall: string): Res {
    let cs = comps(path);
    let cur = "/";
    let links = 0;
    for (let i = 0; i < cs.length; i++) {
      const c = cs[i];
      const last = i === cs.length - 1;
      if (c === "..") {
        cur = dirname(cur);
        continue;
      }
      if (!isDir(this.nodes.get(cur)!)) throw storeError("ENOTDIR", syscall, path);
      const p = join(cur, c);
      const node = this.nodes.get(p);
      if (node && isLink(node) && (!last || follow)) {
        if (++links > 40) throw storeError("ELOOP", syscall, path);
        cs = [...comps(node.target!), ...cs.slice(i + 1)];
        if (node.target!.startsWith("/")) cur = "/";
        i = -1;
        continue;
      }
      if (last) return { path: p, dir: cur, name: c, node };
      if (!node) throw storeError("ENOENT", syscall, path);
      if (!isDir(node)) throw storeError("ENOTDIR", syscall, path);
      cur = p;
    }
    return { path: cur, dir: dirname(cur), name: basename(cur), node: this.nodes.get(cur) };
  }

  #existing(path: string, follow: boolean, syscall: string): Res & { node: MemInode } {
    const r = this.#resolve(path, follow, syscall);
    if (!r.node) throw storeError("ENOENT", syscall, path);
    return r as Res & { node: MemInode };
  }

  #remove(path: string): void {
    for (const p of [...this.nodes.keys()]) if (p === path || p.startsWith(path + "/")) this.nodes.delete(p);
  }

  async writeFile(path: string, data: string | Uint8Array, options?: { mode?: number }): Promise<void> {
    this.#writeAt(path, bytesOf(data), options?.mode ?? 0o666, "w");
  }

  async appendFile(path: string, data: string | Uint8Array): Promise<void> {
    this.#writeAt(path, bytesOf(data), 0o666, "a");
  }

  /** Writes at a position (as `open(path, "r+")` then `write`): the file must exist. */
  async writeAt(path: string, position: number, data: Uint8Array): Promise<void> {
    const r = this.#existing(path, true, "open");
    if (isDir(r.node)) throw storeError("EISDIR", "open", path);
    if (!isReg(r.node)) throw storeError("EINVAL", "write", path);
    if (data.byteLength === 0) return; // An empty write does not extend the file.
    const end = position + data.byteLength;
    if (end > r.node.data.byteLength) {
      const grown = new Uint8Array(end);
      grown.set(r.node.data);
      r.node.data = grown;
    }
    r.node.data.set(data, position);
  }

  #writeAt(path: string, bytes: Uint8Array, mode: number, flag: "w" | "a"): void {
    const r = this.#resolve(path, true, "open");
    if (r.node) {
      if (isDir(r.node)) throw storeError("EISDIR", "open", path);
      if (!isReg(r.node)) throw storeError("EINVAL", "write", path);
      r.node.data = flag === "w" ? new Uint8Array(bytes) : new Uint8Array(Buffer.concat([r.node.data, bytes]));
      return;
    }
    this.nodes.set(r.path, { mode: S_IFREG | (mode & 0o7777), uid: 0, gid: 0, rdev: 0, data: new Uint8Array(bytes) });
  }

  async readFile(path: string): Promise<Uint8Array> {
    const r = this.#existing(path, true, "open");
    if (isDir(r.node)) throw storeError("EISDIR", "read", path);
    return new Uint8Array(r.node.data);
  }

  async truncate(path: string, length = 0): Promise<void> {
    const r = this.#existing(path, true, "truncate");
    if (isDir(r.node)) throw storeError("EISDIR", "truncate", path);
    if (!isReg(r.node)) throw storeError("EINVAL", "truncate", path);
    const next = new Uint8Array(length);
    next.set(r.node.data.subarray(0, Math.min(length, r.node.data.byteLength)));
    r.node.data = next;
  }

  async mkdir(path: string, options?: { recursive?: boolean; mode?: number }): Promise<string | undefined> {
    const mode = options?.mode ?? 0o777;
    if (!options?.recursive) {
      const r = this.#resolve(path, false, "mkdir");
      if (r.node) throw storeError("EEXIST", "mkdir", path);
      this.nodes.set(r.path, { mode: S_IFDIR | (mode & 0o7777), uid: 0, gid: 0, rdev: 0, data: new Uint8Array() });
      return undefined;
    }
    const cs = comps(path);
    let first: string | undefined;
    for (let i = 1; i <= cs.length; i++) {
      const r = this.#resolve("/" + cs.slice(0, i).join("/"), true, "mkdir");
      if (r.node) {
        if (!isDir(r.node)) throw storeError(i === cs.length ? "EEXIST" : "ENOTDIR", "mkdir", path);
        continue;
      }
      this.nodes.set(r.path, { mode: S_IFDIR | (mode & 0o7777), uid: 0, gid: 0, rdev: 0, data: new Uint8Array() });
      first ??= r.path;
    }
    return first;
  }

  async rm(path: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    let r;
    try {
      r = this.#resolve(path, false, "rm");
    } catch (e) {
      // Node's rm: force ignores a missing parent (ENOENT), not a file as parent (ENOTDIR).
      if (options.force && (e as { code?: string }).code === "ENOENT") return;
      throw e;
    }
    if (!r.node) {
      if (options.force) return;
      throw storeError("ENOENT", "rm", path);
    }
    if (isDir(r.node)) {
      if (!options.recursive) throw storeError("EISDIR", "rm", path);
      if (r.path === "/") throw storeError("EBUSY", "rm", path);
    }
    this.#remove(r.path);
  }

  async unlink(path: string): Promise<void> {
    const r = this.#existing(path, false, "unlink");
    if (isDir(r.node)) throw storeError("EISDIR", "unlink", path);
    this.nodes.delete(r.path);
  }

  async rmdir(path: string): Promise<void> {
    const r = this.#existing(path, false, "rmdir");
    if (!isDir(r.node)) throw storeError("ENOTDIR", "rmdir", path);
    if (r.path === "/") throw storeError("EBUSY", "rmdir", path);
    if (this.#children(r.path).length) throw storeError("ENOTEMPTY", "rmdir", path);
    this.nodes.delete(r.path);
  }

  async rename(oldPath: string, newPath: string): Promise<void> {
    const src = this.#existing(oldPath, false, "rename");
    const dst = this.#resolve(newPath, false, "rename");
    if (src.path === "/" || dst.path === "/") throw storeError("EBUSY", "rename", "/");
    const srcDir = isDir(src.node);
    if (srcDir && dst.path.startsWith(src.path + "/")) throw storeError("EINVAL", "rename", oldPath);
    if (dst.node === src.node) return;
    if (dst.node) {
      const dstDir = isDir(dst.node);
      if (srcDir && !dstDir) throw storeError("ENOTDIR", "rename", newPath);
      if (!srcDir && dstDir) throw storeError("EISDIR", "rename", newPath);
      if (dstDir && this.#children(dst.path).length) throw storeError("ENOTEMPTY", "rename", newPath);
      this.nodes.delete(dst.path);
    }
    const moved: [string, MemInode][] = [];
    for (const [p, n] of this.nodes) if (p === src.path || p.startsWith(src.path + "/")) moved.push([dst.path + p.slice(src.path.length), n]);
    this.#remove(src.path);
    for (const [p, n] of moved) this.nodes.set(p, n);
  }

  async symlink(target: string, path: string): Promise<void> {
    const r = this.#resolve(path, false, "symlink");
    if (r.node) throw storeError("EEXIST", "symlink", path);
    this.nodes.set(r.path, { mode: S_IFLNK | 0o777, uid: 0, gid: 0, rdev: 0, data: new Uint8Array(), target });
  }

  async link(existing: string, newPath: string): Promise<void> {
    const src = this.#existing(existing, false, "link");
    const dst = this.#resolve(newPath, false, "link");
    if (isDir(src.node)) throw storeError("EPERM", "link", existing);
    if (dst.node) throw storeError("EEXIST", "link", newPath);
    this.nodes.set(dst.path, src.node);
  }

  async chmod(path: string, mode: number): Promise<void> {
    const r = this.#existing(path, true, "chmod");
    r.node.mode = (r.node.mode & S_IFMT) | (mode & 0o7777);
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    const r = this.#existing(path, true, "chown");
    r.node.uid = uid;
    r.node.gid = gid;
  }

  async lchown(path: string, uid: number, gid: number): Promise<void> {
    const r = this.#existing(path, false, "lchown");
    r.node.uid = uid;
    r.node.gid = gid;
  }

  async mknod(path: string, mode: number, rdev = 0): Promise<void> {
    const r = this.#resolve(path, false, "mknod");
    if (r.node) throw storeError("EEXIST", "mknod", path);
    this.nodes.set(r.path, { mode, uid: 0, gid: 0, rdev, data: new Uint8Array() });
  }

  /** The tree as the tests compare it. */
  describe(): Map<string, EntryDesc> {
    const names = new Map<MemInode, string[]>();
    for (const [p, n] of this.nodes) {
      if (isDir(n)) continue;
      names.set(n, [...names.get(n) ?? [], p]);
    }
    const out = new Map<string, EntryDesc>();
    for (const p of [...this.nodes.keys()].sort()) {
      const n = this.nodes.get(p)!;
      const subdirs = isDir(n) ? this.#children(p).filter((c) => isDir(this.nodes.get(join(p, c))!)).length : 0;
      const group = names.get(n);
      out.set(p, describeEntry(n.mode, n.uid, n.gid, isDir(n) ? 2 + subdirs : group!.length,
        isReg(n) ? n.data : undefined, n.target, n.rdev, group && group.length > 1 ? group.sort()[0] : undefined));
    }
    return out;
  }
}

/** Builds one entry's description (shared by the model and the layer side). */
export function describeEntry(mode: number, uid: number, gid: number, nlink: number, data: Uint8Array | undefined, target: string | undefined, rdev: number, group: string | undefined): EntryDesc {
  const t = mode & S_IFMT;
  const type = t === S_IFDIR ? "dir" : t === S_IFREG ? "file" : t === S_IFLNK ? "symlink" : `special-${t.toString(8)}`;
  const content = data ? (data.byteLength <= 64 ? Buffer.from(data).toString("hex") : `sha256:${createHash("sha256").update(data).digest("hex")}`) : target ?? (type.startsWith("special") ? String(rdev) : "");
  const size = data ? data.byteLength : target !== undefined ? Buffer.byteLength(target) : 0;
  const d: EntryDesc = { type, mode, uid, gid, size: type === "dir" ? 0 : size, nlink, content };
  if (group) d.group = group;
  return d;
}
