/**
 * Repair of what a check finds (thin_repair for the layers): it rebuilds what can be
 * derived, drops what cannot, and reports each change. It works on every layer, active,
 * view or committed alike, parents before children: a committed layer is immutable to
 * its users, but damaged metadata is repaired wherever it is, as thin_repair does.
 *
 * - A layer whose parent is missing is dropped, with every layer above it. Its tables hold
 *   only its changes against that parent, and which layer the parent was cannot be derived
 *   (a thin snapshot does not record its origin), so its tree cannot be rebuilt; its
 *   device goes too. So does a layer whose device is missing. (To keep such a layer,
 *   restore the metadata from a dump instead of repairing.)
 * - Entries naming missing inodes go; link counts are set to the names that exist.
 * - An inline file's size becomes the length of its inline bytes (they are the file).
 * - A file with an extent outside its device is cut at that extent: its extent list is
 *   garbage from there on, so the file keeps what comes before it. Pages mapped past a
 *   file's end are dropped.
 * - A file the layer holds whose data is in blocks its device does not map (the pool lost
 *   those mappings) loses its pages there: they read as zeros, the rest is intact.
 * - Blocks a layer's device lacks but that hold data of files from lower layers are
 *   copied from the parent's device.
 * - Derived metadata is rebuilt from the files: device blocks no file needs are
 *   discarded, and the free-page map and block ownership are recomputed.
 * - The base device is emptied.
 *
 * What it cannot repair (files sharing device pages, a missing root inode, lost data of
 * files held below that the parent lacks too) is left as it is: a check after the repair
 * still reports it.
 *
 * @module
 */
import type { Pool } from "../pool/pool.ts";
import type { DeviceId } from "../pool/types.ts";
import { PageAllocator, type PageRun } from "./alloc.ts";
import { blockRanges, byDepth, complement, examineLayer, extentInside, inodeLabel, type LayerFindings, outsideText, unusableLayers } from "./fsck.ts";
import { type Extent, type Inode, PAGE } from "./inode.ts";
import type { Layer } from "./layer.ts";
import { join } from "./path.ts";
import type { LayerView } from "./resolve.ts";
import { LayerTree, type TreeHost } from "./tree.ts";

/** What {@linkcode repairLayers} did. */
export interface RepairResult {
  /** One line per change, each naming the layer it changed. */
  changes: string[];
  /** Layers whose tables or free-page map changed, for the caller to commit. */
  changed: Set<Layer>;
  /** Layers the caller must drop (delete their devices, forget them), children first. */
  drop: Layer[];
}

/** What the store gives a repair besides its layers. */
export interface RepairOptions {
  /** Layers whose parent was missing when the store was opened. */
  orphans?: ReadonlySet<Layer>;
  /** The store's base device, which must stay empty. */
  baseDevice?: DeviceId;
}

/**
 * Repairs the layers; returns one line per change, the layers it changed, for the caller
 * to commit, and the layers the caller must drop.
 *
 * @example
 * ```ts ignore
 * const { changes, changed, drop } = await repairLayers(pool, host, layers, { orphans, baseDevice });
 * for (const l of changed) catalog.markDirty(l);
 * ```
 */
export async function repairLayers(pool: Pool, host: TreeHost & { view: LayerView }, layers: Layer[], options: RepairOptions = {}): Promise<RepairResult> {
  const changes: string[] = [];
  const changed = new Set<Layer>();
  const unusable = unusableLayers(pool, layers, options.orphans);
  for (const [layer, why] of unusable) changes.push(`${layer.record.name}: dropped the layer and its device: ${why}`);
  const drop = [...unusable.keys()].reverse();
  const base = options.baseDevice;
  if (base !== undefined && pool.devices().some((d) => d.id === base) && pool.usage(base).mapped > 0) {
    const device = pool.device(base);
    const blocks: number[] = [];
    for (let b = 0; b < Math.ceil(device.size / pool.blockSize); b++) if (pool.lookup(base, b) !== undefined) blocks.push(b);
    await discardBlocks(pool, device, blocks);
    changes.push(`the base device ${base} mapped ${blocks.length} block(s): discarded them (it must stay empty)`);
  }
  for (const layer of byDepth(layers)) {
    if (unusable.has(layer)) continue;
    const lines = await repairLayer(pool, host, layer);
    if (lines.length === 0) continue;
    changes.push(...lines.map((l) => `${layer.record.name}: ${l}`));
    changed.add(layer);
    // Lookups through frozen layers are cached and never invalidated otherwise.
    if (layer.frozen) host.view.cache.clear();
  }
  return { changes, changed, drop };
}

