/**
 * Writing a layer's changes as an OCI changeset tar (image-spec layer.md): added and
 * modified entries in full with their parent directories, an explicit whiteout per
 * deletion, an opaque whiteout only where a directory was replaced, hard-link groups as
 * hard links. Entries go in path order (a directory before its children), and headers
 * carry only what the layer records, so the same layer always gives the same bytes.
 * File data streams through: memory holds the list of changes, never their contents.
 *
 * @module
 */
import { major, minor } from "./devices.ts";
import type { EntryStat } from "./entry.ts";
import { childPath, OPAQUE_WHITEOUT, WHITEOUT_PREFIX } from "./names.ts";
import { type TarWriter, writeTar } from "./tarwrite.ts";
import type { Change, LayerSource } from "./view.ts";

/**
 * Path order: component by component, so a directory's entries follow it together (`/`
 * sorts before every other character).
 */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x === 0x2f) return -1;
    if (y === 0x2f) return 1;
    return x - y;
  }
  return a.length - b.length;
}

function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function isUnder(path: string, dir: string): boolean {
  return dir === "/" || path.startsWith(`${dir}/`);
}

/** The tar name of an absolute path: relative, no leading `./`. */
function tarName(path: string): string {
  return path.slice(1);
}

/** Whiteouts and opaque markers: empty files, mode 0, time 0, so nothing varies. */
const MARKER = { type: "file" as const, size: 0, mode: 0, uid: 0, gid: 0, mtimeMs: 0 };

/** One pass over the sorted changes. */
class ChangesetWriter {
  /** Emitted directories on the way to the current path, outermost first. */
  readonly #open: string[] = [];
  /** Inode of a multiply-linked entry → tar name it was written under first. */
  readonly #links = new Map<string, string>();
  /** Deleted or opaque directories: deletions below them need no whiteout. */
  #covered: string[] = [];

  constructor(readonly src: LayerSource, readonly w: TarWriter) {}

  async change(c: Change): Promise<void> {
    this.#covered = this.#covered.filter((d) => isUnder(c.path, d));
    if (c.kind === "deleted") {
      if (this.#covered.length) return;
      await this.#parents(c.path);
      const name = c.path.slice(c.path.lastIndexOf("/") + 1);
      await this.w.add({ ...MARKER, name: tarName(childPath(parentOf(c.path), WHITEOUT_PREFIX + name)) });
      this.#covered.push(c.path);
      return;
    }
    const st = await this.src.lstat(c.path);
    if (!st || st.type === "socket") return; // gone since listed; sockets are not layer content
    await this.#parents(c.path);
    await this.#entry(c.path, st);
    if (st.type === "dir") {
      this.#open.push(c.path);
      if (c.opaque) {
        await this.w.add({ ...MARKER, name: tarName(`${c.path}/${OPAQUE_WHITEOUT}`) });
        this.#covered.push(c.path);
      }
    }
  }

  /** Writes the directories leading to `path` that are not written yet. */
  async #parents(path: string): Promise<void> {
    while (this.#open.length && !isUnder(path, this.#open[this.#open.length - 1])) this.#open.pop();
    const missing: string[] = [];
    for (let p = parentOf(path); p !== "/" && p !== this.#open[this.#open.length - 1]; p = parentOf(p)) missing.unshift(p);
    for (const dir of missing) {
      const st = await this.src.lstat(dir);
      if (st?.type !== "dir") continue;
      await this.#entry(dir, st);
      this.#open.push(dir);
    }
  }

  async #entry(path: string, st: EntryStat): Promise<void> {
    const name = tarName(path);
    const xattrs = await this.src.xattrs(path);
    const attrs = { name, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs, ...(xattrs?.size ? { xattrs } : {}) };
    if (st.type !== "dir" && st.nlink > 1) {
      const key = String(st.ino);
      const first = this.#links.get(key);
      if (first !== undefined) return this.w.add({ ...attrs, type: "link", linkname: first });
      this.#links.set(key, name);
    }
    switch (st.type) {
      case "file":
        return this.w.add({ ...attrs, type: "file", size: st.size }, this.src.read(path));
      case "dir":
        return this.w.add({ ...attrs, type: "dir" });
      case "symlink":
        return this.w.add({ ...attrs, type: "symlink", linkname: await this.src.readlink(path) });
      case "char":
      case "block":
        return this.w.add({ ...attrs, type: st.type, devmajor: major(st.rdev), devminor: minor(st.rdev) });
      case "fifo":
        return this.w.add({ ...attrs, type: "fifo" });
    }
  }
}

/**
 * The changeset tar of `source` (uncompressed), as a stream.
 *
 * @example
 * ```ts ignore
 * import { changeset } from "./changeset.ts";
 * import { writeChunks } from "./hostio.ts";
 * await writeChunks("layer.tar", changeset(store.source("app")));
 * ```
 */
export async function* changeset(source: LayerSource): AsyncGenerator<Uint8Array> {
  // The last word on a path wins; a deletion followed by a re-creation is a change.
  const byPath = new Map<string, Change>();
  for await (const c of source.changes()) {
    const prev = byPath.get(c.path);
    byPath.set(c.path, prev && c.kind === "deleted" && prev.kind !== "deleted" ? prev : c);
  }
  byPath.delete("/");
  const changes = [...byPath.values()].sort((a, b) => comparePaths(a.path, b.path));
  byPath.clear();
  yield* writeTar(async (w) => {
    const writer = new ChangesetWriter(source, w);
    for (const c of changes) await writer.change(c);
  });
}
