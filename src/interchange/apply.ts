/**
 * Applying a layer changeset (a layer tarball) to a layer, by the OCI image-spec rules
 * (layer.md) with containerd's path handling:
 *
 * - `.wh.<name>` removes `<name>` from the layers below; `.wh..wh..opq` hides every lower
 *   entry of its directory, whatever its position in the archive.
 * - Whiteouts affect lower layers only, never entries of the same archive, whichever
 *   comes first: the applier remembers what the archive made and spares it.
 * - An entry replacing a path of another type removes it first; a directory entry over
 *   a directory changes only its attributes, and the children stay.
 * - Names, hard-link targets and symlinked parents resolve inside the layer's root.
 *
 * The applier writes as it reads. To leave the layer untouched on failure, run it on a
 * scratch copy (see `LayerHost.transaction`).
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { ByteTaps } from "./compression.ts";
import { makedev } from "./devices.ts";
import type { EntryAttrs, EntryStat, TarEntry } from "./entry.ts";
import { childPath, cleanComponents, parseWhiteout, toPath, type Whiteout } from "./names.ts";
import { overlayToOci } from "./overlay.ts";
import { resolveInRoot } from "./resolve.ts";
import { type ByteSource, describeSource } from "./source.ts";
import type { LayerTarget, NewEntry } from "./target.ts";
import { readTar } from "./tarread.ts";

/** Options of {@linkcode applyTar}. */
export interface ApplyOptions {
  /** Taps on the raw and decompressed bytes, for digests. */
  taps?: ByteTaps;
  /** How errors name the archive. */
  name?: string;
  /**
   * How the archive marks deletions: `oci` (`.wh.` files, the default), or `overlay`, a
   * tar of an overlayfs upper directory (0/0 character devices, `trusted.overlay.opaque`;
   * see overlay.ts).
   */
  whiteouts?: "oci" | "overlay";
}

/** What an apply did. */
export interface ApplyResult {
  /** Archive entries read (whiteouts included). */
  entries: number;
  /** Bytes of file data written. */
  bytes: number;
  /** Whiteout and opaque entries. */
  whiteouts: number;
}

/** Made by an entry of the archive itself. */
const ENTRY = 1;
/** A directory on the way to such an entry (it may also hold lower entries). */
const ANCESTOR = 2;

/** The state of one apply. */
class Applier {
  readonly result: ApplyResult = { entries: 0, bytes: 0, whiteouts: 0 };
  readonly #t: LayerTarget;
  readonly #what: string;
  /** Paths the archive made, and their ancestors: whiteouts must spare them. */
  readonly #made = new Map<string, number>();
  /** Paths known to be real directories: saves lookups while resolving. */
  readonly #dirs = new Set<string>(["/"]);
  /** Directory attributes, set again at the end, since making children changes mtimes. */
  readonly #dirAttrs = new Map<string, EntryAttrs>();

  constructor(target: LayerTarget, what: string) {
    this.#t = target;
    this.#what = what;
  }

