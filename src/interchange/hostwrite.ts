/**
 * Writing a merged tree onto the host without following anything the write did not
 * make: what `checkout` and the CLI's `cp` to the host share.
 *
 * - Every entry is made anew by a call that never follows a final symlink: files are
 *   created exclusively with `O_NOFOLLOW`, directories, symlinks, hard links and nodes
 *   by `mkdir`, `symlink`, `link`, `mknod`, which fail on anything in the way.
 * - Attributes go through a descriptor of the entry itself (files, directories) or
 *   through calls that do not follow (`lchown`, `lutimes`); `chmod` by path is never used.
 * - An entry in the way is never written through. With `replace` (cp), a non-directory
 *   there is unlinked and made again, a real directory is written into, and anything else
 *   where a directory goes (a symlink above all) is refused; without it (checkout, into
 *   an empty root) anything in the way is an error.
 * - Setuid and setgid bits of non-directories, and device nodes, are kept only when
 *   asked: a process running as root would otherwise plant them on the host from an
 *   untrusted image. What is left out is reported.
 *
 * The kernel still resolves the directories above each entry by path (neither runtime
 * has `openat`): they are directories this writer made or existing real directories it
 * checked when it met them. Another process writing the same tree meanwhile is not
 * guarded against here; `checkout` keeps its root 0700 until it is done for that.
 *
 * @module
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import fsp, { type FileHandle } from "node:fs/promises";
import nodePath from "node:path";
import { hasCode, storeError } from "../common/errors.ts";
import { major, minor } from "./devices.ts";
import type { EntryStat } from "./entry.ts";
import { writeAll } from "./hostio.ts";
import { childPath } from "./names.ts";
import { tap } from "./tap.ts";
import type { MergedView } from "./view.ts";

const { O_WRONLY, O_RDONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY } = fs.constants;
/** A new file, never through a symlink (O_EXCL alone already refuses one; O_NOFOLLOW says so twice). */
const CREATE_FILE = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
/** A directory itself, for its attributes: fails on a symlink. */
const OPEN_DIR = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
/** setuid and setgid. */
const SETID = 0o6000;

/** Options of a {@linkcode HostWriter}. */
export interface HostWriteOptions {
  /** How errors name the operation (`checkout`, `cp`). */
  op: string;
  /** Set owners (uid/gid) from the tree; needs root for most. */
  owners: boolean;
  /** Make block and character devices; otherwise they are reported as skipped. */
  devices: boolean;
  /** Keep setuid and setgid bits of non-directories; otherwise they are dropped and reported. */
  keepSetid: boolean;
  /**
   * Replace non-directories in the way and write into existing real directories (cp);
   * otherwise anything in the way fails with EEXIST (checkout into an empty root).
   */
  replace: boolean;
  /** Called with the byte count of each chunk of file data written. */
  onData?: (bytes: number) => void;
}

/** What a write to the host did. */
export interface HostWriteReport {
  /** Entries written. */
  entries: number;
  /** Entries or attributes not written here, one line each. */
  skipped: string[];
}

/** Attributes a directory gets at the end. */
type DirAttrs = Pick<EntryStat, "mode" | "uid" | "gid" | "mtimeMs">;

function octal(mode: number): string {
  return mode.toString(8).padStart(4, "0");
}

/** Runs a tool that makes a node at `path`; a failure is EPERM with the tool's words. */
function run(cmd: string, args: string[], path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, _out, stderr) => (err ? reject(storeError("EPERM", cmd, path, String(stderr || err.message).trim())) : resolve()));
  });
}

/** Refuses names that would not stay one component in their directory. */
function checkName(name: string, dir: string, op: string): void {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw storeError("EINVAL", op, childPath(dir, name), "an entry name that would not stay in its directory; the layer is damaged (run fsck)");
  }
}

/**
 * Writes entries of `view` to host paths, each made anew without following symlinks.
 * Call {@linkcode HostWriter.finish} at the end: directories get their modes and
 * times last, deepest first.
 *
 * @example
 * ```ts ignore
 * const w = new HostWriter(view, { op: "cp", owners: false, devices: false, keepSetid: false, replace: true });
 * await w.write("/etc", "/tmp/out/etc");
 * await w.finish();
 * for (const line of w.report.skipped) console.warn(line);
 * ```
 */
