/**
 * Names: LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, UNLINK, RMDIR, RENAME and RENAME2. Each
 * works in the layer of the directory node it names (directories are per layer), so
 * the layer is always known; a file's copy-up that a change implies (a rename sets its
 * ctime, a link its link count) is followed by invalidating the layer's other names of
 * the file's shared node (see shared.ts).
 *
 * @module
 */
import { storeError } from "../../common/errors.ts";
import { isDir, S_IFDIR, S_IFLNK } from "../../layers/inode.ts";
import { join } from "../../layers/path.ts";
import { Reply, type Request } from "../codec.ts";
import type { FuseNode, ServedLayer } from "../nodetable.ts";
import { Op, Rename, Size } from "../protocol.ts";
import { attrOf, type Session } from "../session.ts";

/** Registers the name handlers on `s`. */
export function registerEntries(s: Session): void {
  s.handlers.set(Op.LOOKUP, async (req) => {
    const parent = s.dir(req);
    const name = req.cstring();
    if (parent.kind === "root") {
      const served = s.layers.get(name);
      if (!served) return negative(0);
      const found = await served.nodes.stat(served.nodes.root);
      if (!found) throw storeError("EIO", "lookup", served.key, "the layer has no root directory");
      const node = s.table.counted(s.layerRoot(served));
      const t = s.timeouts(served, node);
      return Reply.of(Size.ENTRY_OUT).entry(node.id, s.options.activeTimeout, t.attr, attrOf(found.ino, found.inode));
    }
    const served = parent.served!;
    let found = await served.nodes.lookup(parent.ino, parent.path, name);
    if (!found) return negative(s.timeouts(served).entry);
    if (s.options.share) found = await s.shared.onLookup(req, parent, found);
    return s.entry(parent, name, found);
  });

  s.handlers.set(Op.MKNOD, async (req) => {
    const parent = s.dir(req);
    const mode = req.u32();
    const rdev = req.u32();
    req.skip(8);
    const name = req.cstring();
    const served = s.changing(parent, "mknod");
    return s.entry(parent, name, await served.nodes.create(parent.ino, parent.path, name, { mode, rdev, uid: req.uid, gid: req.gid }));
  });

  s.handlers.set(Op.MKDIR, async (req) => {
    const parent = s.dir(req);
    const mode = req.u32();
    req.skip(4);
    const name = req.cstring();
    const served = s.changing(parent, "mkdir");
    return s.entry(parent, name, await served.nodes.create(parent.ino, parent.path, name, { mode: S_IFDIR | (mode & 0o7777), uid: req.uid, gid: req.gid }));
  });

  s.handlers.set(Op.SYMLINK, async (req) => {
    const parent = s.dir(req);
    const name = req.cstring();
    const target = req.cstring();
    const served = s.changing(parent, "symlink");
    return s.entry(parent, name, await served.nodes.create(parent.ino, parent.path, name, { mode: S_IFLNK | 0o777, target, uid: req.uid, gid: req.gid }));
  });

  s.handlers.set(Op.LINK, async (req) => {
    const parent = s.dir(req);
    const old = s.node(req, req.u64());
    const name = req.cstring();
    const served = s.changing(parent, "link");
    if (old.kind !== "file") throw storeError("EPERM", "link", join(parent.path, name), "directories cannot be hard linked");
    await sameLayer(old, served, "link");
    const done = s.shared.watch(served, [old.ino]);
    const found = await served.nodes.link(old.ino, parent.ino, parent.path, name);
    done();
    return s.entry(parent, name, found);
  });

  s.handlers.set(Op.UNLINK, async (req) => {
    const parent = s.dir(req);
    const name = req.cstring();
    const served = s.changing(parent, "unlink");
    const found = await served.nodes.lookup(parent.ino, parent.path, name);
    const done = s.shared.watch(served, [found?.ino]);
    await served.nodes.unlink(parent.ino, parent.path, name);
    done();
    if (found) await s.lastLinkGone(served, found.ino, found.inode);
    return Reply.of(0);
  });

  s.handlers.set(Op.RMDIR, async (req) => {
    const parent = s.dir(req);
    const name = req.cstring();
    await s.changing(parent, "rmdir").nodes.rmdir(parent.ino, parent.path, name);
    return Reply.of(0);
  });

  const rename = async (req: Request, newdirId: number, flags: number) => {
    const from = s.dir(req);
    const to = s.dir(req, newdirId);
    const oldName = req.cstring();
    const newName = req.cstring();
    const served = s.changing(from, "rename");
    if (s.changing(to, "rename") !== served) throw storeError("EXDEV", "rename", join(to.path, newName), "source and destination are in different layers");
    if (flags & ~(Rename.NOREPLACE | Rename.EXCHANGE)) throw storeError("EINVAL", "rename", oldName, "only RENAME_NOREPLACE and RENAME_EXCHANGE are supported");
    const src = await served.nodes.lookup(from.ino, from.path, oldName);
    const dst = await served.nodes.lookup(to.ino, to.path, newName);
    if (!src) throw storeError("ENOENT", "rename", join(from.path, oldName));
    const done = s.shared.watch(served, [src.ino, dst?.ino]);
    const srcPath = join(from.path, oldName);
    const dstPath = join(to.path, newName);
    await served.nodes.rename([from.ino, from.path, oldName], [to.ino, to.path, newName], {
      noReplace: (flags & Rename.NOREPLACE) !== 0, exchange: (flags & Rename.EXCHANGE) !== 0,
    });
    const exchange = (flags & Rename.EXCHANGE) !== 0 && dst;
    if (exchange && isDir(dst.inode.mode) && isDir(src.inode.mode)) {
      const tmp = "\0exchange";
      s.table.moved(served, srcPath, tmp);
      s.table.moved(served, dstPath, srcPath);
      s.table.moved(served, tmp, dstPath);
    } else {
      if (isDir(src.inode.mode)) s.table.moved(served, srcPath, dstPath);
      if (exchange && isDir(dst.inode.mode)) s.table.moved(served, dstPath, srcPath);
    }
    // The kernel moves its names itself; a shared node's new name is one more to invalidate.
    const moved = s.table.sharedNode(src.holder, src.ino);
    if (moved) s.table.sawName(moved, to, newName);
    if (exchange) {
      const other = s.table.sharedNode(dst.holder, dst.ino);
      if (other) s.table.sawName(other, from, oldName);
    }
    done();
    if (dst && !exchange && dst.ino !== src.ino) await s.lastLinkGone(served, dst.ino, dst.inode);
    return Reply.of(0);
  };

  s.handlers.set(Op.RENAME, (req) => rename(req, req.u64(), 0));
  s.handlers.set(Op.RENAME2, (req) => {
    const newdir = req.u64();
    const flags = req.u32();
    req.skip(4);
    return rename(req, newdir, flags);
  });
}

/** A negative entry: "no such name", cached for `timeout` seconds. */
function negative(timeout: number): Reply {
  return Reply.of(Size.ENTRY_OUT).entry(0, timeout, 0, undefined);
}

/** EXDEV unless `served` sees the version of the file that node `old` stands for. */
async function sameLayer(old: FuseNode, served: ServedLayer, syscall: string): Promise<void> {
  if (!old.shared) {
    if (old.served !== served) throw storeError("EXDEV", syscall, served.key, "the file is in another layer");
    return;
  }
  const seen = await served.nodes.stat(old.ino);
  if (!seen || seen.holder !== old.layer) throw storeError("EXDEV", syscall, served.key, "the file is in another layer");
}
