/**
 * A file's page map: which pages of the file live at which pages of the layer's device.
 * Sorted, non-overlapping extents; neighbours contiguous in both file and device are
 * merged, so a sequentially written file is one extent however large it is.
 *
 * @module
 */
import type { Extent } from "./inode.ts";

/** A run of file pages: mapped at `dev`, or a hole when `dev` is -1. */
export interface Segment {
  page: number;
  count: number;
  dev: number;
}

/** Index of the first extent ending after `page`. */
function firstAfter(extents: Extent[], page: number): number {
  let lo = 0;
  let hi = extents.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (extents[mid].page + extents[mid].count <= page) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Covers pages `[first, end)` with mapped runs and holes, in order.
 *
 * @example
 * ```ts
 * import { segments } from "./filemap.ts";
 * console.log(segments([{ page: 1, dev: 10, count: 2 }], 0, 4));
 * // [{page:0,count:1,dev:-1}, {page:1,count:2,dev:10}, {page:3,count:1,dev:-1}]
 * ```
 */
export function segments(extents: Extent[], first: number, end: number): Segment[] {
  const out: Segment[] = [];
  let p = first;
  for (let i = firstAfter(extents, first); p < end && i < extents.length; i++) {
    const e = extents[i];
    if (e.page >= end) break;
    if (e.page > p) {
      out.push({ page: p, count: e.page - p, dev: -1 });
      p = e.page;
    }
    const stop = Math.min(end, e.page + e.count);
    out.push({ page: p, count: stop - p, dev: e.dev + (p - e.page) });
    p = stop;
  }
  if (p < end) out.push({ page: p, count: end - p, dev: -1 });
  return out;
}

/**
 * Maps the unmapped pages `[page, page+count)` to device pages from `dev`, merging with
 * neighbours where both sides are contiguous. The caller knows the range is a hole.
 *
 * @example
 * ```ts
 * import { mapPages } from "./filemap.ts";
 * const e = [{ page: 0, dev: 10, count: 1 }];
 * mapPages(e, 1, 11, 2);
 * console.log(e); // [{ page: 0, dev: 10, count: 3 }]
 * ```
 */
export function mapPages(extents: Extent[], page: number, dev: number, count: number): void {
  const i = firstAfter(extents, page);
  const prev = extents[i - 1];
  const next = extents[i];
  const joinsPrev = prev && prev.page + prev.count === page && prev.dev + prev.count === dev;
  const joinsNext = next && page + count === next.page && dev + count === next.dev;
  if (joinsPrev && joinsNext) {
    prev.count += count + next.count;
    extents.splice(i, 1);
  } else if (joinsPrev) {
    prev.count += count;
  } else if (joinsNext) {
    next.page = page;
    next.dev = dev;
    next.count += count;
  } else {
    extents.splice(i, 0, { page, dev, count });
  }
}

/**
 * Unmaps every page from `first` on; returns the device runs that held them, as
 * `{ dev, count }` in pages.
 *
 * @example
 * ```ts
 * import { unmapFrom } from "./filemap.ts";
 * const e = [{ page: 0, dev: 10, count: 4 }];
 * console.log(unmapFrom(e, 1), e); // [{ dev: 11, count: 3 }] [{ page: 0, dev: 10, count: 1 }]
 * ```
 */
export function unmapFrom(extents: Extent[], first: number): { dev: number; count: number }[] {
  const freed: { dev: number; count: number }[] = [];
  let i = firstAfter(extents, first);
  if (i < extents.length && extents[i].page < first) {
    const e = extents[i];
    const keep = first - e.page;
    freed.push({ dev: e.dev + keep, count: e.count - keep });
    e.count = keep;
    i++;
  }
  for (const e of extents.splice(i)) freed.push({ dev: e.dev, count: e.count });
  return freed;
}

/**
 * Unmaps pages `[first, end)`, splitting extents that reach past either edge; returns the
 * device runs that held them, as `{ dev, count }` in pages.
 *
 * @example
 * ```ts
 * import { unmapRange } from "./filemap.ts";
 * const e = [{ page: 0, dev: 10, count: 4 }];
 * console.log(unmapRange(e, 1, 3), e); // [{ dev: 11, count: 2 }] [{ page: 0, dev: 10, count: 1 }, { page: 3, dev: 13, count: 1 }]
 * ```
 */
export function unmapRange(extents: Extent[], first: number, end: number): { dev: number; count: number }[] {
  const freed: { dev: number; count: number }[] = [];
  if (end <= first) return freed;
  const i = firstAfter(extents, first);
  const keep: Extent[] = [];
  let j = i;
  for (; j < extents.length && extents[j].page < end; j++) {
    const e = extents[j];
    const from = Math.max(first, e.page);
    const to = Math.min(end, e.page + e.count);
    if (e.page < from) keep.push({ page: e.page, dev: e.dev, count: from - e.page });
    freed.push({ dev: e.dev + (from - e.page), count: to - from });
    if (to < e.page + e.count) keep.push({ page: to, dev: e.dev + (to - e.page), count: e.page + e.count - to });
  }
  extents.splice(i, j - i, ...keep);
  return freed;
}

/**
 * Pages a file holds in the device.
 *
 * @example
 * ```ts
 * import { mappedPages } from "./filemap.ts";
 * console.log(mappedPages([{ page: 0, dev: 3, count: 2 }, { page: 9, dev: 7, count: 1 }])); // 3
 * ```
 */
export function mappedPages(extents: Extent[]): number {
  let n = 0;
  for (const e of extents) n += e.count;
  return n;
}

/**
 * The device page right after the mapped page before `page`, if that one is `page - 1`:
 * where writing `page` keeps the extent contiguous.
 *
 * @example
 * ```ts
 * import { tailHint } from "./filemap.ts";
 * console.log(tailHint([{ page: 0, dev: 40, count: 2 }], 2)); // 42
 * ```
 */
export function tailHint(extents: Extent[], page: number): number | undefined {
  const i = firstAfter(extents, page);
  const prev = extents[i - 1];
  if (prev && prev.page + prev.count === page) return prev.dev + prev.count;
  return undefined;
}
