/**
 * Transactions on an active layer (`LayerStore.transaction`): the work runs on a scratch
 * copy — a snapshot of the layer's device (O(1)) plus a copy of its own tables — that
 * takes the layer's place in one commit if the work succeeds and goes if it fails. A
 * crash in between reopens with the layer as it was (reap.ts drops the scratch copy).
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { LayerFs } from "./fs.ts";
import type { FsHost } from "./host.ts";
import { decodeBase, encodeBase } from "./journal.ts";
import type { Layer } from "./layer.ts";
import { SCRATCH, type StoreState } from "./state.ts";

/** Runs `fn` on a scratch copy of active layer `key` and swaps the copy in if it succeeds. */
export async function runTransaction<T>(s: StoreState, host: FsHost, key: string, fn: (fs: LayerFs) => Promise<T>): Promise<T> {
  const { original, scratch } = await s.mutate("transaction", async () => {
    const layer = s.get(key, "transaction");
    if (layer.record.kind !== "active") throw storeError("EINVAL", "transaction", key, `'${key}' is ${layer.record.kind === "view" ? "a view" : "committed"}; only active layers change`);
    s.holds.check(layer, "transaction");
    if (layer.inTransaction || layer.handles.size > 0) throw storeError("EBUSY", "transaction", key, "the layer has open files or another transaction; close them or wait");
    s.pool.checkFreeSpace("transaction");
    const device = s.allocDevice("transaction");
    await s.pool.createSnapshot(device, layer.record.device);
    const copy = decodeBase(structuredClone(encodeBase(layer)), s.totalPages, s.pagesPerBlock);
    const id = s.nextLayer++;
    copy.record = { ...copy.record, id, name: `${SCRATCH}${id}:${key}`, device };
    copy.tables.takeDirty(); // a new layer's first commit writes its tables whole
    copy.parent = layer.parent;
    if (copy.parent) copy.parent.children++;
    s.register(copy);
    s.catalog.markDirty(copy);
    layer.inTransaction = true;
    return { original: layer, scratch: copy };
  });
  let result: T;
  try {
    result = await fn(new LayerFs(host, scratch));
    if (scratch.handles.size > 0) throw storeError("EBUSY", "transaction", key, "the transaction left files open; close them before it returns");
  } catch (e) {
    await s.lock.write(async () => {
      original.inTransaction = false;
      if (s.closed) return;
      await s.pool.deleteDevice(scratch.record.device);
      s.unregister(scratch);
      await s.commit();
    }).catch(() => {});
    throw e;
  }
  await s.mutate("transaction", () => swapIn(s, original, scratch, key));
  return result;
}

/** The copy takes the layer's place and the layer's device goes, in one commit. */
async function swapIn(s: StoreState, original: Layer, scratch: Layer, key: string): Promise<void> {
  original.inTransaction = false;
  await s.pool.deleteDevice(original.record.device);
  s.unregister(original);
  original.replacedBy = scratch;
  s.byName.delete(scratch.record.name);
  scratch.record = { ...scratch.record, name: key, updated: Date.now() };
  scratch.recordDirty = true;
  s.byName.set(key, scratch);
  s.catalog.markDirty(scratch);
  await s.commit();
}
