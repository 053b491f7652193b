/**
 * The mapping of a thin device's blocks to pool blocks: a radix tree of 1,024-way nodes
 * whose nodes are shared between devices and reference counted, as dm-thin shares its
 * B-tree nodes. A snapshot points at its origin's root and counts one more reference:
 * it copies nothing, whatever the origin holds. A write through a shared node first
 * copies that node (shadowing), so each side ends up with its own path and both keep
 * sharing everything else. A read walks from the root, one node per level (at most
 * three for a 64 TiB device), however deep the chain of snapshots behind it.
 *
 * @module
 */
import type { BlockNo, NodeId, VBlock } from "./types.ts";
import type { SpaceMap } from "./spacemap.ts";

/** Bits of a virtual block number each level resolves (a pool's record may say fewer: see MapForest). */
export const LEVEL_BITS = 10;
/** Slots per node. */
export const FANOUT = 1 << LEVEL_BITS;
/** The fewest bits per level a pool may have (nodes of 4 slots, for tests of deep trees). */
export const MIN_LEVEL_BITS = 2;

/** A node: a leaf holds pool block + 1 (0 = unmapped) per slot; an interior holds children. */
export class MapNode {
  refs = 1;
  count = 0;
  constructor(
    public id: NodeId,
    readonly leaf: boolean,
    readonly slots: Uint32Array | (MapNode | null)[],
  ) {}
}

/** The root of one device's mapping. */
export interface Mapping {
  root: MapNode | null;
  /** Levels of the tree; a device of `n` blocks needs ceil(log1024(n)) of them. */
  height: number;
}

/** Levels needed to address `blocks` virtual blocks with nodes of `fanout` slots. */
export function heightFor(blocks: number, fanout = FANOUT): number {
  let h = 1;
  while (fanout ** h < blocks) h++;
  return h;
}

/** Where a virtual block is mapped, and whether the device alone sees that pool block. */
export interface Resolved {
  block: BlockNo;
  exclusive: boolean;
}

/**
 * Node bookkeeping shared by every device of a pool. Nodes have `fanout` slots: 1,024 (10
 * bits per level) unless the pool was created with fewer, which only tests do, to get deep
 * trees from small devices.
 */
export class MapForest {
  /** Nodes created or changed since the last commit. */
  readonly dirty = new Set<MapNode>();
  /** Called for a node that no device references any more. */
  onDead: (node: MapNode) => void = () => {};
  /** Slots per node. */
  readonly fanout: number;
  /** fanout - 1: `x & mask` is x mod fanout for any whole x below 2^53 (fanout divides 2^32). */
  readonly #mask: number;
  /** Virtual blocks one slot spans at each level: fanout ** level. */
  readonly #spans: number[] = [];

  constructor(readonly space: SpaceMap, public nextId: NodeId = 1, readonly levelBits: number = LEVEL_BITS) {
    this.fanout = 2 ** levelBits;
    this.#mask = this.fanout - 1;
    for (let span = 1; span <= Number.MAX_SAFE_INTEGER; span *= this.fanout) this.#spans.push(span);
  }

  /** Levels needed to address `blocks` virtual blocks. */
  heightFor(blocks: number): number {
    return heightFor(blocks, this.fanout);
  }

  #slotAt(vb: VBlock, level: number): number {
    // A power of two divides exactly, and & truncates: floor(vb / span) mod fanout.
    return (vb / this.#spans[level]) & this.#mask;
  }

  newNode(leaf: boolean): MapNode {
    const node = new MapNode(this.nextId++, leaf, leaf ? new Uint32Array(this.fanout) : new Array(this.fanout).fill(null));
    this.dirty.add(node);
    return node;
  }

