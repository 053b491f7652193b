/**
 * Consistency of the layer store against its pool (thin_check for the layers), for
 * tests and repair tools:
 *
 * - every layer's parent is there and so is its device;
 * - every visible entry names an inode, and link counts match the names;
 * - every inode a layer holds agrees with its data: an inline file's size is the length
 *   of its inline bytes, every extent lies inside the layer's device, and no page is
 *   mapped past the end of the file;
 * - no two files share device pages, no file uses pages the free-page map calls free,
 *   and no pages are allocated without a file;
 * - each device maps exactly the blocks its files need, and the blocks the free-page
 *   map marks as the layer's own are exactly those the device holds its own copy of
 *   (not shared with the parent's device);
 * - the base device stays empty, and the pool's used blocks are exactly the blocks live
 *   file data occupies.
 *
 * @module
 */
import type { Pool } from "../pool/pool.ts";
import type { DeviceId } from "../pool/types.ts";
import type { PageRun } from "./alloc.ts";
import { type Extent, type Ino, type Inode, isDir, PAGE } from "./inode.ts";
import type { Layer } from "./layer.ts";
import { join, type LayerPath, ROOT } from "./path.ts";
import type { LayerView } from "./resolve.ts";
import type { FsckReport } from "./types.ts";

/** What is wrong with one layer, in a form a repair can act on. */
export interface LayerFindings {
  /** Entries naming an inode no layer holds. */
  dangling: { dir: LayerPath; name: string }[];
  /** Inodes whose link count disagrees with their names (`want`). */
  links: { ino: Ino; has: number; want: number }[];
  /** Inline files the layer holds whose size is not the length of their inline bytes. */
  sizes: { ino: Ino; size: number; inline: number }[];
  /** Files the layer holds with extents outside its device: the first such extent (by file page) and how many there are. */
  outside: { ino: Ino; extent: Extent; count: number }[];
  /** Files the layer holds with pages mapped at or past page `end`, the first page past the file's size. */
  pastEnd: { ino: Ino; end: number; pages: number }[];
  /** Pages a file uses that the free-page map says are free. */
  usedFree: { ino: Ino; start: number; count: number }[];
  /** Allocated pages no file uses. */
  leaked: PageRun[];
  /** Device pages the layer's files use (extents inside the device), sorted and merged. */
  used: PageRun[];
  /** Device blocks holding live file data. */
  blocks: Set<number>;
  /** Of those, the blocks the device does not map: what files keep there is lost. */
  unmapped: number[];
  /** Per file with pages in unmapped blocks: the first such file page. */
  lost: Map<Ino, number>;
  /** Blocks holding file data whose ownership mark is wrong; `own` is what it should be. */
  ownership: { block: number; own: boolean }[];
  /** A path of each visible inode, for reports. */
  paths: Map<Ino, LayerPath>;
  /** Anything else, as text (not repairable). */
  other: string[];
}

/** True when the extent is well formed and lies inside a device of `totalPages` pages. */
export function extentInside(e: Extent, totalPages: number): boolean {
  return Number.isSafeInteger(e.page) && Number.isSafeInteger(e.dev) && Number.isSafeInteger(e.count) &&
    e.page >= 0 && e.dev >= 0 && e.count > 0 && e.dev + e.count <= totalPages;
}

/** True when the pool has device `id` (and it is not being deleted). */
function hasDevice(pool: Pool, id: DeviceId): boolean {
  return pool.devices().some((d) => d.id === id);
}

/**
 * Examines one layer; reads its whole tree, so it costs what the layer shows. The layer's
 * parent chain must be whole and its device present (see {@linkcode unusableLayers}).
 *
 * @example
 * ```ts ignore
 * const f = examineLayer(pool, view, layer);
 * console.log(f.leaked.length === 0 && f.dangling.length === 0);
 * ```
 */
