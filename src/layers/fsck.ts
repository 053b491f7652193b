/**
 * Consistency of the layer store against its pool, for tests and repair tools: every
 * visible entry names an inode, link counts match the names, no two files share device
 * pages, no pages are allocated without a file, each device maps exactly the blocks its
 * files need, and the pool's used blocks are exactly the blocks live file data occupies.
 *
 * @module
 */
import type { Pool } from "../pool/pool.ts";
import type { DeviceId } from "../pool/types.ts";
import type { PageRun } from "./alloc.ts";
import { type Ino, type Inode, isDir, PAGE } from "./inode.ts";
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
  /** Allocated pages no file uses. */
  leaked: PageRun[];
  /** Device blocks holding live file data. */
  blocks: Set<number>;
  /** Anything else, as text. */
  other: string[];
}

/**
 * Examines one layer; reads its whole tree, so it costs what the layer shows.
 *
 * @example
 * ```ts ignore
 * const f = examineLayer(pool, view, layer);
 * console.log(f.leaked.length === 0 && f.dangling.length === 0);
 * ```
 */
export function examineLayer(pool: Pool, view: LayerView, layer: Layer): LayerFindings {
  const out: LayerFindings = { dangling: [], links: [], leaked: [], blocks: new Set(), other: [] };
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
  walk(ROOT, layer.record.root);
  for (const [ino, count] of names) {
    const n = inodes.get(ino)!.nlink;
    if (n !== count) out.links.push({ ino, has: n, want: count });
  }
  // Unlinked files kept by open handles still hold their pages.
  for (const [ino, inode] of layer.tables.inodes) if (inode.nlink <= 0) inodes.set(ino, inode);
  const runs: (PageRun & { ino: Ino })[] = [];
  for (const [ino, inode] of inodes) for (const e of inode.extents ?? []) runs.push({ start: e.dev, count: e.count, ino });
  runs.sort((a, b) => a.start - b.start);
  const bs = pool.blockSize;
  for (let i = 0; i < runs.length; i++) {
    const r = runs[i];
    if (i > 0 && runs[i - 1].start + runs[i - 1].count > r.start) out.other.push(`inodes ${runs[i - 1].ino} and ${r.ino} share device page ${r.start}`);
    if (layer.alloc.overlapsFree(r.start, r.count)) out.other.push(`inode ${r.ino} uses pages ${r.start}+${r.count}, some of them marked free`);
    for (let b = Math.floor(r.start * PAGE / bs); b <= Math.floor(((r.start + r.count) * PAGE - 1) / bs); b++) out.blocks.add(b);
  }
  out.leaked = subtract(allocatedRuns(layer), runs);
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
 * Checks every layer and the pool's accounting.
 *
 * @example
 * ```ts ignore
 * const report = checkStore(pool, view, layers, baseDevice);
 * if (report.problems.length) console.error(report.problems.join("\n"));
 * ```
 */
export function checkStore(pool: Pool, view: LayerView, layers: Layer[], baseDevice: DeviceId): FsckReport {
  const problems: string[] = [];
  const physical = new Set<number>();
  for (const layer of layers) {
    const name = layer.record.name;
    const f = examineLayer(pool, view, layer);
    for (const d of f.dangling) problems.push(`${name}: ${join(d.dir, d.name)} names an inode no layer holds`);
    for (const l of f.links) problems.push(`${name}: inode ${l.ino} has nlink ${l.has}, expected ${l.want}`);
    for (const r of f.leaked) problems.push(`${name}: pages ${r.start}+${r.count} are allocated but no file uses them`);
    for (const o of f.other) problems.push(`${name}: ${o}`);
    const dev = layer.record.device;
    for (const b of f.blocks) {
      const p = pool.lookup(dev, b);
      if (p === undefined) problems.push(`${name}: block ${b} holds file data but is not mapped`);
      else physical.add(p);
    }
    const mapped = pool.usage(dev).mapped;
    if (mapped !== f.blocks.size) problems.push(`${name}: device ${dev} maps ${mapped} blocks, its files need ${f.blocks.size}`);
  }
  if (pool.usage(baseDevice).mapped !== 0) problems.push(`the base device ${baseDevice} maps blocks; it must stay empty`);
  const usedBlocks = pool.status().dataBlocks.used;
  if (usedBlocks !== physical.size) problems.push(`the pool uses ${usedBlocks} blocks, the layers' files need ${physical.size}`);
  return { expectedBlocks: physical.size, usedBlocks, problems };
}