export class HostWriter {
  /** What was written and what was left out. */
  readonly report: HostWriteReport = { entries: 0, skipped: [] };
  /** Inode → host path written first, for hard links. */
  readonly #links = new Map<string, string>();
  /** Directories made or entered, in the order met, with their attributes. */
  readonly #dirs: [string, DirAttrs][] = [];

  constructor(readonly view: MergedView, readonly options: HostWriteOptions) {}

  /** Writes `path` of the view, and everything below it, to `host`, whose parent must be a directory. */
  async write(path: string, host: string): Promise<void> {
    const st = await this.view.lstat(path);
    if (!st) return;
    if (await this.#entry(path, host, st)) await this.writeChildren(path, host);
  }

  /** Writes what directory `path` of the view holds into the host directory `host`. */
  async writeChildren(path: string, host: string): Promise<void> {
    for (const name of (await this.view.readdir(path)).sort()) {
      checkName(name, path, this.options.op);
      await this.write(childPath(path, name), nodePath.join(host, name));
    }
  }

  /** Sets the attributes of the directories written, deepest first (writing inside changes mtimes). */
  async finish(): Promise<void> {
    for (const [host, a] of this.#dirs.reverse()) await this.setDirAttrs(host, a);
    this.#dirs.length = 0;
  }

  /** Sets owner (when `owners`), mode and mtime of directory `host` through a descriptor of it. */
  async setDirAttrs(host: string, a: DirAttrs): Promise<void> {
    let fh: FileHandle;
    try {
      fh = await fsp.open(host, OPEN_DIR);
    } catch (e) {
      if (!hasCode(e, "EACCES")) throw e;
      // An existing directory cp writes into but may not read: by path, after checking it is one.
      if (!(await fsp.lstat(host)).isDirectory()) throw storeError("ENOTDIR", this.options.op, host, "a directory written into was replaced meanwhile");
      if (this.options.owners) await fsp.lchown(host, a.uid, a.gid);
      await fsp.chmod(host, a.mode & 0o7777);
      await fsp.utimes(host, a.mtimeMs / 1000, a.mtimeMs / 1000);
      return;
    }
    try {
      if (this.options.owners) await fh.chown(a.uid, a.gid);
      await fh.chmod(a.mode & 0o7777);
      await fh.utimes(a.mtimeMs / 1000, a.mtimeMs / 1000);
    } finally {
      await fh.close();
    }
  }

  #skip(line: string): void {
    this.report.skipped.push(line);
  }

  /** Writes one entry; true for a directory to descend into. */
  async #entry(path: string, host: string, st: EntryStat): Promise<boolean> {
    const xattrs = await this.view.xattrs(path);
    if (xattrs?.size) this.#skip(`${path}: extended attributes ${[...xattrs.keys()].join(", ")} not written`);
    if (st.type !== "dir" && st.nlink > 1) {
      const first = this.#links.get(String(st.ino));
      if (first !== undefined) {
        await this.#make(host, () => fsp.link(first, host));
        this.report.entries++;
        return false;
      }
    }
    const mode = this.#mode(path, st);
    const t = st.mtimeMs / 1000;
    switch (st.type) {
      case "dir":
        await this.#dir(host);
        this.#dirs.push([host, { mode, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs }]);
        this.report.entries++;
        return true;
      case "file":
        await this.#file(path, host, st, mode);
        break;
      case "symlink": {
        const target = await this.view.readlink(path);
        await this.#make(host, () => fsp.symlink(target, host));
        if (this.options.owners) await fsp.lchown(host, st.uid, st.gid);
        await fsp.lutimes(host, t, t);
        break;
      }
      case "fifo":
        await this.#node(host, "mkfifo", ["-m", octal(mode), "--", host]);
        if (this.options.owners) await fsp.lchown(host, st.uid, st.gid);
        await fsp.lutimes(host, t, t);
        break;
      case "char":
      case "block": {
        const dev = `${st.type} device ${major(st.rdev)},${minor(st.rdev)}`;
        if (!this.options.devices) {
          this.#skip(`${path}: ${dev} not made (device nodes are made only when asked for: devices, --devices)`);
          return false;
        }
        try {
          await this.#node(host, "mknod", ["-m", octal(mode), "--", host, st.type === "char" ? "c" : "b", String(major(st.rdev)), String(minor(st.rdev))]);
        } catch (e) {
          // Without CAP_MKNOD even root is refused (containers): a rootfs is still usable without.
          if (!hasCode(e, "EPERM")) throw e;
          this.#skip(`${path}: ${dev} not made (${(e as Error).message})`);
          return false;
        }
        if (this.options.owners) await fsp.lchown(host, st.uid, st.gid);
        await fsp.lutimes(host, t, t);
        break;
      }
      case "socket":
        this.#skip(`${path}: socket not made`);
        return false;
    }
    if (st.nlink > 1) this.#links.set(String(st.ino), host);
    this.report.entries++;
    return false;
  }