/** Repairs one layer whose parents are repaired already; the lines say what changed. */
async function repairLayer(pool: Pool, host: TreeHost & { view: LayerView }, layer: Layer): Promise<string[]> {
  const lines: string[] = [];
  const t = layer.tables;
  const total = layer.alloc.totalPages;
  const bs = pool.blockSize;
  const dev = layer.record.device;
  const device = host.data(layer).device;
  let f = examineLayer(pool, host.view, layer);
  if (!host.view.inode(layer, layer.record.root)) return lines; // nothing to derive anything from
  const held = (ino: number) => t.inodes.get(ino)!;

  // The tables: names, link counts, and what each inode says about its own data.
  const tree = new LayerTree(host, layer);
  for (const d of f.dangling) {
    tree.removeName(d.dir, d.name);
    lines.push(`removed ${join(d.dir, d.name)}, which named a missing inode`);
  }
  for (const l of f.links) {
    tree.own(l.ino).nlink = l.want;
    lines.push(`inode ${l.ino} link count ${l.has} -> ${l.want}`);
  }
  for (const s of f.sizes) {
    const inode = held(s.ino);
    inode.size = inode.inline!.byteLength;
    t.touchInode(s.ino);
    lines.push(`${inodeLabel(f, s.ino)}: size ${s.size} -> ${inode.size}, the length of its inline data`);
  }
  for (const o of f.outside) {
    const inode = held(o.ino);
    let cut = Infinity;
    for (const e of inode.extents!) if (!extentInside(e, total)) cut = Math.min(cut, Number.isSafeInteger(e.page) && e.page >= 0 ? e.page : 0);
    const before = inode.size;
    cutAt(inode, cut, total);
    t.touchInode(o.ino);
    lines.push(`${inodeLabel(f, o.ino)}: ${outsideText(o.extent, o.count, total)}: dropped it and the file's pages from page ${cut} on; size ${before} -> ${inode.size}`);
  }
  for (const p of f.pastEnd) {
    if (f.outside.some((o) => o.ino === p.ino)) continue; // cut above, at or before the end
    cutAt(held(p.ino), p.end, total);
    t.touchInode(p.ino);
    lines.push(`${inodeLabel(f, p.ino)}: dropped ${p.pages} page(s) mapped past the end of the file`);
  }
  if (lines.length) f = again(pool, host, layer);

  // Data the device does not have. A file this layer holds loses it: its pages in those
  // blocks go (they read as zeros; the rest of the file is intact). Blocks of files held
  // below come from the parent's device, which has them (it was repaired first) unless
  // they are lost there too.
  let punched = 0;
  const lostBlocks = new Set(f.unmapped);
  for (const ino of f.lost.keys()) {
    const inode = t.inodes.get(ino);
    if (!inode) continue;
    const pages = dropBlocks(inode, lostBlocks, layer.alloc.pagesPerBlock, total);
    t.touchInode(ino);
    punched++;
    lines.push(`${inodeLabel(f, ino)}: its data in device blocks that are not mapped is lost: dropped ${pages} page(s) of it, which read as zeros now`);
  }
  if (punched) f = again(pool, host, layer);
  const parentDev = layer.parent?.record.device;
  const restored: number[] = [];
  for (const b of f.unmapped) {
    if (parentDev === undefined || pool.lookup(parentDev, b) === undefined) continue;
    await device.write(b * bs, await pool.device(parentDev).read(b * bs, bs));
    restored.push(b);
  }
  if (restored.length) {
    lines.push(`copied ${restored.length} block(s) holding data of files from lower layers from the parent's device: ${ranges(restored)}`);
    f = again(pool, host, layer);
  }

  // Derived metadata: the blocks the device maps, the free-page map, block ownership.
  const needMapped = f.blocks.size - f.unmapped.length;
  if (pool.usage(dev).mapped > needMapped) {
    const stray: number[] = [];
    for (let b = 0; b < Math.ceil(device.size / bs); b++) if (!f.blocks.has(b) && pool.lookup(dev, b) !== undefined) stray.push(b);
    await discardBlocks(pool, device, stray);
    if (stray.length) lines.push(`discarded ${stray.length} device block(s) no file needs`);
  }
  if (f.leaked.length || f.usedFree.length || f.ownership.length) {
    for (const r of f.leaked) lines.push(`freed pages ${r.start}+${r.count}, which no file used`);
    for (const u of f.usedFree) lines.push(`marked pages ${u.start}+${u.count} as used: ${inodeLabel(f, u.ino)} uses them`);
    const gained = f.ownership.filter((o) => o.own).length;
    const lost = f.ownership.length - gained;
    if (gained) lines.push(`marked ${gained} block(s) the device holds its own copy of as the layer's own`);
    if (lost) lines.push(`unmarked ${lost} block(s) the device shares with the parent as the layer's own`);
    layer.alloc = rebuiltAlloc(pool, layer, f);
    layer.allocDirty = true;
  }
  return lines;
}

