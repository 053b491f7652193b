/**
 * The store as a layer's file system view sees it (see host.ts): every call checks that
 * the store and the layer are open, reads share the store's lock, and changes take it
 * alone and mark the layer for the next commit.
 *
 * @module
 */
import { hasCode, storeError } from "../common/errors.ts";
import type { FsHost } from "./host.ts";
import type { StoreState } from "./state.ts";
import { LayerTree } from "./tree.ts";

/** The file system host of the store whose state is `s`. */
export function fsHost(s: StoreState): FsHost {
  const host: FsHost = {
    view: s.view,
    nextIno: () => s.nextIno++,
    data: (layer) => ({ layer, device: s.device(layer), blockSize: s.pool.blockSize }),
    reading: (layer, syscall, fn) => s.lock.read(() => {
      s.checkLayer(layer, syscall);
      return fn();
    }),
    writing: (layer, syscall, path, fn) => s.lock.write(async () => {
      s.checkLayer(layer, syscall);
      if (!layer.writable) throw storeError("EROFS", syscall, path, `layer '${layer.record.name}' is ${layer.record.kind === "view" ? "a view" : "committed"} and read-only`);
      if (layer.inTransaction) throw storeError("EBUSY", syscall, path, `layer '${layer.record.name}' is being changed by a transaction (an apply); wait for it to finish`);
      s.catalog.markDirty(layer);
      try {
        return await fn(new LayerTree(host, layer));
      } catch (e) {
        if (!hasCode(e, "ENOSPC") || s.pool.status().pendingFreeBlocks === 0) throw e;
      }
      // The pool is short of blocks this transaction freed, which a commit makes usable;
      // it does not commit in the middle of an operation, so the store commits here (the
      // failed write changed only what a write that fails may change) and runs it again.
      await s.commit();
      s.catalog.markDirty(layer);
      return await fn(new LayerTree(host, layer));
    }),
    watched: (layer) => s.holds.watching(layer),
    changed: (layer, change) => s.holds.changed(layer, change),
  };
  return host;
}