  /** The pool block behind `vb`, or -1. */
  lookup(m: Mapping, vb: VBlock): BlockNo {
    let node = m.root;
    for (let level = m.height - 1; node && level > 0; level--) {
      node = (node.slots as (MapNode | null)[])[this.#slotAt(vb, level)];
    }
    if (!node) return -1;
    return (node.slots as Uint32Array)[vb & this.#mask] - 1;
  }

  /** Like lookup, and tells whether the block is seen by this device only. */
  resolve(m: Mapping, vb: VBlock): Resolved {
    let node = m.root;
    let exclusive = true;
    for (let level = m.height - 1; node && level > 0; level--) {
      if (node.refs > 1) exclusive = false;
      node = (node.slots as (MapNode | null)[])[this.#slotAt(vb, level)];
    }
    if (!node) return { block: -1, exclusive: false };
    if (node.refs > 1) exclusive = false;
    const block = (node.slots as Uint32Array)[vb & this.#mask] - 1;
    return { block, exclusive: exclusive && block >= 0 && this.space.refs[block] === 1 };
  }

  /** Shares a whole mapping with one more device: the snapshot operation. */
  share(m: Mapping): Mapping {
    if (m.root) m.root.refs++;
    return { root: m.root, height: m.height };
  }

  /** Drops a device's mapping: nodes and blocks nobody else references are freed. */
  drop(m: Mapping): void {
    if (m.root) this.#release(m.root);
    m.root = null;
  }

  /**
   * Maps `vb` to `block` (or unmaps it with -1) in this device only, copying shared
   * nodes on the way down. Returns the pool block it mapped before, or -1; the caller
   * owns that reference (drop it with `space.unref`). Takes over the caller's
   * reference to `block`.
   */
  set(m: Mapping, vb: VBlock, block: BlockNo): BlockNo {
    // Unmapping what is not mapped must not copy shared nodes on the way.
    if (block < 0 && this.lookup(m, vb) < 0) return -1;
    m.root = this.#exclusive(m.root, m.height === 1);
    const path: MapNode[] = [];
    let node = m.root;
    for (let level = m.height - 1; level > 0; level--) {
      path.push(node);
      const slots = node.slots as (MapNode | null)[];
      const i = this.#slotAt(vb, level);
      const child = slots[i];
      if (!child) {
        slots[i] = this.newNode(level === 1);
        node.count++;
      } else {
        slots[i] = this.#exclusive(child, level === 1);
      }
      this.dirty.add(node);
      node = slots[i]!;
    }
    const slots = node.slots as Uint32Array;
    const i = vb & this.#mask;
    const old = slots[i] - 1;
    slots[i] = block + 1;
    if (old < 0) node.count++;
    if (block < 0) node.count--;
    this.dirty.add(node);
    if (node.count === 0) {
      path.push(node);
      this.#prune(m, path, -1);
    }
    return old;
  }

  /** Visits every mapped (virtual, pool) pair of a mapping, in virtual order. */
  *entries(m: Mapping): Generator<[VBlock, BlockNo, MapNode]> {
    if (!m.root) return;
    yield* this.#walk(m.root, m.height - 1, 0);
  }

  *#walk(node: MapNode, level: number, base: VBlock): Generator<[VBlock, BlockNo, MapNode]> {
    const span = this.#spans[level];
    const fanout = this.fanout;
    if (node.leaf) {
      const slots = node.slots as Uint32Array;
      for (let i = 0; i < fanout; i++) if (slots[i]) yield [base + i, slots[i] - 1, node];
      return;
    }
    const slots = node.slots as (MapNode | null)[];
    for (let i = 0; i < fanout; i++) {
      const child = slots[i];
      if (child) yield* this.#walk(child, level - 1, base + i * span);
    }
  }

  /** Makes `node` private to the caller's path, copying it if it is shared. */
  #exclusive(node: MapNode | null, leaf: boolean): MapNode {
    if (!node) return this.newNode(leaf);
    if (node.refs === 1) return node;
    const copy = this.newNode(node.leaf);
    copy.count = node.count;
    if (node.leaf) {
      const src = node.slots as Uint32Array;
      (copy.slots as Uint32Array).set(src);
      for (let i = 0; i < src.length; i++) if (src[i]) this.space.ref(src[i] - 1);
    } else {
      const src = node.slots as (MapNode | null)[];
      const dst = copy.slots as (MapNode | null)[];
      for (let i = 0; i < src.length; i++) {
        const child = src[i];
        if (child) { child.refs++; dst[i] = child; }
      }
    }
    node.refs--;
    return copy;
  }

  /** Removes empty exclusive nodes from the bottom of `path` upwards. */
  #prune(m: Mapping, path: MapNode[], result: BlockNo): BlockNo {
    for (let k = path.length - 1; k >= 0; k--) {
      const node = path[k];
      if (node.count !== 0) break;
      if (k === 0) {
        this.#release(node);
        m.root = null;
        break;
      }
      const parent = path[k - 1];
      const slots = parent.slots as (MapNode | null)[];
      const i = slots.indexOf(node);
      slots[i] = null;
      parent.count--;
      this.dirty.add(parent);
      this.#release(node);
    }
    return result;
  }

  #release(node: MapNode): void {
    if (--node.refs > 0) return;
    this.dirty.delete(node);
    this.onDead(node);
    if (node.leaf) {
      const slots = node.slots as Uint32Array;
      for (let i = 0; i < slots.length; i++) if (slots[i]) this.space.unref(slots[i] - 1);
    } else {
      for (const child of node.slots as (MapNode | null)[]) if (child) this.#release(child);
    }
  }
}
