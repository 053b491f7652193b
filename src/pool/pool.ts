/**
 * The thin pool: a sparse data file cut into blocks, thin devices whose blocks come
 * from it on first write, O(1) snapshots, and atomic CBOR metadata.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { hasCode, storeError } from "../common/errors.ts";
import { RwLock } from "../common/lock.ts";
import { lockPool, openLock } from "../common/pidlock.ts";
import { BlockIo } from "./blockio.ts";
import { blockDeviceSize, checkNewDataDevice, claimDevice, noMedia } from "./blockdev.ts";
import { CommitEngine } from "./commit.ts";
import type { DeviceState, PoolCore } from "./core.ts";
import { type DeltaOptions, deltaMaps, type DeltaRange } from "./delta.ts";
import { checkRange, discardRange, leaseRange, writeRange } from "./devio.ts";
import { type PoolEventMap, type PoolEventName, PoolEvents } from "./events.ts";
import { Inflight } from "./inflight.ts";
import { LowWater } from "./lowwater.ts";
import { autoextend, checkBlocks, checkFreeSpace, checkSettings, freeBlocks, resize, trim, type TrimResult } from "./maintenance.ts";
import { Readahead } from "./readahead.ts";
import { DeleteErrors } from "./deleteerrors.ts";
import * as fileops from "./fileops.ts";
import { LEVEL_BITS, MapForest, MIN_LEVEL_BITS } from "./maptree.ts";
import { MetaStore, ROOT_FILE } from "./metastore.ts";
import { checkPoolRecord, levelBitsOf, POOL_FORMAT, POOL_VERSION, type PoolRecord } from "./persist.ts";
import { SpaceMap } from "./spacemap.ts";
import {
  type AutoextendEvent, type BlockNo, type DeferredDeleteError, type CommitParticipant, DEFAULT_SETTINGS, type PoolSettings, type DeviceId, type DeviceInfo, type DeviceUsage, MAX_BLOCK_SIZE,
  MAX_DEVICE_ID, MIN_BLOCK_SIZE, type PoolCreateOptions, type PoolOpenOptions, type PoolStatus, type ThinDevice, type VBlock,
} from "./types.ts";

export { MAX_DATA_BLOCKS, type TrimResult } from "./maintenance.ts";

const DEFAULT_BLOCK_SIZE = 64 * 1024;
const DEFAULT_METADATA_SIZE = 2 * 1024 ** 3;
/** Name of the data file inside a pool directory. */
export const DATA_FILE = "data";
/** Name of the metadata directory inside a pool directory. */
export const METADATA_DIR = "metadata";

/**
 * A thin pool over a sparse data file.
 *
 * @example
 * ```ts
 * import { Pool } from "thinstack";
 * const pool = await Pool.create("/tmp/pool", { dataSize: 1 << 30 });
 * await pool.createThin(1, 1 << 30);
 * await pool.device(1).write(0, new TextEncoder().encode("hello"));
 * await pool.createSnapshot(2, 1);                       // O(1): shares every block
 * await pool.device(2).write(0, new TextEncoder().encode("J"));  // copies one block
 * console.log(new TextDecoder().decode(await pool.device(1).read(0, 5))); // hello
 * await pool.commit();
 * await pool.close();
 * ```
 */
export class Pool {
  /** The pool's directory, as given to `create` or `open`. */
  readonly dir: string;
  /** Bytes of one data block, fixed when the pool was created. */
  readonly blockSize: number;
  readonly #core: PoolCore;
  readonly #engine: CommitEngine;
  readonly #lock = new RwLock();
  /** Called when the data file grew by itself (autoextend); `on("autoextend", fn)` does the same. */
  onAutoextend: (event: AutoextendEvent) => void = () => {};
  /**
   * Called when a deferred deletion failed in the background (nobody awaits that work):
   * it stays pending, is listed in `status().deferredDeleteErrors` and is retried at the
   * next open. The command line prints it as a warning.
   */
  onDeferredDeleteError: (error: DeferredDeleteError) => void = () => {};
  readonly #events: PoolEvents;
  readonly #lowWater: LowWater;
  #closed = false;
  readonly #background = new Set<Promise<void>>();
  readonly #readahead: Readahead;
  #holdDeletions = false;
  readonly #deleteErrors: DeleteErrors;
  readonly #unlock: () => Promise<void>;