  async entry(e: TarEntry): Promise<void> {
    this.result.entries++;
    const comps = cleanComponents(e.name);
    // An entry naming the root (`./`, `/`, `..`) is ignored, as containerd does.
    if (comps.length === 0) return;
    const base = comps[comps.length - 1];
    const wh = parseWhiteout(base, e.name);
    if (wh) {
      this.result.whiteouts++;
      return this.#whiteout(comps.slice(0, -1), wh);
    }
    const parent = await resolveInRoot(this.#t, comps.slice(0, -1), true, this.#dirs);
    await this.#ensureDirs(parent, e);
    const path = childPath(toPath(parent), base);
    const existing = await this.#t.lstat(path);
    const attrs = attrsOf(e);
    if (e.type === "link") {
      await this.#link(e, path, existing);
    } else if (e.type === "dir" && existing?.type === "dir") {
      await this.#t.setAttrs(path, attrs);
    } else {
      if (existing) await this.#remove(path, existing);
      await this.#t.create(path, this.#newEntry(e), attrs);
      this.result.bytes += e.size;
    }
    if (e.type === "dir") {
      this.#dirs.add(path);
      this.#dirAttrs.set(path, attrs);
    }
    this.#mark(path);
  }

  async finish(): Promise<void> {
    for (const [path, attrs] of this.#dirAttrs) {
      if ((await this.#t.lstat(path))?.type === "dir") await this.#t.setAttrs(path, attrs);
    }
  }

  #newEntry(e: TarEntry): NewEntry {
    switch (e.type) {
      case "file":
        return { type: "file", size: e.size, data: e.body };
      case "dir":
        return { type: "dir" };
      case "symlink":
        if (!e.linkname) throw storeError("EINVAL", "apply", e.name, `symlink with an empty target in ${this.#what}`);
        return { type: "symlink", target: e.linkname };
      case "char":
      case "block":
        return { type: e.type, rdev: makedev(e.devmajor, e.devminor) };
      case "fifo":
        return { type: "fifo" };
      default:
        throw storeError("EINVAL", "apply", e.name, `unexpected entry type ${e.type}`);
    }
  }

  /** A hard link: its target resolves inside the root; the final component is not followed. */
  async #link(e: TarEntry, path: string, existing: EntryStat | undefined): Promise<void> {
    const comps = cleanComponents(e.linkname ?? "");
    if (comps.length === 0) throw storeError("EINVAL", "link", e.name, `hard link to the layer's root in ${this.#what}`);
    const dir = await resolveInRoot(this.#t, comps.slice(0, -1), true, this.#dirs);
    const target = childPath(toPath(dir), comps[comps.length - 1]);
    if (target === path) return; // a link to itself: already there
    const st = await this.#t.lstat(target);
    if (!st) {
      throw storeError("EINVAL", "link", e.name, `hard link target '${e.linkname}' does not exist: it must come earlier in ${this.#what} or be in a lower layer`);
    }
    if (st.type === "dir") throw storeError("EINVAL", "link", e.name, `hard link to directory '${e.linkname}' in ${this.#what}`);
    if (existing) await this.#remove(path, existing);
    await this.#t.link(target, path);
  }

  /** Creates missing parents (0755 root:root, as containerd does); a non-directory on the way fails. */
  async #ensureDirs(parent: string[], e: TarEntry): Promise<void> {
    for (let i = 1; i <= parent.length; i++) {
      const p = toPath(parent.slice(0, i));
      if (this.#dirs.has(p)) continue;
      const st = await this.#t.lstat(p);
      if (!st) {
        await this.#t.create(p, { type: "dir" }, { mode: 0o755, uid: 0, gid: 0, mtimeMs: e.mtimeMs });
      } else if (st.type !== "dir") {
        throw storeError("ENOTDIR", "apply", e.name, `'${p}' is not a directory (in ${this.#what})`);
      }
      this.#dirs.add(p);
    }
  }

  async #whiteout(parentComps: string[], wh: Whiteout): Promise<void> {
    if (wh.kind === "meta") return;
    const dir = toPath(await resolveInRoot(this.#t, parentComps, true, this.#dirs));
    // Nothing below a missing directory (or a dangling symlink) to hide: a no-op.
    if ((await this.#t.lstat(dir))?.type !== "dir") return;
    if (wh.kind === "opaque") return this.#hideLower(dir);
    const path = childPath(dir, wh.name);
    const st = await this.#t.lstat(path);
    if (!st) return;
    if (!this.#made.has(path)) await this.#remove(path, st);
    else if (st.type === "dir") await this.#hideLower(path);
    // A non-directory the archive made stays: whiteouts affect lower layers only.
  }

  /** Hides every lower entry below `dir`, keeping what the archive made. */
  async #hideLower(dir: string): Promise<void> {
    await this.#prune(dir);
    await this.#t.markOpaque?.(dir);
  }

  async #prune(dir: string): Promise<void> {
    for (const name of (await this.#t.readdir(dir)).sort()) {
      const p = childPath(dir, name);
      const st = await this.#t.lstat(p);
      if (!st) continue;
      if (!this.#made.has(p)) await this.#remove(p, st);
      else if (st.type === "dir") await this.#prune(p);
    }
  }

  async #remove(path: string, st: EntryStat): Promise<void> {
    await this.#t.remove(path);
    // Directories below are gone: forget them all rather than search the set.
    if (st.type === "dir") {
      this.#dirs.clear();
      this.#dirs.add("/");
    }
  }

  #mark(path: string): void {
    this.#made.set(path, ENTRY);
    for (let p = parentOf(path); p !== "/" && !this.#made.has(p); p = parentOf(p)) this.#made.set(p, ANCESTOR);
  }
}

function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function attrsOf(e: TarEntry): EntryAttrs {
  const a: EntryAttrs = { mode: e.mode, uid: e.uid, gid: e.gid, mtimeMs: e.mtimeMs };
  if (e.xattrs?.size) a.xattrs = e.xattrs;
  return a;
}

/**
 * Applies the layer tarball `source` (a path, bytes, a Node or web stream; plain or
 * gzip) to `target`. Invalid whiteouts and malformed archives fail with EINVAL; the
 * target is then partly written, so callers run this on a scratch copy.
 *
 * @example
 * ```ts ignore
 * import { applyTar } from "./apply.ts";
 * const { entries } = await applyTar(target, "layer.tar.gz");
 * ```
 */
export async function applyTar(target: LayerTarget, source: ByteSource, options: ApplyOptions = {}): Promise<ApplyResult> {
  const what = options.name ?? describeSource(source);
  const applier = new Applier(target, what);
  const entries = readTar(source, { taps: options.taps, name: what });
  for await (const entry of options.whiteouts === "overlay" ? overlayToOci(entries) : entries) await applier.entry(entry);
  await applier.finish();
  return applier.result;
}