export function examineLayer(pool: Pool, view: LayerView, layer: Layer): LayerFindings {
  const out: LayerFindings = {
    dangling: [], links: [], sizes: [], outside: [], pastEnd: [], usedFree: [], leaked: [], used: [],
    blocks: new Set(), unmapped: [], lost: new Map(), ownership: [], paths: new Map(), other: [],
  };
  const names = new Map<Ino, number>();
  const inodes = new Map<Ino, Inode>();
  const walk = (dir: LayerPath, dirIno: Ino) => {
    let subdirs = 0;
    for (const [n, ino] of view.list(layer, dir)) {
      const inode = view.inode(layer, ino);
      if (!inode) {
        out.dangling.push({ dir, name: n });
        continue;
      }
      inodes.set(ino, inode);
      if (!out.paths.has(ino)) out.paths.set(ino, join(dir, n));
      if (isDir(inode.mode)) {
        subdirs++;
        walk(join(dir, n), ino);
      } else {
        names.set(ino, (names.get(ino) ?? 0) + 1);
      }
    }
    const d = view.inode(layer, dirIno)!;
    if (d.nlink !== 2 + subdirs) out.links.push({ ino: dirIno, has: d.nlink, want: 2 + subdirs });
  };
  if (!view.inode(layer, layer.record.root)) {
    out.other.push(`the root inode ${layer.record.root} is missing`);
    return out;
  }
  out.paths.set(layer.record.root, ROOT);
  walk(ROOT, layer.record.root);
  for (const [ino, count] of names) {
    const n = inodes.get(ino)!.nlink;
    if (n !== count) out.links.push({ ino, has: n, want: count });
  }
  // Unlinked files kept by open handles still hold their pages.
  for (const [ino, inode] of layer.tables.inodes) if (inode.nlink <= 0) inodes.set(ino, inode);

  // What each inode the layer holds says about itself. Inodes held below are checked in
  // the layer holding them; here their extents outside the device are merely skipped.
  const total = layer.alloc.totalPages;
  for (const [ino, inode] of layer.tables.inodes) {
    if (inode.inline && inode.size !== inode.inline.byteLength) out.sizes.push({ ino, size: inode.size, inline: inode.inline.byteLength });
    if (!inode.extents) continue;
    const bad = inode.extents.filter((e) => !extentInside(e, total));
    if (bad.length) {
      const first = bad.reduce((a, b) => (b.page < a.page ? b : a));
      out.outside.push({ ino, extent: { ...first }, count: bad.length });
    }
    const end = Number.isSafeInteger(inode.size) && inode.size >= 0 ? Math.ceil(inode.size / PAGE) : 0;
    let past = 0;
    for (const e of inode.extents) if (extentInside(e, total) && e.page + e.count > end) past += Math.min(e.count, e.page + e.count - end);
    if (past > 0) out.pastEnd.push({ ino, end, pages: past });
  }

  const runs: (PageRun & { ino: Ino; page: number })[] = [];
  for (const [ino, inode] of inodes) {
    for (const e of inode.extents ?? []) if (extentInside(e, total)) runs.push({ start: e.dev, count: e.count, ino, page: e.page });
  }
  runs.sort((a, b) => a.start - b.start);
  const bs = pool.blockSize;
  const ppb = bs / PAGE;
  const dev = layer.record.device;
  const mapped = new Map<number, number | undefined>();
  const lookup = (b: number) => {
    if (!mapped.has(b)) mapped.set(b, pool.lookup(dev, b));
    return mapped.get(b);
  };
  for (let i = 0; i < runs.length; i++) {
    const r = runs[i];
    if (i > 0 && runs[i - 1].start + runs[i - 1].count > r.start) out.other.push(`inodes ${runs[i - 1].ino} and ${r.ino} share device page ${r.start}`);
    if (layer.alloc.overlapsFree(r.start, r.count)) out.usedFree.push({ ino: r.ino, start: r.start, count: r.count });
    for (let b = Math.floor(r.start / ppb); b <= Math.floor((r.start + r.count - 1) / ppb); b++) {
      out.blocks.add(b);
      if (lookup(b) !== undefined) continue;
      const page = r.page + Math.max(0, b * ppb - r.start);
      const known = out.lost.get(r.ino);
      if (known === undefined || page < known) out.lost.set(r.ino, page);
    }
  }
  const parentDev = layer.parent?.record.device;
  for (const b of [...out.blocks].sort((x, y) => x - y)) {
    const p = lookup(b);
    if (p === undefined) {
      out.unmapped.push(b);
      continue;
    }
    // The layer's own copy: mapped to another pool block than the parent's device maps there.
    const own = parentDev === undefined || pool.lookup(parentDev, b) !== p;
    if (own !== layer.alloc.owns(b)) out.ownership.push({ block: b, own });
  }
  out.used = merge(runs);
  out.leaked = subtract(allocatedRuns(layer), out.used);
  return out;
}

/** Sorted runs merged where they touch or overlap. */
function merge(runs: PageRun[]): PageRun[] {
  const out: PageRun[] = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last && last.start + last.count >= r.start) last.count = Math.max(last.count, r.start + r.count - last.start);
    else out.push({ start: r.start, count: r.count });
  }
  return out;
}