  private constructor(dir: string, meta: MetaStore, record: PoolRecord, io: BlockIo, unlock: () => Promise<void>, readahead?: number) {
    this.dir = dir;
    this.#unlock = unlock;
    this.blockSize = record.blockSize;
    this.#events = new PoolEvents(dir);
    const space = new SpaceMap(record.dataBlocks);
    const forest = new MapForest(space, record.nextNodeId, levelBitsOf(record));
    const file = record.dataDevice ?? path.join(dir, DATA_FILE);
    let version = 0;
    const core: PoolCore = {
      dir, blockSize: record.blockSize, dataDevice: record.dataDevice, meta, space, forest, io, devices: new Map(),
      metadataSize: record.metadataSize, settings: { ...DEFAULT_SETTINGS, ...record.settings }, changed: false,
      lowWater: { data: record.lowWater?.data === true, metadata: record.lowWater?.metadata === true },
      autoextended: (event) => {
        this.#events.emit("autoextend", event);
        this.onAutoextend(event);
      },
      nextVersion: () => ++version,
      ctx: {
        io, forest, space, blockSize: record.blockSize, file, key: `${file}#${randomUUID()}`, inflight: new Inflight(record.blockSize, file),
        reclaim: async () => {
          if (space.pending.size === 0) return false;
          return await this.#engine.commitIfAllowed();
        },
      },
    };
    this.#core = core;
    this.#lowWater = new LowWater(this.#events, core.lowWater, () => {
      core.changed = true;
    });
    this.#engine = new CommitEngine(core, record);
    this.#readahead = new Readahead(core.ctx, readahead);
    this.#deleteErrors = new DeleteErrors(dir);
  }

  /**
   * Creates a pool in `dir`: a sparse data file of `dataSize` bytes (nothing written)
   * and its metadata. EEXIST if `dir` already holds a pool; EINVAL for a block size that
   * is not a multiple of 64 KiB from 64 KiB to 1 GiB, or a data size under one block.
   *
   * With `dataDevice` (direct mode) the data lives on that block device, whose size is
   * the pool's (or `dataSize` bytes of it); nothing is written to it. ENOTBLK for a path
   * that is not a block device; EBUSY for one that is mounted, claimed, held by another
   * device, partitioned, or holds a signature (a file system, LVM, a partition table).
   */
  static async create(dir: string, options: PoolCreateOptions & PoolOpenOptions): Promise<Pool> {
    const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!Number.isSafeInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || blockSize % MIN_BLOCK_SIZE !== 0) {
      throw storeError("EINVAL", "create", dir, `block size '${blockSize}' must be a multiple of 64 KiB from 64 KiB to 1 GiB`);
    }
    const dataDevice = options.dataDevice === undefined ? undefined : path.resolve(options.dataDevice);
    const deviceSize = dataDevice === undefined ? undefined : await checkNewDataDevice(dataDevice);
    const dataSize = options.dataSize ?? deviceSize;
    if (!Number.isSafeInteger(dataSize) || dataSize! < blockSize) {
      throw storeError("EINVAL", "create", dir, `data size '${dataSize}' must be a whole number of bytes of at least one block (${blockSize})`);
    }
    if (deviceSize !== undefined && dataSize! > deviceSize) {
      throw storeError("EINVAL", "create", dataDevice, `data size '${dataSize}' is more than the device's ${deviceSize} bytes; leave it out to use the whole device`);
    }
    const metadataSize = options.metadataSize ?? DEFAULT_METADATA_SIZE;
    if (!Number.isSafeInteger(metadataSize) || metadataSize <= 0) {
      throw storeError("EINVAL", "create", dir, `metadata size '${metadataSize}' must be a positive whole number of bytes`);
    }
    const dataBlocks = Math.floor(dataSize! / blockSize);
    checkBlocks(dataBlocks, blockSize, "create", dir);
    const settings = checkSettings({ ...DEFAULT_SETTINGS, ...options.settings }, dir);
    const levelBits = options.mapLevelBits ?? LEVEL_BITS;
    if (!Number.isSafeInteger(levelBits) || levelBits < MIN_LEVEL_BITS || levelBits > LEVEL_BITS) {
      throw storeError("EINVAL", "create", dir, `map level bits '${levelBits}' must be a whole number from ${MIN_LEVEL_BITS} to ${LEVEL_BITS}`);
    }
    const metaDir = path.join(dir, METADATA_DIR);
    const made = await fileops.makeDir(metaDir);
    // Held from the check to the open: two creators would both find no pool.
    const unlock = await lockPool(dir);
    try {
      const meta = new MetaStore(metaDir);
      if (await meta.readRoot() !== undefined) {
        throw storeError("EEXIST", "create", dir, "a pool already exists here; open it with Pool.open");
      }
      if (dataDevice === undefined) {
        const data = path.join(dir, DATA_FILE);
        let fh: fileops.WritableFile;
        try {
          // Never "w": a data file without a root record may be a pool that lost its root, all its data still there.
          fh = await fileops.openFile(data, "wx");
        } catch (e) {
          if (!hasCode(e, "EEXIST")) throw e;
          throw storeError("EEXIST", "create", data, `a data file is here but no root record ('${path.join(metaDir, ROOT_FILE)}'): it may be a pool that lost its metadata; ` +
            "recover it (restore a dump with 'thinstack restore', then 'thinstack repair'), or remove the data file to create a new pool here");
        }
        try {
          await fh.truncate(dataBlocks * blockSize); // sparse: nothing is written
          await fh.sync(); // its size, before a root record counts on it
        } finally {
          await fh.close();
        }
      }
      // The names of the data file and the metadata directory (and of directories made above
      // them) are on disk only once their directories are synced: before the root names them.
      await fileops.syncCreated(dir, made);
      const record: PoolRecord = {
        format: POOL_FORMAT, version: POOL_VERSION, transactionId: 0, blockSize, dataBlocks, metadataSize,
        nextNodeId: 1, devices: {}, segments: [], participants: {}, settings,
        ...(dataDevice === undefined ? {} : { dataDevice }),
        ...(levelBits !== LEVEL_BITS ? { mapLevelBits: levelBits } : {}),
      };
      await meta.switchRoot(record);
      return await Pool.open(dir, options);
    } finally {
      await unlock();
    }
  }

  /**
   * Opens the pool in `dir` at its last commit. ENOENT if there is none; EBUSY while another
   * process has it open (a lock file holding its pid, taken over once that process is gone),
   * and EBUSY when this process has it open already (one instance per pool: two would remove
   * each other's files).
   */
  static async open(dir: string, options: PoolOpenOptions = {}): Promise<Pool> {
    if (options.readahead !== undefined && (!Number.isSafeInteger(options.readahead) || options.readahead < 0)) {
      throw storeError("EINVAL", "open", dir, `read-ahead '${options.readahead}' must be a whole number of bytes, 0 or more`);
    }
    const meta = new MetaStore(path.join(dir, METADATA_DIR));
    // A first look, so a directory without a pool gets ENOENT (and no lock file).
    await readRecord(meta, dir);
    // Held until close: another open (in this process or another) would remove this one's
    // commit files. The record is read again under it: the last holder may have committed.
    const unlockDir = await openLock(dir);
    let record: PoolRecord;
    // Direct mode: the device is claimed for as long as the pool is open (mounts, mkfs and
    // other pools on it then fail with EBUSY).
    let release = () => {};
    try {
      record = await readRecord(meta, dir);
      if (record.dataDevice !== undefined) release = claimDevice(record.dataDevice);
    } catch (e) {
      await unlockDir();
      throw e;
    }
    const unlock = async () => {
      release();
      await unlockDir();
    };
    const io = BlockIo.acquire(options.ioThreads);
    const pool = new Pool(dir, meta, record, io, unlock, options.readahead);
    try {
      await pool.#load(record);
      const deleting = new Set([...pool.#core.devices.values()].filter((d) => d.deleting).map((d) => d.id));
      await pool.#deleteErrors.load(deleting, record.transactionId);
      // A deferred deletion a crash (or a close that did not settle) left: finish it now.
      if (options.resumeDeletions !== false) for (const dev of pool.#core.devices.values()) if (dev.deleting) pool.#finishDeletion(dev.id);
    } catch (e) {
      await BlockIo.release();
      await unlock();
      throw e;
    }
    return pool;
  }

  async #load(record: PoolRecord): Promise<void> {
    const file = this.#core.ctx.file;
    if (record.dataDevice !== undefined) {
      const size = await blockDeviceSize(file);
      if (size === 0) throw noMedia(file, "open");
      if (size < record.dataBlocks * record.blockSize) {
        throw storeError("EINVAL", "open", file, `the data device has ${size} bytes, the pool needs ${record.dataBlocks * record.blockSize}; grow it back (lvextend, or the loop device's file and 'losetup -c')`);
      }
      return await this.#engine.load(record);
    }
    const dataFile = await fs.stat(file).catch(() => undefined);
    if (!dataFile) throw storeError("ENOENT", "open", file, "the pool's data file is missing");
    if (dataFile.size < record.dataBlocks * record.blockSize) {
      throw storeError("EINVAL", "open", file, `the data file has ${dataFile.size} bytes, the pool needs ${record.dataBlocks * record.blockSize}`);
    }
    await this.#engine.load(record);
  }

  /** Commits the open transaction (if anything changed) and closes the pool. A second close does nothing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.settle();
    let failure: unknown;
    await this.#lock.write(async () => {
      if (this.#closed) return;
      await this.#readahead.clear();
      try {
        // A write that failed in the background leaves nothing fit to commit: the pool
        // reopens at its last commit, and close reports the failure.
        if (this.#core.changed) {
          await this.#engine.commit();
          // A mark this commit crossed is stored too, so the next open does not warn again.
          this.#watch();
          if (this.#core.changed) await this.#engine.commit();
        } else await this.#core.ctx.inflight.drain();
      } catch (e) {
        failure = e;
        await this.#core.ctx.inflight.drain().catch(() => {});
      }
      this.#closed = true;
    });
    this.#deferredDeleteErrors(); // drops what the last commit resolved
    await this.#deleteErrors.save();
    await this.#events.flush();
    await BlockIo.release();
    await this.#unlock();
    if (failure) throw failure;
  }

  /** Creates an empty thin device of `size` bytes. EEXIST if `id` is live. */
  createThin(id: DeviceId, size: number): Promise<void> {
    return this.#mutate("create_thin", () => {
      this.#checkNewId(id, "create_thin");
      if (!Number.isSafeInteger(size) || size <= 0) {
        throw storeError("EINVAL", "create_thin", `device ${id}`, `size '${size}' must be a positive whole number of bytes`);
      }
      const height = this.#core.forest.heightFor(Math.ceil(size / this.blockSize));
      this.#core.devices.set(id, { id, size, mapping: { root: null, height }, created: Date.now(), savedRoot: 0, version: this.#core.nextVersion() });
    });
  }

  /**
   * Creates device `id` as a snapshot of `originId`: it shares the origin's whole
   * mapping (one reference count more), so its cost does not depend on the origin's
   * size. Both stay writable; the first write to a shared block on either side copies
   * that block only.
   */
  createSnapshot(id: DeviceId, originId: DeviceId): Promise<void> {
    return this.#mutate("create_snap", () => {
      const origin = this.#device(originId, "create_snap");
      this.#checkNewId(id, "create_snap");
      this.#core.devices.set(id, {
        id, size: origin.size, mapping: this.#core.forest.share(origin.mapping), created: Date.now(), savedRoot: 0, version: this.#core.nextVersion(),
      });
    });
  }

  /**
   * Deletes a device: every block no other device sees goes back to free space at once.
   *
   * With `deferred` (Docker's dm.use_deferred_deletion) the device disappears at once, the
   * deletion is committed as pending (at once, unless an attached participant is in the
   * middle of an operation: then with its next commit), and its blocks are freed in the
   * background; a crash in between finishes the work at the next open. {@linkcode Pool.settle}
   * waits for it.
   */
  async deleteDevice(id: DeviceId, options: { deferred?: boolean } = {}): Promise<void> {
    if (!options.deferred) {
      return this.#mutate("delete", () => {
        this.#drop(this.#device(id, "delete"));
      });
    }
    await this.#mutate("delete", async () => {
      this.#device(id, "delete").deleting = true;
      // Recorded at once where the participants allow a commit; else with their next one
      // (the layer store, deleting a layer's device, has recorded it in its own root first).
      await this.#engine.commitIfAllowed();
    });
    this.#finishDeletion(id);
  }

  #drop(dev: DeviceState): void {
    this.#core.forest.drop(dev.mapping);
    this.#core.devices.delete(dev.id);
    this.#readahead.forget(dev.id);
  }

  #finishDeletion(id: DeviceId): void {
    const work = this.#mutate("delete", async () => {
      const dev = this.#core.devices.get(id);
      // Held (see holdDeletions): it stays pending, recorded, for the next open.
      if (!dev?.deleting || this.#holdDeletions) return;
      this.#drop(dev);
      // A participant in the middle of an operation: the freeing commits with its next commit
      // (a crash before that finishes the deletion again at open).
      await this.#engine.commitIfAllowed();
    });
    // Nobody awaits this work: its failure is reported, listed in status and kept; the
    // deletion stays recorded as pending, for the next open.
    const reported = work.catch(async (e) => {
      const error = await this.#deleteErrors.record(id, e, this.#engine.transactionId);
      try {
        this.onDeferredDeleteError(error);
      } catch {
        /* a listener's failure is not the pool's */
      }
    });
    this.#background.add(reported);
    reported.finally(() => this.#background.delete(reported));
  }

  #deferredDeleteErrors(): DeferredDeleteError[] {
    return this.#deleteErrors.list((id) => this.#core.devices.has(id), this.#engine.transactionId);
  }

  /**
   * Leaves deferred deletions that have not started to the next open, where they finish
   * in the background; meanwhile they stay recorded and counted in `status()`. For a
   * short-lived process such as the command line's `rm`, which should return at once.
   */
  holdDeletions(): void {
    this.#holdDeletions = true;
  }

  /** Waits for deferred deletions to finish. */
  async settle(): Promise<void> {
    while (this.#background.size) await Promise.allSettled([...this.#background]);
  }

  /**
   * Waits until the I/O workers have finished every task queued so far: writes that
   * returned before reaching the data file (write-behind) and read-ahead fetches. Fails
   * as the next operation would if a queued write failed. Nothing is made durable: that
   * is {@linkcode Pool.commit}.
   */
  async drain(): Promise<void> {
    this.#open("drain");
    await this.#core.ctx.inflight.drain();
  }

  /**
   * A handle on device `id` for reads, writes and discards. ENOENT if there is no such
   * device; the handle's operations fail with ENOENT once the device is deleted.
   */
  device(id: DeviceId): ThinDevice {
    const dev = this.#device(id, "open");
    const core = this.#core;
    return {
      id,
      size: dev.size,
      read: (offset, length) =>
        this.#lock.read(() => {
          core.ctx.inflight.check();
          const d = this.#device(id, "read");
          checkRange(id, d.size, offset, length, "read");
          return this.#readahead.read(d, offset, length);
        }),
      readInto: (offset, target) =>
        this.#lock.read(() => {
          core.ctx.inflight.check();
          const d = this.#device(id, "read");
          checkRange(id, d.size, offset, target.byteLength, "read");
          return this.#readahead.readInto(d, offset, target);
        }),
      recycle: (bytes) => this.#readahead.recycle(bytes),
      lease: (offset, length) =>
        this.#lock.read(() => {
          core.ctx.inflight.check();
          const d = this.#device(id, "read");
          checkRange(id, d.size, offset, length, "read");
          return leaseRange(core.ctx, d.mapping, offset, length);
        }),
      write: (offset, bytes) =>
        this.#mutate("write", async () => {
          const d = this.#device(id, "write");
          checkRange(id, d.size, offset, bytes.byteLength, "write");
          d.version = core.nextVersion();
          await writeRange(core.ctx, id, d.mapping, offset, bytes);
          // Before autoextend, so the mark warns even when the pool then grows past it.
          this.#watch();
          await autoextend(core);
        }),
      discard: (offset, length) =>
        this.#mutate("discard", () => {
          const d = this.#device(id, "discard");
          checkRange(id, d.size, offset, length, "discard");
          d.version = core.nextVersion();
          return discardRange(core.ctx, id, d.mapping, offset, length);
        }),
    };
  }

  /** The live devices, by id. */
  devices(): DeviceInfo[] {
    this.#open("devices");
    return [...this.#core.devices.values()].filter((d) => !d.deleting).map((d) => ({ id: d.id, size: d.size })).sort((a, b) => a.id - b.id);
  }

  /** The pool block behind virtual block `vb` of device `id`, or undefined where unmapped. */
  lookup(id: DeviceId, vb: VBlock): BlockNo | undefined {
    const dev = this.#device(id, "lookup");
    const blocks = Math.ceil(dev.size / this.blockSize);
    if (!Number.isSafeInteger(vb) || vb < 0 || vb >= blocks) {
      throw storeError("EINVAL", "lookup", `device ${id}`, `virtual block '${vb}' is outside the device's ${blocks} blocks`);
    }
    const b = this.#core.forest.lookup(dev.mapping, vb);
    return b < 0 ? undefined : b;
  }

  /**
   * thin_delta: the runs of virtual blocks in which device `left` and device `right`
   * differ (`different`, `left_only`, `right_only`), and with `same` the runs they
   * share, in block order. Read off the block maps, without reading data; map nodes the
   * two share (a snapshot and its origin) are skipped whole, so the cost is what differs.
   * ENOENT for a device that does not exist.
   *
   * @example
   * ```ts
   * import { Pool } from "thinstack";
   * const pool = await Pool.create("/tmp/pool-delta", { dataSize: 1 << 24 });
   * await pool.createThin(1, 1 << 24);
   * await pool.device(1).write(0, new Uint8Array(4 * 65536).fill(1));
   * await pool.createSnapshot(2, 1);
   * await pool.device(2).write(65536, new Uint8Array(10)); // copies block 1
   * console.log(await pool.delta(1, 2)); // [{ kind: "different", begin: 1, length: 1 }]
   * await pool.close();
   * ```
   */
  async delta(left: DeviceId, right: DeviceId, options: DeltaOptions = {}): Promise<DeltaRange[]> {
    return await this.#lock.read(() => deltaMaps(this.#device(left, "delta").mapping, this.#device(right, "delta").mapping, options));
  }

  /** Mapped, exclusive and shared block counts of a device (thin_ls). */
  usage(id: DeviceId): DeviceUsage {
    const dev = this.#device(id, "usage");
    const { forest, space } = this.#core;
    let mapped = 0;
    let exclusive = 0;
    for (const [vb, block] of forest.entries(dev.mapping)) {
      mapped++;
      if (forest.resolve(dev.mapping, vb).exclusive && space.refs[block] === 1) exclusive++;
    }
    return { id, mapped, exclusive, shared: mapped - exclusive };
  }

  /** The pool's counters, after dm-thin's status line. */
  status(): PoolStatus {
    this.#open("status");
    const { space, settings, devices } = this.#core;
    return {
      transactionId: this.#engine.transactionId,
      blockSize: this.blockSize,
      dataBlocks: { used: space.used, total: space.total },
      metadataBytes: { used: this.#engine.metadataUsed, total: this.#core.metadataSize },
      settings: { ...settings },
      pendingFreeBlocks: space.pending.size,
      devices: this.devices().length,
      deferredDeletes: [...devices.values()].filter((d) => d.deleting).length,
      deferredDeleteErrors: this.#deferredDeleteErrors(),
    };
  }

  /**
   * Makes every change so far durable and atomic; the transaction id grows by one. EBUSY
   * while an attached participant (the layer store) is in the middle of an operation.
   */
  commit(): Promise<void> {
    this.#open("commit");
    return this.#lock.write(async () => {
      await this.#engine.commitOrRefuse("commit");
      this.#watch();
    });
  }

  /**
   * Grows the data file to `dataSize` bytes, or shrinks it when every block past the new
   * end is free. Shrinking below a block in use is refused with ENOSPC; a shrink commits
   * the open transaction before it cuts the file.
   *
   * In direct mode the device is never cut or grown: the pool grows up to the device's
   * size (after an lvextend, or `losetup -c` of a grown loop file), or uses less of it;
   * without `dataSize` it takes the whole device as it is now.
   */
  resize(dataSize?: number): Promise<void> {
    return this.#mutate("resize", () => resize(this.#core, this.#engine, dataSize));
  }

  /**
   * Gives the data file's free blocks back to the host by punching holes in it, so its
   * allocated size (`du`) falls after devices are deleted. Blocks the last commit still
   * references are left alone until the next commit.
   */
  trim(): Promise<TrimResult> {
    return this.#lock.write(() => {
      this.#open("trim");
      return trim(this.#core);
    });
  }

  /**
   * Calls `fn` for each `name` event until the returned function is called: `lowWater`
   * when free data or metadata space crosses its low water mark (see
   * {@linkcode PoolSettings}), `autoextend` when the pool grew by itself. Every event is
   * also appended to `dir/events.log` (JSON lines, rotating), which
   * `thinstack events --follow` reads from another process.
   *
   * @example
   * ```ts
   * import { Pool } from "thinstack";
   * const pool = await Pool.create("/tmp/pool-events", { dataSize: 1 << 20, settings: { lowWaterMarkPercent: 50 } });
   * const stop = pool.on("lowWater", (e) => console.log(e.space, e.crossed, `${e.freePercent}% free`));
   * await pool.createThin(1, 1 << 20);
   * await pool.device(1).write(0, new Uint8Array(10 * 65536)); // data below 50% free
   * stop();
   * await pool.close();
   * ```
   */
  on<K extends PoolEventName>(name: K, fn: (event: PoolEventMap[K]) => void): () => void {
    return this.#events.on(name, fn);
  }

  /** Changes operator settings; they are stored with the next commit. */
  configure(settings: Partial<PoolSettings>): Promise<void> {
    return this.#mutate("configure", () => {
      this.#core.settings = checkSettings({ ...this.#core.settings, ...settings }, this.dir);
    });
  }

  /**
   * Fails with ENOSPC when free data space is below the minimum free space setting
   * (Docker's dm.min_free_space): whoever creates layers calls it first.
   */
  checkFreeSpace(syscall = "create"): void {
    this.#open(syscall);
    checkFreeSpace(this.#core, syscall);
  }

  /** Registers a participant whose metadata commits with the pool's (the layer store). */
  attach(name: string, participant: CommitParticipant): void {
    this.#engine.attach(name, participant);
  }

  /** The root record a participant stored at the last commit. */
  participantRoot(name: string): unknown | undefined {
    return this.#engine.participantRoot(name);
  }

  /** Reads a metadata file written through a commit's {@linkcode MetadataTransaction}. */
  readCbor(name: string): Promise<unknown> {
    return this.#core.meta.read(name);
  }

  /** Path of the data file, or of the data device in direct mode. */
  get dataFile(): string {
    return this.#core.ctx.file;
  }

  /** Direct mode: the block device holding the data; undefined for a pool over a data file. */
  get dataDevice(): string | undefined {
    return this.#core.dataDevice;
  }

  /** The blocks no device sees and no commit still references: free for reuse (for trim). */
  freeBlocks(): BlockNo[] {
    return freeBlocks(this.#core);
  }

  async #mutate<T>(syscall: string, fn: () => T | Promise<T>): Promise<T> {
    this.#open(syscall);
    return await this.#lock.write(async () => {
      this.#open(syscall);
      this.#core.ctx.inflight.check();
      this.#core.changed = true;
      try {
        return await fn();
      } finally {
        this.#watch();
      }
    });
  }

  /** Checks the low water marks against the space in use now (lowwater.ts). */
  #watch(): void {
    const { space, metadataSize, settings } = this.#core;
    this.#lowWater.check({ data: { used: space.used, total: space.total }, metadata: { used: this.#engine.metadataUsed, total: metadataSize } }, settings);
  }

  #checkNewId(id: DeviceId, syscall: string): void {
    if (!Number.isInteger(id) || id < 0 || id > MAX_DEVICE_ID) {
      throw storeError("EINVAL", syscall, `device ${id}`, `device id '${id}' must be a whole number from 0 to ${MAX_DEVICE_ID} (24 bits)`);
    }
    const dev = this.#core.devices.get(id);
    if (dev?.deleting) throw storeError("EBUSY", syscall, `device ${id}`, "this id's device is still being deleted in the background; retry later");
    if (dev) throw storeError("EEXIST", syscall, `device ${id}`, "a device with this id exists; pick another id or delete it first");
  }

  #device(id: DeviceId, syscall: string): DeviceState {
    this.#open(syscall);
    const dev = this.#core.devices.get(id);
    if (!dev || dev.deleting) throw storeError("ENOENT", syscall, `device ${id}`, "no such thin device in this pool");
    return dev;
  }

  #open(syscall: string): void {
    if (this.#closed) throw storeError("EBADF", syscall, this.dir, "the pool is closed; open it again with Pool.open");
  }
}

/** The root record of the pool whose metadata is `meta`: ENOENT without one, EINVAL for a foreign one. */
async function readRecord(meta: MetaStore, dir: string): Promise<PoolRecord> {
  let record: unknown;
  try {
    record = await meta.readRoot();
  } catch (e) {
    if (hasCode(e, "ENOTDIR")) record = undefined;
    else throw e;
  }
  if (record === undefined) throw storeError("ENOENT", "open", dir, "no pool here; create one with Pool.create");
  if (!checkPoolRecord(record)) throw storeError("EINVAL", "open", dir, "the pool record is not a thinstack pool of a version this build reads");
  return record;
}
