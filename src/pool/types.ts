/** Names for the numbers the pool deals in, and its public shapes. @module */

/** A thin device's id: 24 bits, as in dm-thin (0 .. 16,777,215). */
export type DeviceId = number;
/** A block of the pool's data file (physical). */
export type BlockNo = number;
/** A block of a thin device's address space (virtual). */
export type VBlock = number;
/** Id of a node of a device's mapping tree; never reused. */
export type NodeId = number;

/** The largest device id (24 bits). */
export const MAX_DEVICE_ID = 0xffffff;
/** dm-thin's smallest block size and the unit every block size is a multiple of. */
export const MIN_BLOCK_SIZE = 64 * 1024;
/** dm-thin's largest block size. */
export const MAX_BLOCK_SIZE = 1024 * 1024 * 1024;

/** Options of {@linkcode Pool.create}. */
export interface PoolCreateOptions {
  /**
   * Size of the sparse data file in bytes; the pool's capacity. With `dataDevice`, the
   * bytes of the device to use (default: all of it).
   */
  dataSize?: number;
  /**
   * Direct mode (the seed's direct-lvm, for production): the path of a block device that
   * holds the data instead of the sparse file `dir/data`. Its size is the pool's; it must
   * be unused (not mounted, no file system or other signature, no holders), and is
   * claimed exclusively while the pool is open.
   */
  dataDevice?: string;
  /** Block size in bytes: a multiple of 64 KiB from 64 KiB to 1 GiB. Default 64 KiB. */
  blockSize?: number;
  /** Bytes of metadata the pool may use before commits fail with ENOSPC. Default 2 GiB. */
  metadataSize?: number;
  /** Operator settings; see {@linkcode PoolSettings}. */
  settings?: Partial<PoolSettings>;
  /**
   * Bits per level of the block maps' radix trees: nodes of 2^bits slots. Default 10
   * (1,024 slots, what every real pool uses); fewer, from 2, give small devices deep
   * trees, for tests of the tree code.
   */
  mapLevelBits?: number;
}

/**
 * An operator's settings, after Docker's dm.* options and LVM's thin-pool profile. They
 * are stored with the pool and changed with {@linkcode Pool.configure}.
 */
export interface PoolSettings {
  /**
   * Percent of data space that must stay free for new layers (dm.min_free_space). The pool
   * records it; {@linkcode Pool.checkFreeSpace} enforces it for whoever creates devices.
   */
  minFreeSpacePercent: number;
  /** Percent of data use past which the data file grows (thin_pool_autoextend_threshold); 100 disables. */
  autoextendThreshold: number;
  /** Percent by which the data file grows each time (thin_pool_autoextend_percent); 0 disables. */
  autoextendPercent: number;
  /**
   * Percent of data space that, once free space falls under it, makes the pool emit a
   * `lowWater` event (dm-thin's low_water_mark); 0 disables. Independent of autoextend.
   */
  lowWaterMarkPercent: number;
  /** The same for metadata space: percent of `metadataSize` free under which `lowWater` fires; 0 disables. */
  metadataLowWaterMarkPercent: number;
}

/**
 * Defaults of {@linkcode PoolSettings}: Docker's 10% minimum free space; autoextend off
 * (an embedded pool does not grow behind its owner's back; the CLI's `init` turns it on
 * with the seed's profile values, 80% and 20%); low water marks at 20% free, the
 * counterpart of the profile's 80% threshold, warning before the minimum free space bites.
 */
export const DEFAULT_SETTINGS: PoolSettings = {
  minFreeSpacePercent: 10, autoextendThreshold: 100, autoextendPercent: 20, lowWaterMarkPercent: 20, metadataLowWaterMarkPercent: 20,
};

/** Options of {@linkcode Pool.open}. */
export interface PoolOpenOptions {
  /** Worker threads for block I/O (shared by every open pool in the process). Default: 2 or the core count. */
  ioThreads?: number;
  /**
   * Finish deferred deletions left pending by an earlier process, in the background
   * (default true). A reader that only reports, such as `thinstack info`, passes false:
   * the deletions stay pending and counted until a process that changes the pool opens it.
   */
  resumeDeletions?: boolean;
  /**
   * Bytes read ahead at most across the pool's devices, for sequential readers (default
   * 32 MiB; 0 turns read-ahead off). With the layer store's lookup caches, this bounds
   * what the pool caches; the block maps themselves are its metadata, held whole.
   */
  readahead?: number;
}

/** What {@linkcode Pool.status} reports, after dm-thin's status line. */
export interface PoolStatus {
  /** Id of the last commit: 0 for a new pool, one more with each commit. */
  transactionId: number;
  /** Bytes of one data block. */
  blockSize: number;
  /** Data blocks some device maps, and blocks in the data file. */
  dataBlocks: { used: number; total: number };
  /** Bytes of the metadata files the last commit names, and the most the pool may use. */
  metadataBytes: { used: number; total: number };
  /** Blocks freed in the open transaction; they become allocatable at the next commit. */
  pendingFreeBlocks: number;
  /** Live devices (deferred deletions not counted). */
  devices: number;
  /** Devices deleted with `deferred` whose blocks are still being freed. */
  deferredDeletes: number;
  /**
   * Deferred deletions whose background work failed (here or in an earlier process):
   * they stay pending and are retried at the next open; an entry goes once a commit
   * records its device as gone.
   */
  deferredDeleteErrors: DeferredDeleteError[];
  /** The operator settings in force. */
  settings: PoolSettings;
}

