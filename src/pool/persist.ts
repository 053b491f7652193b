/**
 * The on-disk form of the pool's metadata, all CBOR:
 * - `pool.cbor`, the root record: settings, transaction id, and the names of every
 *   live file (devices, node segments, the layer store's files);
 * - one file per device: its id, size, and the id of its mapping's root node;
 * - node segments: each commit writes the mapping nodes it created or changed into one
 *   new segment, so a commit costs what it changed. Nodes are shared between devices
 *   (that is what makes snapshots free), so they live in segments, not device files.
 *
 * @module
 */
import { LEVEL_BITS, type MapNode, MIN_LEVEL_BITS } from "./maptree.ts";
import type { NodeId, PoolSettings } from "./types.ts";

/** Format tag of the root record. */
export const POOL_FORMAT = "thinstack-pool";
/**
 * Version of the on-disk format. 2: every metadata file has a header with a CRC-32C
 * (`metafile.ts`) and the root a commit replaces is kept (`pool.prev.cbor`). Version 1
 * stores (bare CBOR) are not read: the project is pre-release.
 */
export const POOL_VERSION = 2;

/** The root record. */
export interface PoolRecord {
  format: typeof POOL_FORMAT;
  version: number;
  transactionId: number;
  blockSize: number;
  dataBlocks: number;
  metadataSize: number;
  /** Spaces under their low water mark at this commit (lowwater.ts): no new event for them until they cross back. */
  lowWater?: { data?: boolean; metadata?: boolean };
  /** Direct mode: the block device holding the data (absent: the data file `data`). */
  dataDevice?: string;
  nextNodeId: number;
  /** Blocks in use at this commit; `check` recounts them from the maps. */
  usedBlocks?: number;
  /** Device id → its file. */
  devices: Record<string, string>;
  segments: string[];
  participants: Record<string, unknown>;
  settings?: Partial<PoolSettings>;
  /**
   * The blocks this commit freed, as (first, count) pairs: blocks the previous root maps
   * that writes after this commit may reuse (or trim punch), which `repair` reports when it
   * goes back to the previous root. Absent in roots that repair or restore wrote.
   */
  freed?: number[];
  /** Bits per map tree level (nodes of 2^mapLevelBits slots); absent: 10. Only tests make pools with fewer. */
  mapLevelBits?: number;
}

/** A device file. */
export interface DeviceRecord {
  id: number;
  size: number;
  height: number;
  /** Root node id, 0 for an empty mapping. */
  root: NodeId;
  created: number;
  /** A deferred deletion in progress. */
  deleting?: boolean;
}

/** A node as stored: [id, leaf ? 1 : 0, slots as (index, value) pairs]. */
export type StoredNode = [NodeId, 0 | 1, number[]];

/** A segment file. */
export interface SegmentRecord {
  transactionId: number;
  nodes: StoredNode[];
}

/** Encodes a node: only its used slots, as index/value pairs (leaf: pool block + 1; interior: child id). */
export function storeNode(node: MapNode): StoredNode {
  const pairs: number[] = [];
  if (node.leaf) {
    const slots = node.slots as Uint32Array;
    for (let i = 0; i < slots.length; i++) if (slots[i]) pairs.push(i, slots[i]);
  } else {
    const slots = node.slots as (MapNode | null)[];
    for (let i = 0; i < slots.length; i++) if (slots[i]) pairs.push(i, slots[i]!.id);
  }
  return [node.id, node.leaf ? 1 : 0, pairs];
}

/** Every file a root record names: its segments, device files and participants' files. */
export function namedFiles(r: PoolRecord): Set<string> {
  const out = new Set<string>([...r.segments, ...Object.values(r.devices)]);
  for (const root of Object.values(r.participants ?? {})) {
    const files = (root as { files?: unknown })?.files;
    if (Array.isArray(files)) for (const f of files) if (typeof f === "string") out.add(f);
  }
  return out;
}

/** Blocks as (first, count) pairs of consecutive runs. */
export function blockRanges(blocks: Iterable<number>): number[] {
  const sorted = [...blocks].sort((a, b) => a - b);
  const out: number[] = [];
  for (const b of sorted) {
    if (out.length && out[out.length - 2] + out[out.length - 1] === b) out[out.length - 1]++;
    else out.push(b, 1);
  }
  return out;
}

/** Checks that a decoded value is a root record this version reads. */
export function checkPoolRecord(v: unknown): v is PoolRecord {
  const r = v as PoolRecord;
  return typeof r === "object" && r !== null && r.format === POOL_FORMAT && r.version === POOL_VERSION &&
    Number.isSafeInteger(r.blockSize) && Number.isSafeInteger(r.dataBlocks) && Array.isArray(r.segments) &&
    typeof r.devices === "object" &&
    (r.mapLevelBits === undefined || (Number.isSafeInteger(r.mapLevelBits) && r.mapLevelBits >= MIN_LEVEL_BITS && r.mapLevelBits <= LEVEL_BITS));
}

/** Bits per map tree level of the pool whose record is `r`. */
export function levelBitsOf(r: PoolRecord): number {
  return r.mapLevelBits ?? LEVEL_BITS;
}
