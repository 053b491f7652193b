/**
 * Repair of what a check finds, in active layers (committed layers and views are
 * immutable; their findings are reported, not changed): entries naming missing inodes
 * go, link counts are set to the names that exist, leaked pages are freed, and device
 * blocks no file needs are discarded.
 *
 * @module
 */
import type { Pool } from "../pool/pool.ts";
import { examineLayer } from "./fsck.ts";
import { PAGE } from "./inode.ts";
import type { Layer } from "./layer.ts";
import { join } from "./path.ts";
import type { LayerView } from "./resolve.ts";
import { LayerTree, type TreeHost } from "./tree.ts";

/**
 * Repairs the layers; returns one line per change (or per finding it cannot repair)
 * and the layers it changed, for the caller to commit.
 *
 * @example
 * ```ts ignore
 * const { changes, changed } = await repairLayers(pool, host, layers);
 * for (const l of changed) catalog.markDirty(l);
 * ```
 */
export async function repairLayers(pool: Pool, host: TreeHost & { view: LayerView }, layers: Layer[]): Promise<{ changes: string[]; changed: Set<Layer> }> {
  const changes: string[] = [];
  const changed = new Set<Layer>();
  for (const layer of layers) {
    const name = layer.record.name;
    const f = examineLayer(pool, host.view, layer);
    if (!layer.writable) {
      const n = f.dangling.length + f.links.length + f.leaked.length + f.other.length;
      if (n > 0) changes.push(`${name}: ${n} problem(s) left alone: the layer is ${layer.record.kind} and immutable`);
      continue;
    }
    const tree = new LayerTree(host, layer);
    for (const d of f.dangling) {
      tree.removeName(d.dir, d.name);
      changes.push(`${name}: removed ${join(d.dir, d.name)}, which named a missing inode`);
    }
    for (const l of f.links) {
      tree.own(l.ino).nlink = l.want;
      changes.push(`${name}: inode ${l.ino} link count ${l.has} -> ${l.want}`);
    }
    const device = host.data(layer).device;
    const discard = async (blocks: number[]) => {
      for (const b of blocks) await device.discard(b * pool.blockSize, pool.blockSize);
    };
    for (const r of f.leaked) {
      await discard(layer.alloc.free(r.start, r.count));
      layer.allocDirty = true;
      changes.push(`${name}: freed pages ${r.start}+${r.count}, which no file used`);
    }
    for (const o of f.other) changes.push(`${name}: cannot repair: ${o}`);
    // Blocks the device maps that no live page is in.
    const needed = f.leaked.length ? examineLayer(pool, host.view, layer).blocks : f.blocks;
    const total = Math.floor(layer.alloc.totalPages * PAGE / pool.blockSize);
    const stray: number[] = [];
    for (let b = 0; b < total; b++) if (!needed.has(b) && pool.lookup(layer.record.device, b) !== undefined) stray.push(b);
    if (stray.length) {
      await discard(stray);
      changes.push(`${name}: discarded ${stray.length} device block(s) no file needs`);
    }
    if (changes.some((c) => c.startsWith(`${name}: `) && !c.includes("cannot repair"))) changed.add(layer);
  }
  return { changes, changed };
}