/** A deferred deletion whose background work failed. */
export interface DeferredDeleteError {
  /** The device being deleted. */
  device: DeviceId;
  /** The error's code (EIO, ENOSPC, ...), when it had one. */
  code?: string;
  /** The error's message. */
  message: string;
  /** When it failed (ISO 8601). */
  time: string;
}

/** Reported when the data file grew by itself. */
export interface AutoextendEvent {
  /** Data blocks before. */
  fromBlocks: number;
  /** Data blocks after. */
  toBlocks: number;
  /** Data blocks in use: past the autoextend threshold of `fromBlocks`. */
  usedBlocks: number;
}

/**
 * Free data or metadata space crossed its low water mark ({@linkcode PoolSettings}'s
 * `lowWaterMarkPercent`, `metadataLowWaterMarkPercent`).
 */
export interface LowWaterEvent {
  /** Which space: data (counted in blocks) or metadata (in bytes). */
  space: "data" | "metadata";
  /** "below": free space fell under the mark; "above": it is back at or over it (the mark is armed again). */
  crossed: "below" | "above";
  /** The mark, in percent of the total that is free. */
  markPercent: number;
  /** Free space now, in percent of the total (rounded down to 0.01). */
  freePercent: number;
  /** Free, used and total space, in `unit`s. */
  free: number;
  /** Used space. */
  used: number;
  /** Total space. */
  total: number;
  /** What the counts count. */
  unit: "blocks" | "bytes";
}

/** A device as {@linkcode Pool.devices} lists it. */
export interface DeviceInfo {
  /** The device's id. */
  id: DeviceId;
  /** Virtual size in bytes. */
  size: number;
}

/** Mapping counts of one device, as thin_ls shows them. */
export interface DeviceUsage {
  /** The device's id. */
  id: DeviceId;
  /** Blocks the device maps. */
  mapped: number;
  /** Mapped blocks no other device sees. */
  exclusive: number;
  /** Mapped blocks another device sees too. */
  shared: number;
}

/** Bytes read into memory shared with the I/O workers, held until released (see `ThinDevice.lease`). */
export interface ReadLease {
  /** The bytes: a view of the shared memory, valid until {@linkcode ReadLease.release}. */
  readonly bytes: Uint8Array;
  /** Gives the memory back for later reads; the bytes must not be used afterwards. Idempotent. */
  release(): void;
}

/** A thin device: a virtual block device whose blocks are taken from the pool when written. */
export interface ThinDevice {
  /** The device's id. */
  readonly id: DeviceId;
  /** Virtual size in bytes; a range past it fails with EINVAL. */
  readonly size: number;
  /** Reads `length` bytes at `offset`; never-written ranges read as zeros. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Reads `target.byteLength` bytes at `offset` into `target`, as `read` does but
   * allocating nothing: for a reader that reuses its buffers.
   */
  readInto(offset: number, target: Uint8Array): Promise<void>;
  /**
   * Gives back an array that `read` returned, once nothing will look at it again (a
   * server wrote it to a socket or a kernel device, say): its buffer may then be filled
   * by a later read. Saves a streaming reader the allocation, and on Node the full
   * collections fresh external memory costs. Arrays of other origins are ignored.
   */
  recycle(bytes: Uint8Array): void;
  /**
   * Reads `length` bytes at `offset` (at most 1 MiB) into memory shared with the I/O
   * workers, for a caller that passes them straight on and releases them (a server
   * writing them to a kernel device): no buffer moves between threads, so a stream of
   * reads costs the runtime no allocation and no garbage collection. Undefined (nothing
   * read) when the range is larger or all of that memory is held: read instead.
   */
  lease(offset: number, length: number): Promise<ReadLease | undefined>;
  /** Writes `bytes` at `offset`, allocating or copying blocks as needed. */
  write(offset: number, bytes: Uint8Array): Promise<void>;
  /** Makes the range read as zeros; whole blocks go back to the pool when nothing else sees them. */
  discard(offset: number, length: number): Promise<void>;
}

/**
 * Something that commits its own metadata with the pool's transactions (the layer
 * store does). At each commit the pool asks it for its new files and its root record;
 * all of it is switched in with the pool's own metadata by one atomic rename.
 */
export interface CommitParticipant {
  /** Writes new files through `tx` and returns the root record to store (small, CBOR-encodable). */
  prepareCommit(tx: MetadataTransaction): Promise<unknown>;
  /** Names of metadata files this participant still needs after the commit. */
  liveFiles(): Iterable<string>;
  /**
   * Asked when a commit the participant did not start begins (an application's
   * `pool.commit()`, one that reclaims blocks, one after a deferred deletion). Returns a
   * release when its state may be committed as it is now, and keeps it so — no operation
   * of its own starts — until the pool calls the release after the commit; undefined while
   * its state is half-changed (in the middle of one of its operations), since the commit
   * would pair new block maps with half-changed tables. Deciding and holding are one step:
   * an operation cannot start in between. Without it, the participant is always ready.
   */
  holdForCommit?(): (() => void) | undefined;
  /** The commit that called `prepareCommit` is durable. */
  committed?(): void;
  /** The commit failed: what `prepareCommit` took stays pending. */
  aborted?(): void;
}

/** Writes new, immutable metadata files during a commit. */
export interface MetadataTransaction {
  /** Id the commit will have once durable (the pool's current one plus one). */
  readonly transactionId: number;
  /**
   * Writes `value` as CBOR to a new file whose name starts with `prefix`; returns the file
   * name. The file is durable once the commit is: all of a commit's files are synced
   * together before the root record switches.
   */
  writeCbor(prefix: string, value: unknown): Promise<string>;
}
