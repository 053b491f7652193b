/**
 * Attributes: GETATTR, SETATTR (mode, owner, size, times with UTIME_NOW and UTIME_OMIT),
 * READLINK, ACCESS and the extended attributes (GET/SET/LIST/REMOVEXATTR). A change
 * arriving on a shared node goes to the layer shared.ts finds, leaving the shared
 * version (and so the kernel's attributes of the node) as it was.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { storeError } from "../../common/errors.ts";
import { isLink, S_IFMT } from "../../layers/inode.ts";
import type { AttrChanges } from "../../layers/nodes.ts";
import { Reply, type Request } from "../codec.ts";
import type { FuseNode, ServedLayer } from "../nodetable.ts";
import { readOnly } from "../nodetable.ts";
import { Fattr, Op, Size, Xattr } from "../protocol.ts";
import { attrOf, type Session } from "../session.ts";

const W_OK = 2;

/** Registers the attribute handlers on `s`. */
export function registerAttrs(s: Session): void {
  s.handlers.set(Op.GETATTR, async (req) => {
    const node = s.node(req);
    return Reply.of(Size.ATTR_OUT).attrOut(s.timeouts(node.served, node).attr, await s.attr(node));
  });

  s.handlers.set(Op.SETATTR, async (req) => {
    const node = s.node(req);
    const valid = req.u32();
    req.skip(4);
    const fh = req.u64();
    const size = req.u64();
    req.skip(8);
    const atime = req.i64();
    const mtime = req.i64();
    const ctime = req.i64();
    const atimensec = req.u32();
    const mtimensec = req.u32();
    const ctimensec = req.u32();
    const mode = req.u32();
    req.skip(4);
    const uid = req.u32();
    const gid = req.u32();
    const now = Date.now();
    const c: AttrChanges = {};
    if (valid & Fattr.MODE) c.mode = mode;
    if (valid & Fattr.UID) c.uid = uid;
    if (valid & Fattr.GID) c.gid = gid;
    if (valid & Fattr.SIZE) c.size = size;
    if (valid & Fattr.ATIME) c.atimeMs = valid & Fattr.ATIME_NOW ? now : atime * 1000 + atimensec / 1e6;
    if (valid & Fattr.MTIME) c.mtimeMs = valid & Fattr.MTIME_NOW ? now : mtime * 1000 + mtimensec / 1e6;
    if (valid & Fattr.CTIME) c.ctimeMs = ctime * 1000 + ctimensec / 1e6;
    if (valid & Fattr.KILL_SUIDGID) c.killSuid = true;
    if (node.kind === "root") throw storeError("EPERM", "setattr", "/", "the served root holds layers");
    if (node.shared && (valid & ~(Fattr.MTIME | Fattr.CTIME | Fattr.FH | Fattr.LOCKOWNER)) === 0) {
      // The writeback cache flushing times it keeps itself (a rename or link elsewhere set
      // the node's ctime): the shared version has not changed, so there is nothing to do.
      const inode = await s.inode(node);
      if (c.mtimeMs === undefined || Math.abs(c.mtimeMs - inode.mtimeMs) < 1) {
        return Reply.of(Size.ATTR_OUT).attrOut(s.timeouts(node.served, node).attr, attrOf(node.ino, inode));
      }
    }
    if (node.gone && !(await node.served!.nodes.stat(node.ino))) {
      // Nothing is stored for a file whose last link went and that no handle keeps:
      // the change lives on the node until the kernel forgets it, as in a local inode.
      if (c.size !== undefined) throw storeError("ENOENT", "truncate", `node ${node.id}`, "the file is gone");
      const g = node.gone;
      if (c.mode !== undefined) g.mode = (g.mode & S_IFMT) | (c.mode & 0o7777);
      if (c.uid !== undefined) g.uid = c.uid;
      if (c.gid !== undefined) g.gid = c.gid;
      if (c.atimeMs !== undefined) g.atimeMs = c.atimeMs;
      if (c.mtimeMs !== undefined) g.mtimeMs = c.mtimeMs;
      g.ctimeMs = c.ctimeMs ?? now;
      return Reply.of(Size.ATTR_OUT).attrOut(s.timeouts(node.served, node).attr, attrOf(node.ino, g));
    }
    const handle = valid & Fattr.FH ? s.handles.get(fh) : undefined;
    const served = changeTarget(s, req, node, handle?.kind === "file" ? handle.served : undefined);
    const found = await served.nodes.setattr(node.ino, c);
    if (!node.shared) return Reply.of(Size.ATTR_OUT).attrOut(s.timeouts(served, node).attr, attrOf(found.ino, found.inode));
    s.shared.invalidate(node, served);
    return Reply.of(Size.ATTR_OUT).attrOut(s.timeouts(served, node).attr, await s.attr(node));
  });

  s.handlers.set(Op.READLINK, async (req) => {
    const node = s.node(req);
    if (node.kind !== "file") throw storeError("EINVAL", "readlink", `node ${node.id}`, "not a symbolic link");
    const inode = await s.inode(node);
    if (!isLink(inode.mode)) throw storeError("EINVAL", "readlink", `node ${node.id}`, "not a symbolic link");
    const target = Buffer.from(inode.target ?? "");
    return Reply.of(target.byteLength).raw(target);
  });

  s.handlers.set(Op.ACCESS, async (req) => {
    const node = s.node(req);
    const mask = req.u32();
    if (node.kind !== "root") await s.inode(node);
    if (mask & W_OK && !node.shared && node.served?.readOnly) throw readOnly(node.served, "access");
    return Reply.of(0);
  });

  const xattrValue = async (node: FuseNode, name: string) => {
    if (node.kind === "root") return undefined;
    return (await s.inode(node)).xattrs?.get(name);
  };

  /** A getxattr/listxattr answer: the size when asked with size 0, ERANGE when too small. */
  const sized = (data: Uint8Array, size: number) => {
    if (size === 0) return Reply.of(Size.GETXATTR_OUT).u32(data.byteLength).u32(0);
    if (data.byteLength > size) throw storeError("ERANGE", "getxattr", undefined, `the value has ${data.byteLength} bytes, the buffer ${size}`);
    return Reply.of(data.byteLength).raw(data);
  };

  s.handlers.set(Op.GETXATTR, async (req) => {
    const node = s.node(req);
    const size = req.u32();
    req.skip(4);
    const name = req.cstring();
    const value = await xattrValue(node, name);
    if (!value) throw storeError("ENODATA", "getxattr", name);
    return sized(value, size);
  });

  s.handlers.set(Op.LISTXATTR, async (req) => {
    const node = s.node(req);
    const size = req.u32();
    const names = node.kind === "root" ? [] : [...(await s.inode(node)).xattrs?.keys() ?? []].sort();
    return sized(Buffer.from(names.map((n) => n + "\0").join("")), size);
  });

  s.handlers.set(Op.SETXATTR, async (req) => {
    const node = s.node(req);
    const size = req.u32();
    const flags = req.u32();
    const name = req.cstring();
    const value = req.bytes(size);
    if (node.kind === "root") throw storeError("EPERM", "setxattr", "/", "the served root holds layers");
    const served = changeTarget(s, req, node);
    const mode = flags & Xattr.CREATE ? "create" : flags & Xattr.REPLACE ? "replace" : undefined;
    await served.nodes.setxattr(node.ino, name, value, mode);
    if (node.shared) s.shared.invalidate(node, served);
    return Reply.of(0);
  });

  s.handlers.set(Op.REMOVEXATTR, async (req) => {
    const node = s.node(req);
    const name = req.cstring();
    if (node.kind === "root") throw storeError("ENODATA", "removexattr", name);
    const served = changeTarget(s, req, node);
    await served.nodes.removexattr(node.ino, name);
    if (node.shared) s.shared.invalidate(node, served);
    return Reply.of(0);
  });
}

/** The writable served layer a change to `node` goes to (EROFS, or ESTALE for a shared node whose layer is not known yet). */
function changeTarget(s: Session, req: Request, node: FuseNode, viaHandle?: ServedLayer): ServedLayer {
  if (node.shared) return viaHandle ?? s.shared.target(req, node);
  const served = node.served!;
  if (served.readOnly) throw readOnly(served, "setattr");
  return served;
}
