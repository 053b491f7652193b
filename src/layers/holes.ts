/**
 * Holes in a file: punching them (`fallocate(PUNCH_HOLE)`), and finding where data and
 * holes are (`lseek(SEEK_DATA / SEEK_HOLE)`). A file's page map says it exactly: an
 * unmapped page is a hole and reads as zeros; inline files are all data.
 *
 * @module
 */
import { type DataContext, freeRuns } from "./fileio.ts";
import { segments, unmapRange } from "./filemap.ts";
import { type Inode, PAGE } from "./inode.ts";

/**
 * Makes bytes `[offset, offset+length)` of the file read as zeros without changing its
 * size: whole pages go back to the layer (blocks left wholly free go back to the pool),
 * the partial pages at the edges are zeroed in place. The inode must be the layer's own.
 *
 * @example
 * ```ts ignore
 * await punchData(ctx, tree.own(ino), 1 << 20, 4 << 20); // frees 4 MiB of pages
 * ```
 */
export async function punchData(ctx: DataContext, inode: Inode, offset: number, length: number): Promise<void> {
  const end = Math.min(inode.size, offset + length);
  if (end <= offset) return;
  if (inode.inline) {
    const next = inode.inline.slice(0, inode.size);
    next.fill(0, offset, end);
    inode.inline = next;
    return;
  }
  const extents = inode.extents ?? [];
  const zero = async (from: number, to: number) => {
    if (to <= from) return;
    for (const s of segments(extents, Math.floor(from / PAGE), Math.ceil(to / PAGE))) {
      if (s.dev < 0) continue;
      const a = Math.max(from, s.page * PAGE);
      const b = Math.min(to, (s.page + s.count) * PAGE);
      const at = s.dev * PAGE + (a - s.page * PAGE);
      await ctx.device.write(at, new Uint8Array(b - a));
      ctx.layer.alloc.markOwn(Math.floor(at / PAGE), Math.ceil((at + b - a) / PAGE) - Math.floor(at / PAGE));
    }
  };
  const firstFull = Math.ceil(offset / PAGE);
  const endFull = Math.floor(end / PAGE);
  if (firstFull >= endFull) {
    await zero(offset, end);
    return;
  }
  await zero(offset, firstFull * PAGE);
  await zero(endFull * PAGE, end);
  await freeRuns(ctx, unmapRange(extents, firstFull, endFull));
}

/**
 * Where the next data (or, with `hole`, the next hole) at or after `offset` starts, as
 * `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)` answer; undefined where they fail with ENXIO
 * (`offset` at or past the end, or no data after it). The end of the file counts as a hole.
 *
 * @example
 * ```ts
 * import { seekData } from "./holes.ts";
 * const sparse = { size: 3 * 4096, extents: [{ page: 1, dev: 7, count: 1 }] } as never;
 * console.log(seekData(sparse, 0, false), seekData(sparse, 4096, true)); // 4096 8192
 * ```
 */
export function seekData(inode: Inode, offset: number, hole: boolean): number | undefined {
  if (offset >= inode.size) return undefined;
  if (inode.inline || !inode.extents) return hole ? inode.size : offset;
  for (const s of segments(inode.extents, Math.floor(offset / PAGE), Math.ceil(inode.size / PAGE))) {
    if ((s.dev < 0) === hole) return Math.min(inode.size, Math.max(offset, s.page * PAGE));
  }
  return hole ? inode.size : undefined;
}
