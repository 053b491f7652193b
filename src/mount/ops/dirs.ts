/**
 * Directories: OPENDIR, READDIR, READDIRPLUS (entries with their attributes and nodes,
 * which saves the kernel a LOOKUP each), RELEASEDIR and FSYNCDIR (a commit, as fsync).
 * A handle lists the directory once, at its first read (again after a rewind), and
 * serves that listing by index: an entry's offset is its index plus one. Directories of
 * layers are cached by the kernel (FOPEN_CACHE_DIR, kept across opens): those of views
 * and committed layers never change, and those of active layers change through the
 * mount, where the kernel drops its copy of a directory it changes (and of one whose
 * mtime it sees change). The served root's listing (the layers served) is not cached.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { storeError } from "../../common/errors.ts";
import type { Ino } from "../../layers/inode.ts";
import type { FoundNode } from "../../layers/nodes.ts";
import { direntPlusSize, direntSize, Reply } from "../codec.ts";
import type { FuseNode } from "../nodetable.ts";
import { Fopen, Op, Size } from "../protocol.ts";
import { attrOf, type OpenDir, type Session } from "../session.ts";

const DT_DIR = 4;

/** Registers the directory handlers on `s`. */
export function registerDirs(s: Session): void {
  s.handlers.set(Op.OPENDIR, (req) => {
    const node = s.dir(req);
    const fh = s.open({ kind: "dir", node });
    return Reply.of(Size.OPEN_OUT).u64(fh).u32(node.kind === "dir" ? Fopen.CACHE_DIR | Fopen.KEEP_CACHE : 0).u32(0);
  });

  const handle = (fh: number): OpenDir => {
    const h = s.handles.get(fh);
    if (!h || h.kind !== "dir") throw storeError("EBADF", "readdir", undefined, `no open directory ${fh}`);
    return h;
  };

  const listing = async (node: FuseNode): Promise<[string, Ino][]> => {
    if (node.kind === "root") return [...s.layers.values()].map((l) => [l.name, l.nodes.root]);
    return await node.served!.nodes.list(node.ino, node.path);
  };

  /** What each entry of `names` is (the roots of layers in a served root). */
  const describe = async (node: FuseNode, entries: [string, Ino][]): Promise<(FoundNode | undefined)[]> => {
    if (node.kind !== "root") return await node.served!.nodes.statMany(entries.map(([, ino]) => ino));
    return await Promise.all(entries.map(([name]) => {
      const served = s.layers.get(name);
      return served ? served.nodes.stat(served.nodes.root) : undefined;
    }));
  };

  const readdir = async (fh: number, offset: number, size: number, plus: boolean) => {
    const h = handle(fh);
    if (offset === 0 || !h.entries) h.entries = await listing(h.node);
    const all = h.entries;
    const r = Reply.of(size);
    const limit = size;
    let used = 0;
    let i = offset;
    // "." and "..": offsets 1 and 2; the kernel ignores their entries in READDIRPLUS.
    for (; i < 2; i++) {
      const name = Buffer.from(i === 0 ? "." : "..");
      const need = plus ? direntPlusSize(name.byteLength) : direntSize(name.byteLength);
      if (used + need > limit) return r;
      if (plus) r.entry(0, 0, 0, undefined);
      r.dirent(h.node.ino, i + 1, DT_DIR, name, limit);
      used += need;
    }
    const per = plus ? direntPlusSize(16) : direntSize(16);
    const batch = all.slice(i - 2, i - 2 + Math.ceil(size / per) + 1);
    const found = await describe(h.node, batch);
    for (let j = 0; j < batch.length; j++, i++) {
      const [nameStr, ino] = batch[j];
      const f = found[j];
      const name = Buffer.from(nameStr);
      const need = plus ? direntPlusSize(name.byteLength) : direntSize(name.byteLength);
      if (used + need > limit) break;
      used += need;
      if (!f) {
        // Gone since the listing: a hole in the offsets, nothing to show.
        if (plus) r.entry(0, 0, 0, undefined);
        r.dirent(ino, i + 1, 0, name, limit);
        continue;
      }
      if (plus) {
        if (h.node.kind === "root") {
          const served = s.layers.get(nameStr)!;
          const node = s.table.counted(s.layerRoot(served));
          r.entry(node.id, s.options.activeTimeout, s.timeouts(served, node).attr, attrOf(f.ino, f.inode));
        } else {
          const e = s.entryNode(h.node, nameStr, f).reply;
          r.raw(e.buf.subarray(Size.OUT_HEADER, e.pos));
        }
      }
      r.dirent(f.ino, i + 1, (f.inode.mode >>> 12) & 0xf, name, limit);
    }
    return r;
  };

  const read = (plus: boolean) => (req: Parameters<typeof s.node>[0]) => {
    const fh = req.u64();
    const offset = req.u64();
    const size = req.u32();
    return readdir(fh, offset, size, plus);
  };
  s.handlers.set(Op.READDIR, read(false));
  s.handlers.set(Op.READDIRPLUS, read(true));

  s.handlers.set(Op.RELEASEDIR, (req) => {
    s.handles.delete(req.u64());
    return Reply.of(0);
  });

  s.handlers.set(Op.FSYNCDIR, async () => {
    await s.sync();
    return Reply.of(0);
  });
}
