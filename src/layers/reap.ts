/**
 * What opening a store does after loading its layers: links each layer to its parent,
 * and drops what a crash can leave behind — scratch layers of unfinished transactions
 * and imports, devices no layer names, inodes only open handles kept alive, and deferred
 * removals whose device deletion never committed.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { DeviceId } from "../pool/types.ts";
import { loadLayers } from "./catalog.ts";
import type { FsHost } from "./host.ts";
import { SCRATCH, SCRATCH_LABEL, type StoreState } from "./state.ts";
import { LayerTree } from "./tree.ts";

/**
 * Loads every layer and links it to its parent. A layer whose parent is missing is EIO,
 * or with `salvage` kept parentless in `s.orphans` for check and repair.
 */
export async function loadAll(s: StoreState, salvage: boolean): Promise<void> {
  for (const layer of await loadLayers(s.pool, s.catalog.root, s.totalPages, s.pagesPerBlock)) s.register(layer);
  for (const layer of s.layers.values()) {
    if (!layer.record.parent) continue;
    const parent = s.layers.get(layer.record.parent);
    if (!parent && salvage) {
      s.orphans.add(layer);
      continue;
    }
    if (!parent) throw storeError("EIO", "open", s.pool.dir, `layer '${layer.record.name}' names parent ${layer.record.parent}, which is missing`);
    layer.parent = parent;
    parent.children++;
  }
}

/** Drops every leftover (see the module doc) and commits if there was any. Call under the write lock. */
export async function reap(s: StoreState, host: FsHost): Promise<void> {
  let changed = await reapOrphans(s, host);
  changed = await reapLeftovers(s) || changed;
  const live = new Set(s.pool.devices().map((d) => d.id));
  for (const dev of s.catalog.root.retired ?? []) {
    if (live.has(dev)) await s.pool.deleteDevice(dev);
    changed = true;
  }
  if (changed) await s.commit();
}

/**
 * The scratch layers of unfinished transactions (their layer keeps its state from
 * before), and devices no layer names (made for a layer whose creation never committed).
 */
async function reapLeftovers(s: StoreState): Promise<boolean> {
  let any = false;
  for (const layer of [...s.layers.values()]) {
    const unfinished = layer.record.kind === "active" && layer.children === 0 && layer.record.labels?.[SCRATCH_LABEL] !== undefined;
    if (!layer.record.name.startsWith(SCRATCH) && !unfinished) continue;
    await s.pool.deleteDevice(layer.record.device).catch(() => {});
    s.unregister(layer);
    any = true;
  }
  const named = new Set<DeviceId>([s.catalog.root.baseDevice, ...s.retired]);
  for (const layer of s.layers.values()) named.add(layer.record.device);
  for (const { id } of s.pool.devices()) {
    if (named.has(id)) continue;
    await s.pool.deleteDevice(id);
    any = true;
  }
  return any;
}

/** Frees inodes that open handles kept alive when the process ended. */
async function reapOrphans(s: StoreState, host: FsHost): Promise<boolean> {
  let any = false;
  for (const layer of s.layers.values()) {
    if (!layer.writable) continue;
    const tree = new LayerTree(host, layer);
    for (const [ino, inode] of [...layer.tables.inodes]) {
      if (inode.nlink > 0) continue;
      await tree.release(ino);
      s.catalog.markDirty(layer);
      any = true;
    }
  }
  return any;
}
