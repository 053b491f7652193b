/**
 * The connection's own requests: INIT (what both sides support), DESTROY, INTERRUPT,
 * FORGET and BATCH_FORGET (the kernel dropping nodes), STATFS (the pool's free space,
 * bounded by its disk's) and SYNCFS (a commit).
 *
 * @module
 */
import fs from "node:fs";
import { storeError } from "../../common/errors.ts";
import { PAGE } from "../../layers/inode.ts";
import { Reply } from "../codec.ts";
import { Init, KERNEL_MINOR_VERSION, KERNEL_VERSION, MIN_KERNEL_MINOR_VERSION, Op, Size } from "../protocol.ts";
import type { Session } from "../session.ts";

/**
 * Pages free on the file system holding the pool's data file: a sparse data file cannot
 * outgrow its disk, so free space is the smaller of the pool's and the disk's (as
 * Docker's devicemapper reports it for loopback files). Unbounded for a block device
 * (direct mode), whose blocks are all the pool's.
 */
function hostFreePages(dataFile: string): number {
  try {
    if (!fs.statSync(dataFile).isFile()) return Infinity;
    const h = fs.statfsSync(dataFile);
    return Math.floor(Number(h.bavail) * Number(h.bsize) / PAGE);
  } catch {
    return Infinity;
  }
}

/** Requests the kernel may queue for us in the background (read-ahead, writeback). */
const MAX_BACKGROUND = 64;

/** Registers the connection's handlers on `s`. */
export function registerConn(s: Session): void {
  s.handlers.set(Op.INIT, (req) => {
    const major = req.u32();
    const minor = req.u32();
    const maxReadahead = req.u32();
    const flags = req.u32();
    if (major !== KERNEL_VERSION || minor < MIN_KERNEL_MINOR_VERSION) {
      throw storeError("EOPNOTSUPP", "init", `${major}.${minor}`, `this server speaks FUSE ${KERNEL_VERSION}.${MIN_KERNEL_MINOR_VERSION} and later`);
    }
    let want = Init.ASYNC_READ | Init.ATOMIC_O_TRUNC | Init.BIG_WRITES | Init.DO_READDIRPLUS | Init.READDIRPLUS_AUTO |
      Init.ASYNC_DIO | Init.PARALLEL_DIROPS | Init.ABORT_ERROR | Init.MAX_PAGES | Init.CACHE_SYMLINKS |
      // The server drops set-ID bits and capabilities itself, so the kernel may skip its
      // security.capability GETXATTR before every write (SB_NOSEC).
      Init.HANDLE_KILLPRIV_V2;
    if (s.options.writeback) want |= Init.WRITEBACK_CACHE;
    const got = (flags & want) >>> 0;
    s.conn = { minor: Math.min(minor, KERNEL_MINOR_VERSION), flags: got, maxWrite: s.options.maxWrite };
    const r = Reply.of(Size.INIT_OUT);
    r.u32(KERNEL_VERSION).u32(KERNEL_MINOR_VERSION).u32(maxReadahead).u32(got);
    r.u16(MAX_BACKGROUND).u16((MAX_BACKGROUND * 3) / 4).u32(s.options.maxWrite).u32(1);
    r.u16(s.options.maxWrite / PAGE).u16(0).u32(0).pad(28);
    setTimeout(() => s.ready(), 1);
    return r;
  });

  s.handlers.set(Op.DESTROY, () => Reply.of(0));

  s.handlers.set(Op.INTERRUPT, (req) => {
    // Every request here finishes on its own in bounded time (none waits for another
    // process), so an interrupted one is answered when done; the note is for tests.
    const state = s.inflight.get(req.u64());
    if (state) state.interrupted = true;
    return undefined;
  });

  s.handlers.set(Op.FORGET, (req) => {
    s.table.forget(req.nodeid, req.u64());
    return undefined;
  });

  s.handlers.set(Op.BATCH_FORGET, (req) => {
    const count = req.u32();
    req.skip(4);
    for (let i = 0; i < count; i++) s.table.forget(req.u64(), req.u64());
    return undefined;
  });

  s.handlers.set(Op.STATFS, () => {
    const st = s.store.pool.status();
    const per = st.blockSize / PAGE;
    const blocks = st.dataBlocks.total * per;
    const free = Math.min(Math.max(0, st.dataBlocks.total - st.dataBlocks.used) * per, hostFreePages(s.store.pool.dataFile));
    const files = 2 ** 32;
    const r = Reply.of(Size.STATFS_OUT);
    r.u64(blocks).u64(free).u64(free).u64(files).u64(files).u32(PAGE).u32(255).u32(PAGE).u32(0).pad(24);
    return r;
  });

  s.handlers.set(Op.SYNCFS, async () => {
    await s.sync();
    return Reply.of(0);
  });
}