/** The pages between the allocator's free runs. */
function allocatedRuns(layer: Layer): PageRun[] {
  const out: PageRun[] = [];
  let cursor = 0;
  for (const free of [...layer.alloc.freeRuns(), { start: layer.alloc.totalPages, count: 0 }]) {
    if (free.start > cursor) out.push({ start: cursor, count: free.start - cursor });
    cursor = free.start + free.count;
  }
  return out;
}

/**
 * The pages of `[0, total)` that sorted, merged runs `used` do not cover: the free-page
 * map the layer's files imply.
 *
 * @example
 * ```ts
 * import { complement } from "./fsck.ts";
 * console.log(complement([{ start: 2, count: 3 }], 8)); // [{start:0,count:2}, {start:5,count:3}]
 * ```
 */
export function complement(used: PageRun[], total: number): PageRun[] {
  return subtract(total > 0 ? [{ start: 0, count: total }] : [], used);
}

/** The parts of sorted runs `a` that sorted runs `b` do not cover. */
function subtract(a: PageRun[], b: PageRun[]): PageRun[] {
  const out: PageRun[] = [];
  let j = 0;
  for (const r of a) {
    let p = r.start;
    const end = r.start + r.count;
    while (j < b.length && b[j].start + b[j].count <= p) j++;
    for (let k = j; k < b.length && b[k].start < end && p < end; k++) {
      if (b[k].start > p) out.push({ start: p, count: b[k].start - p });
      p = Math.max(p, b[k].start + b[k].count);
    }
    if (p < end) out.push({ start: p, count: end - p });
  }
  return out;
}

/**
 * Layers that cannot be examined or used: those whose parent is missing (`orphans`, set
 * aside when the store was opened), those whose device the pool does not have, and every
 * layer above one of them. Each with the reason, in text; parents before children.
 *
 * @example
 * ```ts ignore
 * for (const [layer, why] of unusableLayers(pool, layers, orphans)) console.log(layer.record.name, why);
 * ```
 */
export function unusableLayers(pool: Pool, layers: Layer[], orphans: ReadonlySet<Layer> = new Set()): Map<Layer, string> {
  const devices = new Set(pool.devices().map((d) => d.id));
  const out = new Map<Layer, string>();
  const cause = new Map<Layer, string>();
  for (const layer of byDepth(layers)) {
    if (orphans.has(layer)) {
      cause.set(layer, `names parent layer ${layer.record.parent}, which is missing`);
      out.set(layer, cause.get(layer)!);
    } else if (!devices.has(layer.record.device)) {
      cause.set(layer, `has lost its device ${layer.record.device}`);
      out.set(layer, `its device ${layer.record.device} is missing`);
    } else if (layer.parent && out.has(layer.parent)) {
      let top = layer.parent;
      while (top.parent && out.has(top.parent)) top = top.parent;
      out.set(layer, `it is based on '${top.record.name}', which ${cause.get(top)}`);
    }
  }
  return out;
}

/**
 * The layers sorted so that every parent comes before its children.
 *
 * @example
 * ```ts ignore
 * for (const layer of byDepth(layers)) repair(layer); // parents first
 * ```
 */
export function byDepth(layers: Layer[]): Layer[] {
  const depth = (l: Layer) => {
    let n = 0;
    for (let p = l.parent; p && n <= layers.length; p = p.parent) n++;
    return n;
  };
  return layers.map((l) => [depth(l), l] as const).sort((a, b) => a[0] - b[0]).map(([, l]) => l);
}

/** How a report names an inode: its number and, when it has one, a path it shows at. */
export function inodeLabel(f: LayerFindings, ino: Ino): string {
  const p = f.paths.get(ino);
  return p === undefined ? `inode ${ino}` : `inode ${ino} (${p})`;
}

/** Describes what is wrong with the first extent outside the device. */
export function outsideText(e: Extent, count: number, totalPages: number): string {
  const more = count > 1 ? ` and ${count - 1} more` : "";
  return `extent outside the device: file page ${e.page} at device pages ${e.dev}+${e.count}${more}; the device has ${totalPages} pages`;
}

/**
 * The lines {@linkcode checkStore} reports for one examined layer, each starting with
 * the layer's name.
 */
