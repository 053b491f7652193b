/**
 * Overlayfs changes as OCI ones: what containerd's unpacker writes into an overlay upper
 * directory (`archive.OverlayConvertWhiteout`), read back as a tar of that directory, is
 * turned into the OCI layer form the applier takes.
 *
 * - A character device 0/0 is overlayfs's whiteout: it becomes `.wh.<name>`.
 * - A directory with `trusted.overlay.opaque` = `y` hides what is below it: it stays, and
 *   a `.wh..wh..opq` follows it (before its children, which are this layer's own).
 * - Other `trusted.overlay.*` attributes are overlayfs's bookkeeping, not the layer's.
 * - The upper directory itself (`.` or `./`) is skipped, as containerd's applier skips an
 *   archive's root: the layer root keeps its attributes.
 *
 * @module
 */
import type { TarEntry } from "./entry.ts";

const OVERLAY_XATTR = "trusted.overlay.";
const OPAQUE_XATTR = "trusted.overlay.opaque";

/** An empty file entry named `name`, with `like`'s owner and time (a whiteout marker). */
function marker(name: string, like: TarEntry): TarEntry {
  return {
    name, type: "file", size: 0, mode: 0o644, uid: like.uid, gid: like.gid, mtimeMs: like.mtimeMs,
    devmajor: 0, devminor: 0, dataOffset: like.dataOffset, body: (async function* () {})(),
  };
}

/** `name` without a trailing slash, and its parent with one (or "" at the top). */
function split(name: string): { dir: string; base: string } {
  const n = name.replace(/\/+$/, "");
  const at = n.lastIndexOf("/");
  return { dir: at < 0 ? "" : n.slice(0, at + 1), base: n.slice(at + 1) };
}

/**
 * The entries of a tar of an overlay upper directory, in OCI form (see the module doc).
 *
 * @example
 * ```ts ignore
 * for await (const e of overlayToOci(readTar(tarOfUpper))) await applier.entry(e);
 * ```
 */
export async function* overlayToOci(entries: AsyncIterable<TarEntry>): AsyncGenerator<TarEntry> {
  for await (const entry of entries) {
    const { dir, base } = split(entry.name);
    if (base === "." || base === "") continue;
    if (entry.type === "char" && entry.devmajor === 0 && entry.devminor === 0) {
      yield marker(`${dir}.wh.${base}`, entry);
      continue;
    }
    let opaque = false;
    if (entry.xattrs?.size) {
      const kept = new Map<string, Uint8Array>();
      for (const [k, v] of entry.xattrs) {
        if (k === OPAQUE_XATTR) opaque = v.length === 1 && v[0] === 0x79; // "y"
        else if (!k.startsWith(OVERLAY_XATTR)) kept.set(k, v);
      }
      entry.xattrs = kept;
    }
    yield entry;
    if (opaque && entry.type === "dir") yield marker(`${entry.name.replace(/\/+$/, "")}/.wh..wh..opq`, entry);
  }
}
