/**
 * The state one open pool shares between its parts: the public `Pool` (locking and the
 * device calls), the commit engine (commit.ts) and maintenance (maintenance.ts). Only
 * these files see it; everything outside the pool goes through `Pool`.
 *
 * @module
 */
import type { BlockIo } from "./blockio.ts";
import type { IoContext } from "./devio.ts";
import type { MapForest, Mapping } from "./maptree.ts";
import type { MetaStore } from "./metastore.ts";
import type { SpaceMap } from "./spacemap.ts";
import type { AutoextendEvent, DeviceId, NodeId, PoolSettings } from "./types.ts";

/** One thin device in memory. */
export interface DeviceState {
  id: DeviceId;
  size: number;
  mapping: Mapping;
  created: number;
  /** Its file as of the last commit, and the root it recorded. */
  file?: string;
  savedRoot: NodeId;
  /** Deleted with `deferred`: hidden, its blocks freed in the background. */
  deleting?: boolean;
  /** Changes with every write and discard (pool-wide unique), so read-ahead knows its data is current. */
  version: number;
}

/** An open pool's state. */
export interface PoolCore {
  readonly dir: string;
  readonly blockSize: number;
  /** Direct mode: the block device holding the data (`ctx.file` is its path); else the data file is used. */
  readonly dataDevice?: string;
  readonly meta: MetaStore;
  readonly space: SpaceMap;
  readonly forest: MapForest;
  readonly io: BlockIo;
  readonly ctx: IoContext;
  readonly devices: Map<DeviceId, DeviceState>;
  /** The metadata bytes the pool may use (the metadata device's size in dm-thin). */
  metadataSize: number;
  settings: PoolSettings;
  /** Which spaces are under their low water mark (lowwater.ts); stored with each commit. */
  readonly lowWater: { data: boolean; metadata: boolean };
  /** Something changed since the last commit. */
  changed: boolean;
  /** Tells the pool's user that the data file grew by itself. */
  autoextended(event: AutoextendEvent): void;
  /** A pool-wide unique version for a device that changed (read-ahead compares them). */
  nextVersion(): number;
}