  /** The mode to give: setuid and setgid of non-directories only when asked (a setgid directory grants nothing). */
  #mode(path: string, st: EntryStat): number {
    const mode = st.mode & 0o7777;
    if (this.options.keepSetid || st.type === "dir" || !(mode & SETID)) return mode;
    const bits = (mode & SETID) === SETID ? "setuid and setgid bits" : mode & 0o4000 ? "setuid bit" : "setgid bit";
    this.#skip(`${path}: ${bits} not kept (mode ${octal(mode & ~SETID)}; keepSetid, --keep-setid keeps them)`);
    return mode & ~SETID;
  }

  async #file(path: string, host: string, st: EntryStat, mode: number): Promise<void> {
    const fh = await this.#make(host, () => fsp.open(host, CREATE_FILE, 0o600));
    try {
      const data = this.view.read(path);
      const onData = this.options.onData;
      await writeAll(fh, onData ? tap(data, (c) => onData(c.byteLength)) : data);
      // Owner first: chown clears setuid and setgid bits, chmod then sets them.
      if (this.options.owners) await fh.chown(st.uid, st.gid);
      await fh.chmod(mode);
      await fh.utimes(st.mtimeMs / 1000, st.mtimeMs / 1000);
    } finally {
      await fh.close();
    }
  }

  /** Makes directory `host` (0700 until `finish`), or with `replace` enters the real directory there. */
  async #dir(host: string): Promise<void> {
    try {
      await fsp.mkdir(host, { mode: 0o700 });
    } catch (e) {
      if (!hasCode(e, "EEXIST") || !this.options.replace) throw e;
      const cur = await fsp.lstat(host);
      if (!cur.isDirectory()) {
        throw storeError("ENOTDIR", this.options.op, host, `${cur.isSymbolicLink() ? "a symlink" : "a non-directory"} this copy did not make is where a directory goes; nothing is written through it: remove it or copy elsewhere`);
      }
    }
  }

  /** Makes a FIFO or device node with a tool; with `replace`, what is in the way goes first. */
  async #node(host: string, cmd: string, args: string[]): Promise<void> {
    if (this.options.replace) await this.#clear(host);
    await run(cmd, args, host);
  }

  /** Runs `make`; on EEXIST with `replace`, removes the non-directory in the way and runs it again. */
  async #make<T>(host: string, make: () => Promise<T>): Promise<T> {
    try {
      return await make();
    } catch (e) {
      if (!hasCode(e, "EEXIST") || !this.options.replace) throw e;
    }
    await this.#clear(host);
    return await make();
  }

  /** Unlinks the non-directory at `host` (a symlink itself, never its target); a directory is refused. */
  async #clear(host: string): Promise<void> {
    let cur: fs.Stats;
    try {
      cur = await fsp.lstat(host);
    } catch (e) {
      if (hasCode(e, "ENOENT")) return;
      throw e;
    }
    if (cur.isDirectory()) throw storeError("EISDIR", this.options.op, host, "a directory is where a non-directory goes; remove it or copy elsewhere");
    await fsp.unlink(host);
  }
}
