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
/** Version of the on-disk format. */
export const POOL_VERSION = 1;

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
