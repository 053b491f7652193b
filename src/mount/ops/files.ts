/**
 * Open files: OPEN, CREATE, READ, WRITE, RELEASE, FSYNC, FALLOCATE and LSEEK (FLUSH is
 * answered ENOSYS, see below).
 *
 * A read-only open of a shared node reads the committed version through the layer that
 * holds it, and keeps the kernel's page cache (FOPEN_KEEP_CACHE: the version never
 * changes), so every layer that sees the file shares one copy of its pages. An open for
 * writing always gets a node of the writing layer's own (see shared.ts), so written
 * pages never enter a shared node's cache. fsync commits the store: the file's data and
 * metadata, and everything else changed so far, are durable when it returns.
 *
 * @module
 */
import { storeError } from "../../common/errors.ts";
import type { OpenFlags } from "../../layers/flags.ts";
import { Reply } from "../codec.ts";
import type { ServedLayer } from "../nodetable.ts";
import { readOnly } from "../nodetable.ts";
import { Falloc, Fopen, O, Op, OPEN_KILL_SUIDGID, Seek, Size, WRITE_KILL_SUIDGID } from "../protocol.ts";
import { DataAnswer, type OpenFile, type Session } from "../session.ts";

/** The store's open flags for open(2)'s. Appends are placed by the kernel, which sends their offsets. */
function openFlags(raw: number, create = false): OpenFlags {
  const acc = raw & O.ACCMODE;
  return {
    read: acc !== O.WRONLY, write: acc !== O.RDONLY, create, exclusive: create && (raw & O.EXCL) !== 0,
    truncate: (raw & O.TRUNC) !== 0, append: false, noFollow: false,
  };
}

