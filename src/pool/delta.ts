/**
 * thin_delta: which virtual blocks two devices map alike and which differ, read off
 * their block maps alone (no data is read). Two devices related by snapshots share map
 * nodes; a shared node (the same object on both sides) maps its whole span alike, so the
 * walk skips it without looking inside. The cost is the nodes that differ: a 10 GiB image
 * and a container that wrote one block compare in one path of nodes, whatever they hold.
 *
 * Blocks count as the same when both devices map them to the same pool block (what
 * copy-on-write shares), not when two blocks happen to hold equal bytes, as in thin_delta.
 *
 * @module
 */
import { FANOUT, type MapNode, type Mapping } from "./maptree.ts";
import type { VBlock } from "./types.ts";

/** How a range of virtual blocks compares, in thin_delta's words. */
export type DeltaKind = "same" | "different" | "left_only" | "right_only";

/** A run of virtual blocks that compare alike, in blocks of the pool. */
export interface DeltaRange {
  /**
   * `same`: both map each block to the same pool block; `different`: both map it, to
   * different pool blocks; `left_only` / `right_only`: only that side maps it.
   */
  kind: DeltaKind;
  /** First virtual block. */
  begin: VBlock;
  /** Blocks in the run. */
  length: number;
}

/** Options of {@linkcode Pool.delta}. */
export interface DeltaOptions {
  /**
   * Report `same` ranges too (thin_delta's full listing). They take a walk through the
   * shared nodes, which the differences alone never enter; default false.
   */
  same?: boolean;
}

/** The ranges in which `left` and `right` differ (and, with `same`, agree), in block order. */
export function deltaMaps(left: Mapping, right: Mapping, options: DeltaOptions = {}): DeltaRange[] {
  const out: DeltaRange[] = [];
  const same = options.same === true;
  const emit = (kind: DeltaKind, vb: VBlock) => {
    const last = out[out.length - 1];
    if (last && last.kind === kind && last.begin + last.length === vb) last.length++;
    else out.push({ kind, begin: vb, length: 1 });
  };
  /** Every mapped block under `node` (level `level`, first block `base`) as `kind`. */
  const all = (node: MapNode, level: number, base: VBlock, kind: DeltaKind) => {
    if (level === 0) {
      const slots = node.slots as Uint32Array;
      for (let i = 0; i < FANOUT; i++) if (slots[i]) emit(kind, base + i);
      return;
    }
    const span = FANOUT ** level;
    const slots = node.slots as (MapNode | null)[];
    for (let i = 0; i < FANOUT; i++) if (slots[i]) all(slots[i]!, level - 1, base + i * span, kind);
  };
  // Levels count from the leaves (0). A device of fewer levels maps the first part of the
  // taller one's space: its root sits in slot 0 all the way down.
  const walk = (a: MapNode | null, la: number, b: MapNode | null, lb: number, base: VBlock) => {
    if (!a && !b) return;
    if (!b) return all(a!, la, base, "left_only");
    if (!a) return all(b, lb, base, "right_only");
    if (la !== lb) {
      const tall = la > lb ? a : b;
      const level = Math.max(la, lb);
      const span = FANOUT ** level;
      const slots = tall.slots as (MapNode | null)[];
      for (let i = 0; i < FANOUT; i++) {
        const child = slots[i];
        const other = i === 0 ? (la > lb ? b : a) : null;
        if (la > lb) walk(child, level - 1, other, lb, base + i * span);
        else walk(other, la, child, level - 1, base + i * span);
      }
      return;
    }
    if (a === b) {
      if (same) all(a, la, base, "same");
      return;
    }
    if (la === 0) {
      const sa = a.slots as Uint32Array;
      const sb = b.slots as Uint32Array;
      for (let i = 0; i < FANOUT; i++) {
        const x = sa[i];
        const y = sb[i];
        if (x === y) {
          if (x && same) emit("same", base + i);
        } else emit(x && y ? "different" : x ? "left_only" : "right_only", base + i);
      }
      return;
    }
    const span = FANOUT ** la;
    const ca = a.slots as (MapNode | null)[];
    const cb = b.slots as (MapNode | null)[];
    for (let i = 0; i < FANOUT; i++) walk(ca[i], la - 1, cb[i], lb - 1, base + i * span);
  };
  walk(left.root, left.height - 1, right.root, right.height - 1, 0);
  return out;
}
