/**
 * Where containerd's unpacker writes an image layer: an overlayfs upper directory on the
 * store's own disk, applied to the layer in one pass at Commit.
 *
 * Through the FUSE mount every file the unpacker makes costs a dozen round trips to the
 * server (LOOKUP, CREATE, GETXATTR, WRITE, four SETATTRs...), ~68 µs each. containerd
 * applies a layer straight into an overlay mount's `upperdir` without mounting anything
 * (diff/apply `apply()` for a mount of type overlay, with overlayfs's whiteouts), so
 * Prepare of an extraction snapshot (key `extract-<n> <chainID>`, as its unpackers make
 * them) answers with an overlay mount
 * of a staging directory over the parent layer's served directory. The unpacker writes
 * at the disk's speed; Commit reads the upper back as a tar (GNU tar: it keeps xattrs and
 * hard links) and applies it to the layer with overlayfs's whiteouts turned into OCI ones
 * (interchange/overlay.ts), then commits. Container layers stay on the FUSE mount, with
 * the block copy-on-write underneath.
 *
 * The lower directory is only read by containerd, for the attributes of the parent
 * directories a layer's tar leaves out. Staging directories outlive a daemon that died:
 * at start those of layers the store no longer has as active go.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fsp from "node:fs/promises";
import path from "node:path";
import { Buffer } from "node:buffer";
import { storeError } from "../common/errors.ts";
import type { MountMessage } from "./definition.ts";

/**
 * containerd's `snapshots.UnpackKeyFormat` ("extract-%s %s": a unique part and the ChainID),
 * behind the namespace and counter its metadata store adds. Both its unpackers make keys
 * so (the client's, for `ctr images pull`, without the label), and its Windows and LCOW
 * snapshotters tell unpacks apart by that prefix too.
 */
const UNPACK_KEY = /(?:^|\/)extract-\S+ sha256:[0-9a-f]{64}$/;

/** Applies a tar of an upper directory to active layer `key`, overlayfs whiteouts and all. */
export type ApplyUpper = (key: string, tar: AsyncIterable<Uint8Array>) => Promise<unknown>;

/** A staged layer's directories. */
export interface StagingDirs {
  upper: string;
  work: string;
  /** An empty directory: the lower of a layer with no parent. */
  empty: string;
}

/**
 * The staging directories of a daemon's store.
 *
 * @example
 * ```ts ignore
 * const staging = new UnpackStaging("/var/lib/thinstack/staging", (key, tar) => store.apply(key, tar, { whiteouts: "overlay" }));
 * if (UnpackStaging.isUnpack(key)) mounts = [overlayMount(await staging.create(key), lower)];
 * // ... containerd writes into the upper, then Commit:
 * await staging.applyTo(key);
 * ```
 */
export class UnpackStaging {
  readonly root: string;
  readonly #apply: ApplyUpper;
  #spread: Promise<boolean> | undefined;

  constructor(root: string, apply: ApplyUpper) {
    this.root = root;
    this.#apply = apply;
  }

  /** Whether a Prepare of `key` is containerd's unpacker making an image layer. */
  static isUnpack(key: string): boolean {
    return UNPACK_KEY.test(key);
  }