/** Examines the layer again after changes to its tables (frozen layers' lookups are cached). */
function again(pool: Pool, host: TreeHost & { view: LayerView }, layer: Layer): LayerFindings {
  if (layer.frozen) host.view.cache.clear();
  return examineLayer(pool, host.view, layer);
}

/** Keeps the file's pages before `page` (within the device) and its size up to there. */
function cutAt(inode: Inode, page: number, total: number): void {
  const kept: Extent[] = [];
  for (const e of inode.extents ?? []) {
    if (!extentInside(e, total) || e.page >= page) continue;
    kept.push(e.page + e.count > page ? { page: e.page, dev: e.dev, count: page - e.page } : e);
  }
  inode.extents = kept;
  if (!(Number.isSafeInteger(inode.size) && inode.size >= 0)) inode.size = 0;
  inode.size = Math.min(inode.size, page * PAGE);
}

/** Drops the pages of the file that lie in `blocks` of the device; returns how many. */
function dropBlocks(inode: Inode, blocks: ReadonlySet<number>, ppb: number, total: number): number {
  const kept: Extent[] = [];
  let dropped = 0;
  for (const e of inode.extents ?? []) {
    if (!extentInside(e, total)) {
      kept.push(e);
      continue;
    }
    for (let d = e.dev; d < e.dev + e.count;) {
      const b = Math.floor(d / ppb);
      const end = Math.min(e.dev + e.count, (b + 1) * ppb);
      if (blocks.has(b)) dropped += end - d;
      else {
        const last = kept[kept.length - 1];
        const page = e.page + (d - e.dev);
        if (last && last.page + last.count === page && last.dev + last.count === d) last.count += end - d;
        else kept.push({ page, dev: d, count: end - d });
      }
      d = end;
    }
  }
  inode.extents = kept;
  return dropped;
}

/** The free-page map the layer's files imply, and its own blocks as the device holds them. */
function rebuiltAlloc(pool: Pool, layer: Layer, f: LayerFindings): PageAllocator {
  const dev = layer.record.device;
  const parentDev = layer.parent?.record.device;
  const own: number[] = [];
  for (const b of [...f.blocks].sort((x, y) => x - y)) {
    const p = pool.lookup(dev, b);
    if (p !== undefined && (parentDev === undefined || pool.lookup(parentDev, b) !== p)) own.push(b);
  }
  const a = layer.alloc;
  const free = complement(f.used, a.totalPages).flatMap((r: PageRun) => [r.start, r.count]);
  const ownRuns: number[] = [];
  for (const b of own) {
    if (ownRuns.length && ownRuns[ownRuns.length - 2] + ownRuns[ownRuns.length - 1] === b) ownRuns[ownRuns.length - 1]++;
    else ownRuns.push(b, 1);
  }
  return PageAllocator.decode({ free, own: ownRuns }, a.totalPages, a.pagesPerBlock);
}

/** Discards whole blocks, contiguous ones in one call. */
async function discardBlocks(pool: Pool, device: { discard(offset: number, length: number): Promise<void> }, blocks: number[]): Promise<void> {
  const bs = pool.blockSize;
  for (let i = 0; i < blocks.length;) {
    let j = i + 1;
    while (j < blocks.length && blocks[j] === blocks[j - 1] + 1) j++;
    await device.discard(blocks[i] * bs, (j - i) * bs);
    i = j;
  }
}

/** Block numbers as short ranges: `3, 7-9`. */
function ranges(blocks: number[]): string {
  return blockRanges(blocks).map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(", ");
}
