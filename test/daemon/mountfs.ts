/**
 * A layer's files through its mount, as containerd reaches them: the bind mount that
 * Prepare, View or Mounts returned is made at a directory of this process's choosing
 * (`mount --bind`, or `--rbind`, then `-o remount,bind,ro` for a read-only one), and that
 * directory is wrapped in the calls of the layer file API the snapshotter suite uses
 * ({@linkcode SuiteFs}), done with node:fs/promises on paths under it, so errors keep
 * their codes (EROFS in a view). The binds go before Commit and Remove, as containerd
 * unmounts before either, and in {@linkcode LayerBinds.close}.
 *
 * Only for a process that does not serve the mount (a FUSE server that looks into its own
 * mount deadlocks): here the test process, with `thinstack serve` a child.
 *
 * @module
 */
import { spawn } from "node:child_process";
import fsp from "node:fs/promises";
import path from "node:path";
import type { MountMessage } from "../../src/daemon/definition.ts";
import type { TreeStats } from "../layers/helpers.ts";
import type { SuiteFs } from "../layers/snapshotter-suite.ts";
import { collect } from "./helpers.ts";

/** Runs mount(8) or umount(8); throws with its stderr when it fails. */
async function run(cmd: "mount" | "umount", args: string[]): Promise<void> {
  const r = await collect(spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }));
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.code}: ${r.stderr.trim()}`);
}

/** How a returned mount is made: the one bind mount a thinstack snapshot has. */
export function bindOf(key: string, mounts: MountMessage[]): { source: string; recursive: boolean; readOnly: boolean } {
  if (mounts.length !== 1) throw new Error(`${key}: expected one mount, got ${JSON.stringify(mounts)}`);
  const [m] = mounts;
  const opts = m.options ?? [];
  const recursive = opts.includes("rbind");
  if (m.type !== "bind" || (!recursive && !opts.includes("bind"))) throw new Error(`${key}: not a bind mount: ${JSON.stringify(m)}`);
  const readOnly = opts.includes("ro");
  if (readOnly === opts.includes("rw")) throw new Error(`${key}: neither ro nor rw, or both: ${JSON.stringify(m)}`);
  return { source: m.source, recursive, readOnly };
}

/** The binds of layers made in `base`, one per key, each made on the first call through its fs. */
export class LayerBinds {
  readonly #base: string;
  readonly #mounts: (key: string) => Promise<MountMessage[]>;
  readonly #binds = new Map<string, Promise<string>>();
  #count = 0;

  /** Binds go in `base` (an existing directory); `mounts` gives a key's mounts (Mounts, or what Prepare/View returned). */
  constructor(base: string, mounts: (key: string) => Promise<MountMessage[]>) {
    this.#base = base;
    this.#mounts = mounts;
  }

  /** Layer `key`'s files, through its bind (made on the first call). */
  fs(key: string): SuiteFs {
    return new HostFs(() => this.dir(key));
  }

  /** The directory layer `key` is bound at, binding it if it is not yet. */
  dir(key: string): Promise<string> {
    let p = this.#binds.get(key);
    if (!p) {
      p = this.#bind(key);
      this.#binds.set(key, p);
      p.catch(() => this.#binds.get(key) === p && this.#binds.delete(key));
    }
    return p;
  }

  /** The keys bound now. */
  bound(): string[] {
    return [...this.#binds.keys()];
  }

  /** Unmounts `key`'s bind if there is one (before Commit and Remove). */
  async unmount(key: string): Promise<void> {
    const p = this.#binds.get(key);
    if (!p) return;
    this.#binds.delete(key);
    const dir = await p.catch(() => undefined);
    if (!dir) return;
    await run("umount", [dir]);
    await fsp.rmdir(dir);
  }

  /** Unmounts every bind; one that will not go is detached lazily. Throws the first failure once all are gone. */
  async close(): Promise<void> {
    let first: unknown;
    for (const key of this.bound()) {
      const p = this.#binds.get(key)!;
      try {
        await this.unmount(key);
      } catch (e) {
        first ??= e;
        const dir = await p.catch(() => undefined);
        if (dir) await run("umount", ["-l", dir]).catch(() => {});
      }
    }
    if (first) throw first;
  }

  async #bind(key: string): Promise<string> {
    const { source, recursive, readOnly } = bindOf(key, await this.#mounts(key));
    const dir = path.join(this.#base, `bind-${++this.#count}`);
    await fsp.mkdir(dir);
    let mounted = false;
    try {
      await run("mount", [recursive ? "--rbind" : "--bind", source, dir]);
      mounted = true;
      if (readOnly) await run("mount", ["-o", "remount,bind,ro", dir]);
      return dir;
    } catch (e) {
      if (mounted) await run("umount", ["-l", dir]).catch(() => {});
      await fsp.rmdir(dir).catch(() => {});
      throw e;
    }
  }
}

/** The suite's file calls on a directory of the host: a layer path `/a/b` is `DIR/a/b`. */
class HostFs implements SuiteFs {
  readonly #dir: () => Promise<string>;

  constructor(dir: () => Promise<string>) {
    this.#dir = dir;
  }

  async #path(p: string): Promise<string> {
    const dir = await this.#dir();
    // Layer paths are absolute in the layer (a relative one is from its root); `..` stops at the root.
    return path.join(dir, path.posix.resolve("/", p));
  }

  async writeFile(p: string, data: string | Uint8Array, options?: { mode?: number }): Promise<void> {
    await fsp.writeFile(await this.#path(p), data, options);
  }

  async mkdir(p: string, o?: { mode?: number; recursive?: boolean }): Promise<string | undefined> {
    const dir = await this.#dir();
    const made = await fsp.mkdir(await this.#path(p), o);
    // As LayerFs: the first directory made, as a layer path.
    return made === undefined ? undefined : path.posix.resolve("/", path.relative(dir, made));
  }

  async rm(p: string, o?: { recursive?: boolean; force?: boolean }): Promise<void> {
    await fsp.rm(await this.#path(p), o);
  }

  async chmod(p: string, mode: number): Promise<void> {
    await fsp.chmod(await this.#path(p), mode);
  }

  async chown(p: string, uid: number, gid: number): Promise<void> {
    await fsp.chown(await this.#path(p), uid, gid);
  }

  async link(a: string, b: string): Promise<void> {
    await fsp.link(await this.#path(a), await this.#path(b));
  }

  async rename(a: string, b: string): Promise<void> {
    await fsp.rename(await this.#path(a), await this.#path(b));
  }

  async stat(p: string): Promise<TreeStats> {
    return await fsp.stat(await this.#path(p));
  }

  async lstat(p: string): Promise<TreeStats> {
    return await fsp.lstat(await this.#path(p));
  }

  async readdir(p: string): Promise<string[]> {
    return await fsp.readdir(await this.#path(p));
  }

  async readFile(p: string): Promise<Uint8Array> {
    return await fsp.readFile(await this.#path(p));
  }

  async readlink(p: string): Promise<string> {
    return await fsp.readlink(await this.#path(p));
  }
}
