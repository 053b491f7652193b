/**
 * Checking out a layer: writing its merged tree to a host directory, as a runtime needs
 * a rootfs. Modes, mtimes, symlinks and hard links always; owners and device nodes when
 * the process may (root); extended attributes are not written (Node and Deno have no
 * call for them) and are reported instead.
 *
 * @module
 */
import { execFile } from "node:child_process";
import fsp from "node:fs/promises";
import nodePath from "node:path";
import process from "node:process";
import { storeError } from "../common/errors.ts";
import { major, minor } from "./devices.ts";
import type { EntryStat } from "./entry.ts";
import { writeChunks } from "./hostio.ts";
import { childPath } from "./names.ts";
import { tap } from "./tap.ts";
import type { MergedView } from "./view.ts";

/** Options of {@linkcode checkout}. */
export interface CheckoutOptions {
  /** Set owners (uid/gid). Default: when running as root. */
  owners?: boolean;
  /** Make device nodes (needs root). Default: when running as root. */
  devices?: boolean;
  /**
   * Called as file data is written: bytes so far, and the total, which is not known
   * ahead (always 0: the merged tree is walked as it is written).
   */
  onProgress?: (done: number, total: number) => void;
}

/** What a checkout did. */
export interface CheckoutReport {
  /** Entries written (the root excluded). */
  entries: number;
  /** Entries or attributes that could not be written here, one line each. */
  skipped: string[];
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, _out, stderr) => (err ? reject(storeError("EPERM", cmd, args[0], String(stderr || err.message).trim())) : resolve()));
  });
}

/** Walks the view and writes the host tree. */
class Checkout {
  readonly report: CheckoutReport = { entries: 0, skipped: [] };
  /** Inode → host path written first, for hard links. */
  readonly #links = new Map<string, string>();
  /** Directories whose attributes are set last (writing inside would change mtimes and needs write permission). */
  readonly #dirs: [string, EntryStat][] = [];

  /** File data bytes written, for onProgress. */
  #bytes = 0;

  constructor(
    readonly view: MergedView,
    readonly root: string,
    readonly owners: boolean,
    readonly devices: boolean,
    readonly onProgress?: (done: number, total: number) => void,
  ) {}

  async walk(dir: string): Promise<void> {
    for (const name of (await this.view.readdir(dir)).sort()) {
      const path = childPath(dir, name);
      const st = await this.view.lstat(path);
      if (!st) continue;
      await this.#write(path, nodePath.join(this.root, path), st);
      if (st.type === "dir") await this.walk(path);
    }
  }

  async finish(): Promise<void> {
    // Deepest first, so setting a parent's mtime comes after its children are done.
    for (const [host, st] of this.#dirs.reverse()) await this.#attrs(host, st, false);
  }

  async #write(path: string, host: string, st: EntryStat): Promise<void> {
    const xattrs = await this.view.xattrs(path);
    if (xattrs?.size) this.report.skipped.push(`${path}: extended attributes ${[...xattrs.keys()].join(", ")} not written`);
    if (st.type !== "dir" && st.nlink > 1) {
      const first = this.#links.get(String(st.ino));
      if (first !== undefined) {
        await fsp.link(first, host);
        this.report.entries++;
        return;
      }
    }
    switch (st.type) {
      case "dir":
        await fsp.mkdir(host, { mode: 0o700 });
        this.#dirs.push([host, st]);
        this.report.entries++;
        return;
      case "file": {
        const data = this.view.read(path);
        const report = this.onProgress;
        await writeChunks(host, report ? tap(data, (c) => report(this.#bytes += c.byteLength, 0)) : data, 0o600);
        break;
      }
      case "symlink":
        await fsp.symlink(await this.view.readlink(path), host);
        break;
      case "fifo":
        await run("mkfifo", [host]);
        break;
      case "char":
      case "block":
        if (!this.devices) {
          this.report.skipped.push(`${path}: ${st.type} device ${major(st.rdev)},${minor(st.rdev)} not made (needs root)`);
          return;
        }
        try {
          await run("mknod", [host, st.type === "char" ? "c" : "b", String(major(st.rdev)), String(minor(st.rdev))]);
        } catch (e) {
          // Containers without CAP_MKNOD refuse even root: a rootfs is still usable without.
          this.report.skipped.push(`${path}: ${st.type} device not made (${(e as Error).message})`);
          return;
        }
        break;
      case "socket":
        this.report.skipped.push(`${path}: socket not made`);
        return;
    }
    if (st.nlink > 1) this.#links.set(String(st.ino), host);
    await this.#attrs(host, st, st.type === "symlink");
    this.report.entries++;
  }

  async #attrs(host: string, st: EntryStat, symlink: boolean): Promise<void> {
    // Owner first: chown clears setuid and setgid bits, chmod then sets them.
    if (this.owners) await (symlink ? fsp.lchown(host, st.uid, st.gid) : fsp.chown(host, st.uid, st.gid));
    if (!symlink) await fsp.chmod(host, st.mode & 0o7777);
    const t = st.mtimeMs / 1000;
    await (symlink ? fsp.lutimes(host, t, t) : fsp.utimes(host, t, t));
  }
}

/**
 * Writes the merged tree of `view` into `dir`, which must be absent or empty. The root's
 * own attributes are left as they are.
 *
 * @example
 * ```ts ignore
 * const report = await checkout(store.view("app"), "/run/app/rootfs");
 * for (const line of report.skipped) console.warn(line);
 * ```
 */
export async function checkout(view: MergedView, dir: string, options: CheckoutOptions = {}): Promise<CheckoutReport> {
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  await fsp.mkdir(dir, { recursive: true });
  if ((await fsp.readdir(dir)).length) throw storeError("ENOTEMPTY", "checkout", dir, "check out into an empty or new directory");
  const c = new Checkout(view, dir, options.owners ?? root, options.devices ?? root, options.onProgress);
  await c.walk("/");
  await c.finish();
  return c.report;
}