export function findingLines(pool: Pool, layer: Layer, f: LayerFindings): string[] {
  const name = layer.record.name;
  const out: string[] = [];
  for (const d of f.dangling) out.push(`${name}: ${join(d.dir, d.name)} names an inode no layer holds`);
  for (const l of f.links) out.push(`${name}: inode ${l.ino} has nlink ${l.has}, expected ${l.want}`);
  for (const s of f.sizes) out.push(`${name}: ${inodeLabel(f, s.ino)}: size ${s.size} disagrees with its ${s.inline} byte(s) of inline data`);
  for (const o of f.outside) out.push(`${name}: ${inodeLabel(f, o.ino)}: ${outsideText(o.extent, o.count, layer.alloc.totalPages)}`);
  for (const p of f.pastEnd) out.push(`${name}: ${inodeLabel(f, p.ino)}: ${p.pages} page(s) mapped past the end of the file (page ${p.end} on)`);
  for (const u of f.usedFree) out.push(`${name}: inode ${u.ino} uses pages ${u.start}+${u.count}, some of them marked free`);
  for (const r of f.leaked) out.push(`${name}: pages ${r.start}+${r.count} are allocated but no file uses them`);
  for (const o of f.other) out.push(`${name}: ${o}`);
  const blocks = (list: number[], one: string, many: string) => {
    for (const [a, b] of blockRanges(list)) out.push(a === b ? `${name}: block ${a} ${one}` : `${name}: blocks ${a}-${b} ${many}`);
  };
  blocks(f.unmapped, "holds file data but is not mapped", "hold file data but are not mapped");
  blocks(f.ownership.filter((o) => o.own).map((o) => o.block),
    "holds the layer's own copy but the free-page map does not mark it as the layer's own",
    "hold the layer's own copies but the free-page map does not mark them as the layer's own");
  blocks(f.ownership.filter((o) => !o.own).map((o) => o.block),
    "is marked as the layer's own but the device shares it with the parent",
    "are marked as the layer's own but the device shares them with the parent");
  const dev = layer.record.device;
  const mapped = pool.usage(dev).mapped;
  if (mapped !== f.blocks.size) out.push(`${name}: device ${dev} maps ${mapped} blocks, its files need ${f.blocks.size}`);
  return out;
}

/**
 * Sorted block numbers as inclusive runs.
 *
 * @example
 * ```ts
 * import { blockRanges } from "./fsck.ts";
 * console.log(blockRanges([3, 7, 8, 9])); // [[3, 3], [7, 9]]
 * ```
 */
export function blockRanges(blocks: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const b of blocks) {
    const last = out[out.length - 1];
    if (last && last[1] + 1 === b) last[1] = b;
    else out.push([b, b]);
  }
  return out;
}

/** Every pool block device `id` maps (for devices no file accounting covers). */
export function mappedBlocks(pool: Pool, id: DeviceId): Map<number, number> {
  const out = new Map<number, number>();
  if (!hasDevice(pool, id)) return out;
  const size = pool.devices().find((d) => d.id === id)!.size;
  if (pool.usage(id).mapped === 0) return out;
  for (let b = 0; b < Math.ceil(size / pool.blockSize); b++) {
    const p = pool.lookup(id, b);
    if (p !== undefined) out.set(b, p);
  }
  return out;
}

/**
 * Checks every layer and the pool's accounting. `orphans` are layers whose parent was
 * missing when the store was opened for salvage; they and the layers above them are
 * reported, not examined.
 *
 * @example
 * ```ts ignore
 * const report = checkStore(pool, view, layers, baseDevice);
 * if (report.problems.length) console.error(report.problems.join("\n"));
 * ```
 */
export function checkStore(pool: Pool, view: LayerView, layers: Layer[], baseDevice: DeviceId, orphans: ReadonlySet<Layer> = new Set()): FsckReport {
  const problems: string[] = [];
  const physical = new Set<number>();
  const unusable = unusableLayers(pool, layers, orphans);
  for (const layer of byDepth(layers)) {
    const why = unusable.get(layer);
    if (why !== undefined) {
      problems.push(`${layer.record.name}: ${why}`);
      // Their blocks are still in use until a repair drops them.
      for (const p of mappedBlocks(pool, layer.record.device).values()) physical.add(p);
      continue;
    }
    const f = examineLayer(pool, view, layer);
    problems.push(...findingLines(pool, layer, f));
    for (const b of f.blocks) {
      const p = pool.lookup(layer.record.device, b);
      if (p !== undefined) physical.add(p);
    }
  }
  if (!hasDevice(pool, baseDevice)) problems.push(`the base device ${baseDevice} is missing`);
  else if (pool.usage(baseDevice).mapped !== 0) problems.push(`the base device ${baseDevice} maps blocks; it must stay empty`);
  const usedBlocks = pool.status().dataBlocks.used;
  if (usedBlocks !== physical.size) problems.push(`the pool uses ${usedBlocks} blocks, the layers' files need ${physical.size}`);
  return { expectedBlocks: physical.size, usedBlocks, problems };
}