  #dir(key: string): string {
    return path.join(this.root, createHash("sha256").update(key).digest("hex").slice(0, 32));
  }

  #dirs(key: string): StagingDirs {
    const d = this.#dir(key);
    return { upper: path.join(d, "upper"), work: path.join(d, "work"), empty: path.join(d, "empty") };
  }

  /** Makes `key`'s staging directories (empty), with the key noted beside them for restore. */
  async create(key: string): Promise<StagingDirs> {
    this.#spread ??= spreadSubdirs(this.root);
    await this.#spread;
    const dirs = this.#dirs(key);
    await fsp.rm(this.#dir(key), { recursive: true, force: true });
    for (const d of [dirs.upper, dirs.work, dirs.empty]) await fsp.mkdir(d, { recursive: true, mode: 0o755 });
    await fsp.writeFile(path.join(this.#dir(key), "key"), key);
    return dirs;
  }

  /** `key`'s directories, if it is staged. */
  async staged(key: string): Promise<StagingDirs | undefined> {
    const dirs = this.#dirs(key);
    return (await fsp.stat(dirs.upper).catch(() => undefined))?.isDirectory() ? dirs : undefined;
  }

  /** Applies what the unpacker wrote to layer `key` (which it must then be committed). */
  async applyTo(key: string): Promise<void> {
    const dirs = await this.staged(key);
    if (!dirs) throw storeError("ENOENT", "commit", key, "the layer has no staging directory");
    await this.#apply(key, tarOf(dirs.upper));
  }

  /**
   * What the unpacker has written so far, as containerd's overlayfs snapshotter reports an
   * active snapshot: the upper directory's entries and bytes (its blocks, as `du` counts).
   */
  async usage(dirs: StagingDirs): Promise<{ size: number; inodes: number }> {
    let size = 0;
    let inodes = 0;
    const walk = async (dir: string): Promise<void> => {
      for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const p = path.join(dir, e.name);
        const st = await fsp.lstat(p).catch(() => undefined);
        if (!st) continue; // gone meanwhile: the unpacker replaced it
        inodes++;
        size += st.blocks * 512;
        if (st.isDirectory()) await walk(p);
      }
    };
    await walk(dirs.upper);
    return { size, inodes };
  }

  /** Deletes `key`'s staging directories (after Commit or Remove); nothing for a key not staged. */
  async drop(key: string): Promise<void> {
    await fsp.rm(this.#dir(key), { recursive: true, force: true });
  }

  /** Deletes the staging directories of every key not in `active` (at start: what a daemon that died left). */
  async restore(active: readonly string[]): Promise<void> {
    const keep = new Set(active);
    for (const name of await fsp.readdir(this.root).catch(() => [] as string[])) {
      const key = await fsp.readFile(path.join(this.root, name, "key"), "utf8").catch(() => undefined);
      if (key === undefined || !keep.has(key)) await fsp.rm(path.join(this.root, name), { recursive: true, force: true });
    }
  }
}

/**
 * Marks `dir` as a top of directory hierarchies (ext4's `T` attribute, `chattr +T`), so that
 * ext4 places each new subdirectory, with the files later made in it, in a block group of
 * its own choosing (Orlov) instead of its parent's. Without a journal, ext4 passes over
 * every inode freed in the last 30 seconds when it allocates one, one by one: a layer
 * unpacked beside the upper just dropped after the previous layer's Commit paid for each
 * of those inodes on each file it made (on this machine's ext4, 2,400 files took 1.2 s
 * beside 2,400 just deleted, 50 ms in a fresh group). Other filesystems, or no `chattr`:
 * nothing changes, and the result is false.
 *
 * @example
 * ```ts ignore
 * if (!await spreadSubdirs("/var/lib/thinstack/staging")) console.log("not ext4: left as it is");
 * ```
 */
export async function spreadSubdirs(dir: string): Promise<boolean> {
  await fsp.mkdir(dir, { recursive: true });
  return await new Promise<boolean>((resolve) => {
    const child = spawn("chattr", ["+T", dir], { stdio: "ignore" });
    child.on("error", () => resolve(false));
    child.on("close", (code) => resolve(code === 0));
  });
}

/**
 * The overlay mount of a staged layer over `lower`. containerd never mounts it for an
 * unpack: its applier writes into `upperdir`, reading `lowerdir` for parent directories'
 * attributes. Anyone else mounting it gets the layer's tree as it is being written.
 */
export function overlayMount(dirs: StagingDirs, lower: string): MountMessage {
  return { type: "overlay", source: "overlay", target: "", options: [`workdir=${dirs.work}`, `upperdir=${dirs.upper}`, `lowerdir=${lower}`] };
}

/**
 * A tar of directory `dir` by GNU tar (POSIX format: xattrs of every namespace, hard links,
 * sparse files, numeric owners); a tar that fails (exit code, a missing binary) fails the
 * stream at its end with its stderr.
 */
export async function* tarOf(dir: string): AsyncGenerator<Uint8Array> {
  const child = spawn("tar", [
    "--create", "--file=-", "--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--sparse",
    "--pax-option=delete=atime,delete=ctime", "--one-file-system", "--directory", dir, ".",
  ], { stdio: ["ignore", "pipe", "pipe"] });
  const errors: Buffer[] = [];
  child.stderr!.on("data", (b: Buffer) => errors.push(b));
  const exited = new Promise<number | string>((resolve) => {
    child.on("error", (e) => resolve(e.message));
    child.on("close", (code, signal) => resolve(code ?? String(signal)));
  });
  let read = false;
  try {
    for await (const chunk of child.stdout! as AsyncIterable<Buffer>) yield chunk;
    read = true;
  } finally {
    // The reader stopped early (a failed apply): tar need not go on.
    if (!read) child.kill();
  }
  const status = await exited;
  if (status !== 0) {
    const said = Buffer.concat(errors).toString().trim().split("\n")[0] ?? "";
    throw storeError("EIO", "commit", dir, `tar of the unpacked layer failed (${typeof status === "number" ? `exit code ${status}` : status})${said ? `: ${said}` : ""}`);
  }
}