/** Registers the file handlers on `s`. */
export function registerFiles(s: Session): void {
  const openOut = (fh: number, flags: number) => Reply.of(Size.OPEN_OUT).u64(fh).u32(flags).u32(0);

  const file = (fh: number, syscall: string): OpenFile => {
    const h = s.handles.get(fh);
    if (!h || h.kind !== "file") throw storeError("EBADF", syscall, undefined, `no open file ${fh}`);
    return h;
  };

  s.handlers.set(Op.OPEN, async (req) => {
    if (req.carried) await s.shared.landed(req);
    const node = s.node(req);
    const flags = openFlags(req.u32());
    const kill = (req.u32() & OPEN_KILL_SUIDGID) !== 0;
    if (node.kind !== "file") throw storeError("EISDIR", "open", `node ${node.id}`);
    if (!flags.write && !flags.truncate) {
      const served = node.served!;
      const layer = node.shared ? node.layer! : served.nodes.layer;
      const handle = await served.nodes.open(node.ino, layer, flags);
      return openOut(s.open({ kind: "file", node, file: handle, layer, writable: false }), Fopen.KEEP_CACHE);
    }
    let served: ServedLayer;
    let direct = 0;
    if (node.shared) {
      served = s.shared.target(req, node);
      const done = s.shared.watch(served, [node.ino]);
      await served.nodes.copyUp(node.ino);
      // An OPEN holds no directory lock: the layer's other names (hardlinks) are dropped before the reply.
      await done();
      if (s.shared.firstOpen(req, node, served)) {
        throw storeError("ESTALE", "open", `node ${node.id}`, "copied up; the kernel retries the open on the copy's node");
      }
      // No retry could move the open to the copy's node: write to the copy, past the shared page cache.
      direct = Fopen.DIRECT_IO;
    } else {
      served = node.served!;
      if (served.readOnly) throw readOnly(served, "open");
    }
    const handle = await served.nodes.open(node.ino, served.nodes.layer, flags, kill);
    return openOut(s.open({ kind: "file", node, file: handle, layer: served.nodes.layer, served, writable: true }), direct || Fopen.KEEP_CACHE);
  });

  s.handlers.set(Op.CREATE, async (req) => {
    const parent = s.dir(req);
    const raw = req.u32();
    const mode = req.u32();
    req.skip(4);
    const kill = (req.u32() & OPEN_KILL_SUIDGID) !== 0;
    const name = req.cstring();
    const served = s.changing(parent, "open");
    const flags = openFlags(raw, true);
    const { node: found, handle } = await served.nodes.createFile(parent.ino, parent.path, name, { mode, uid: req.uid, gid: req.gid }, flags, kill);
    const { node, reply: entry } = s.entryNode(parent, name, found);
    const fh = s.open({ kind: "file", node, file: handle, layer: served.nodes.layer, served, writable: flags.write });
    const r = Reply.of(Size.ENTRY_OUT + Size.OPEN_OUT);
    r.raw(entry.buf.subarray(Size.OUT_HEADER, entry.pos));
    return r.u64(fh).u32(Fopen.KEEP_CACHE).u32(0);
  });

  s.handlers.set(Op.READ, async (req) => {
    const h = file(req.u64(), "read");
    const offset = req.u64();
    const size = req.u32();
    const nodes = (h.served ?? h.node.served!).nodes;
    // Into memory shared with the I/O workers: no buffer crosses threads (on Node, a
    // transferred buffer counts as new external memory, a full collection every ~16 MiB).
    const lease = await nodes.lease(h.layer, h.node.ino, offset, size);
    if (lease) return new DataAnswer(lease.bytes, lease.release);
    const bytes = await nodes.read(h.layer, h.node.ino, offset, size);
    // The reply is written synchronously: the buffer can serve a later read right after.
    return new DataAnswer(bytes, () => nodes.recycle(h.layer, bytes));
  });

  s.handlers.set(Op.WRITE, async (req) => {
    const h = file(req.u64(), "write");
    const offset = req.u64();
    const size = req.u32();
    const writeFlags = req.u32();
    req.skip(16);
    if (!h.writable || !h.served) throw storeError("EBADF", "write", undefined, "the file was not opened for writing");
    await h.served.nodes.write(h.node.ino, offset, req.bytes(size), (writeFlags & WRITE_KILL_SUIDGID) !== 0);
    return Reply.of(Size.WRITE_OUT).u32(size).u32(0);
  });

  // No FLUSH handler: nothing is buffered here between a write and close(2) (written
  // pages reach the server before the kernel's FLUSH, and locks stay in the kernel), so
  // the first FLUSH is answered ENOSYS and the kernel sends none after it: one round trip
  // less per close (a tar -x of thousands of files closes each).

  s.handlers.set(Op.RELEASE, async (req) => {
    const fh = req.u64();
    const h = s.handles.get(fh);
    s.handles.delete(fh);
    if (h?.kind === "file") await h.file.close();
    return Reply.of(0);
  });

  s.handlers.set(Op.FSYNC, async () => {
    await s.sync();
    return Reply.of(0);
  });

  s.handlers.set(Op.FALLOCATE, async (req) => {
    const h = file(req.u64(), "fallocate");
    const offset = req.u64();
    const length = req.u64();
    const mode = req.u32();
    if (!h.writable || !h.served) throw storeError("EBADF", "fallocate", undefined, "the file was not opened for writing");
    if (mode & ~(Falloc.KEEP_SIZE | Falloc.PUNCH_HOLE | Falloc.ZERO_RANGE)) {
      throw storeError("EOPNOTSUPP", "fallocate", undefined, `mode ${mode} is not supported (only KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE)`);
    }
    await h.served.nodes.allocate(h.node.ino, offset, length, {
      punch: (mode & Falloc.PUNCH_HOLE) !== 0, zero: (mode & Falloc.ZERO_RANGE) !== 0, keepSize: (mode & Falloc.KEEP_SIZE) !== 0,
    });
    return Reply.of(0);
  });

  s.handlers.set(Op.LSEEK, async (req) => {
    const h = file(req.u64(), "lseek");
    const offset = req.u64();
    const whence = req.u32();
    if (whence !== Seek.DATA && whence !== Seek.HOLE) throw storeError("EINVAL", "lseek", undefined, `whence ${whence}`);
    const at = await (h.served ?? h.node.served!).nodes.seek(h.layer, h.node.ino, offset, whence === Seek.HOLE);
    return Reply.of(Size.LSEEK_OUT).u64(at);
  });
}
