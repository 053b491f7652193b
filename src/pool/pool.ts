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
import { lockPool } from "../common/pidlock.ts";
import { BlockIo } from "./blockio.ts";
import { checkRange, discardRange, type IoContext, writeRange } from "./devio.ts";
import { Inflight } from "./inflight.ts";
import { Readahead } from "./readahead.ts";
import { heightFor, MapForest, MapNode, type Mapping } from "./maptree.ts";
import { MetaStore } from "./metastore.ts";
import { checkPoolRecord, type DeviceRecord, POOL_FORMAT, POOL_VERSION, type PoolRecord, type SegmentRecord, storeNode } from "./persist.ts";
import { type ByteRange, punchMethod, type PunchMethod } from "./punch.ts";
import type { IoOp } from "./iotask.ts";
import { SpaceMap } from "./spacemap.ts";
import {
  type AutoextendEvent, type BlockNo, type CommitParticipant, DEFAULT_SETTINGS, type PoolSettings, type DeviceId, type DeviceInfo, type DeviceUsage, MAX_BLOCK_SIZE,
  MAX_DEVICE_ID, type MetadataTransaction, MIN_BLOCK_SIZE, type NodeId, type PoolCreateOptions,
  type PoolOpenOptions, type PoolStatus, type ThinDevice, type VBlock,
} from "./types.ts";

const DEFAULT_BLOCK_SIZE = 64 * 1024;
/**
 * Most data blocks a pool takes: each has a 32-bit reference count in memory, and map
 * leaves hold block numbers plus one in 32 bits (2^31 keeps the counts to 8 GiB).
 */
export const MAX_DATA_BLOCKS = 2 ** 31;
const DEFAULT_METADATA_SIZE = 2 * 1024 ** 3;
/** Name of the data file inside a pool directory. */
export const DATA_FILE = "data";
/** Name of the metadata directory inside a pool directory. */
export const METADATA_DIR = "metadata";

interface DeviceState {
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

/** What {@linkcode Pool.trim} did. */
export interface TrimResult {
  /** Free blocks whose space was given back to the host. */
  blocks: number;
  /** Contiguous ranges punched. */
  ranges: number;
  /** How the holes were punched; `"none"` when no block was free. */
  method: PunchMethod | "none";
}

interface SegmentState { live: number; total: number }

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
  readonly #meta: MetaStore;
  readonly #space: SpaceMap;
  readonly #forest: MapForest;
  readonly #io: BlockIo;
  readonly #lock = new RwLock();
  readonly #devices = new Map<DeviceId, DeviceState>();
  readonly #segments = new Map<string, SegmentState>();
  readonly #nodeSegment = new Map<NodeId, string>();
  readonly #nodes = new Map<NodeId, MapNode>();
  readonly #participants = new Map<string, CommitParticipant>();
  #participantRoots: Record<string, unknown>;
  #transactionId: number;
  #metadataSize: number;
  #settings: PoolSettings;
  /** Called when the data file grew by itself (autoextend). */
  onAutoextend: (event: AutoextendEvent) => void = () => {};
  #metadataUsed = 0;
  /** Files named by the last committed root, and files written since. */
  #liveFiles = new Set<string>();
  #written = new Set<string>();
  #changed = false;
  #closed = false;
  readonly #background = new Set<Promise<void>>();
  readonly #ctx: IoContext;
  readonly #readahead: Readahead;
  #version = 0;
  #holdDeletions = false;

  readonly #unlock: () => Promise<void>;

  private constructor(dir: string, meta: MetaStore, record: PoolRecord, io: BlockIo, unlock: () => Promise<void>, readahead?: number) {
    this.dir = dir;
    this.#unlock = unlock;
    this.blockSize = record.blockSize;
    this.#meta = meta;
    this.#space = new SpaceMap(record.dataBlocks);
    this.#forest = new MapForest(this.#space, record.nextNodeId);
    this.#forest.onDead = (node) => this.#nodeDied(node);
    this.#io = io;
    this.#transactionId = record.transactionId;
    this.#metadataSize = record.metadataSize;
    this.#participantRoots = record.participants ?? {};
    this.#settings = { ...DEFAULT_SETTINGS, ...record.settings };
    const key = `${path.join(dir, DATA_FILE)}#${randomUUID()}`;
    this.#ctx = {
      io, forest: this.#forest, space: this.#space, blockSize: this.blockSize,
      file: path.join(dir, DATA_FILE), key, inflight: new Inflight(record.blockSize, path.join(dir, DATA_FILE)),
      reclaim: async () => {
        if (this.#space.pending.size === 0 || !this.#implicitAllowed()) return false;
        await this.#commit();
        return true;
      },
    };
    this.#readahead = new Readahead(this.#ctx, readahead);
  }

  /**
   * Creates a pool in `dir`: a sparse data file of `dataSize` bytes (nothing written)
   * and its metadata. EEXIST if `dir` already holds a pool; EINVAL for a block size that
   * is not a multiple of 64 KiB from 64 KiB to 1 GiB, or a data size under one block.
   */
  static async create(dir: string, options: PoolCreateOptions & PoolOpenOptions): Promise<Pool> {
    const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!Number.isSafeInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || blockSize % MIN_BLOCK_SIZE !== 0) {
      throw storeError("EINVAL", "create", dir, `block size '${blockSize}' must be a multiple of 64 KiB from 64 KiB to 1 GiB`);
    }
    const dataSize = options.dataSize;
    if (!Number.isSafeInteger(dataSize) || dataSize < blockSize) {
      throw storeError("EINVAL", "create", dir, `data size '${dataSize}' must be a whole number of bytes of at least one block (${blockSize})`);
    }
    const metadataSize = options.metadataSize ?? DEFAULT_METADATA_SIZE;
    if (!Number.isSafeInteger(metadataSize) || metadataSize <= 0) {
      throw storeError("EINVAL", "create", dir, `metadata size '${metadataSize}' must be a positive whole number of bytes`);
    }
    const metaDir = path.join(dir, METADATA_DIR);
    await fs.mkdir(metaDir, { recursive: true });
    const meta = new MetaStore(metaDir);
    if (await meta.readRoot() !== undefined) {
      throw storeError("EEXIST", "create", dir, "a pool already exists here; open it with Pool.open");
    }
    const dataBlocks = Math.floor(dataSize / blockSize);
    checkBlocks(dataBlocks, blockSize, "create", dir);
    const fh = await fs.open(path.join(dir, DATA_FILE), "w");
    try {
      await fh.truncate(dataBlocks * blockSize); // sparse: nothing is written
    } finally {
      await fh.close();
    }
    const record: PoolRecord = {
      format: POOL_FORMAT, version: POOL_VERSION, transactionId: 0, blockSize, dataBlocks, metadataSize,
      nextNodeId: 1, devices: {}, segments: [], participants: {},
      settings: checkSettings({ ...DEFAULT_SETTINGS, ...options.settings }, dir),
    };
    await meta.switchRoot(record);
    return Pool.open(dir, options);
  }

  /**
   * Opens the pool in `dir` at its last commit. ENOENT if there is none; EBUSY while another
   * process has it open (a lock file holding its pid, taken over once that process is gone).
   */
  static async open(dir: string, options: PoolOpenOptions = {}): Promise<Pool> {
    const meta = new MetaStore(path.join(dir, METADATA_DIR));
    let record: unknown;
    try {
      record = await meta.readRoot();
    } catch (e) {
      if (hasCode(e, "ENOTDIR")) record = undefined;
      else throw e;
    }
    if (record === undefined) throw storeError("ENOENT", "open", dir, "no pool here; create one with Pool.create");
    if (!checkPoolRecord(record)) throw storeError("EINVAL", "open", dir, "the pool record is not a thinstack pool of a version this build reads");
    if (options.readahead !== undefined && (!Number.isSafeInteger(options.readahead) || options.readahead < 0)) {
      throw storeError("EINVAL", "open", dir, `read-ahead '${options.readahead}' must be a whole number of bytes, 0 or more`);
    }
    // Held until close: another process's open would remove this one's commit files.
    const unlock = await lockPool(dir);
    const io = BlockIo.acquire(options.ioThreads);
    const pool = new Pool(dir, meta, record, io, unlock, options.readahead);
    try {
      await pool.#load(record);
      // A deferred deletion a crash (or a close that did not settle) left: finish it now.
      if (options.resumeDeletions !== false) for (const dev of pool.#devices.values()) if (dev.deleting) pool.#finishDeletion(dev.id);
    } catch (e) {
      await BlockIo.release();
      await unlock();
      throw e;
    }
    return pool;
  }

  async #load(record: PoolRecord): Promise<void> {
    const dataFile = await fs.stat(this.#ctx.file).catch(() => undefined);
    if (!dataFile) throw storeError("ENOENT", "open", this.#ctx.file, "the pool's data file is missing");
    if (dataFile.size < record.dataBlocks * record.blockSize) {
      throw storeError("EINVAL", "open", this.#ctx.file, `the data file has ${dataFile.size} bytes, the pool needs ${record.dataBlocks * record.blockSize}`);
    }
    const raw = new Map<NodeId, { leaf: boolean; pairs: number[]; segment: string }>();
    for (const name of record.segments) {
      const seg = await this.#meta.read(name) as SegmentRecord;
      for (const [id, leaf, pairs] of seg.nodes) raw.set(id, { leaf: leaf === 1, pairs, segment: name });
      this.#segments.set(name, { live: 0, total: seg.nodes.length });
    }
    const build = (id: NodeId): MapNode => {
      const known = this.#nodes.get(id);
      if (known) {
        known.refs++;
        return known;
      }
      const r = raw.get(id);
      if (!r) throw storeError("EIO", "open", this.dir, `metadata names map node ${id}, which no segment holds; run repair`);
      const node = r.leaf ? new MapNode(id, true, new Uint32Array(1024)) : new MapNode(id, false, new Array(1024).fill(null));
      for (let k = 0; k < r.pairs.length; k += 2) {
        const [i, v] = [r.pairs[k], r.pairs[k + 1]];
        if (r.leaf) {
          if (v - 1 >= this.#space.total) throw storeError("EIO", "open", this.dir, `map node ${id} points at block ${v - 1}, past the pool's end; run repair`);
          (node.slots as Uint32Array)[i] = v;
          this.#space.ref(v - 1);
        } else {
          (node.slots as (MapNode | null)[])[i] = build(v);
        }
        node.count++;
      }
      this.#nodes.set(id, node);
      this.#nodeSegment.set(id, r.segment);
      this.#segments.get(r.segment)!.live++;
      return node;
    };
    for (const file of Object.values(record.devices)) {
      const d = await this.#meta.read(file) as DeviceRecord;
      const root = d.root ? build(d.root) : null;
      this.#devices.set(d.id, { id: d.id, size: d.size, mapping: { root, height: d.height }, created: d.created, file, savedRoot: d.root, deleting: d.deleting, version: ++this.#version });
    }
    this.#liveFiles = this.#collectLive();
    this.#metadataUsed = this.#meta.bytesOf(this.#liveFiles);
    // Anything else in the directory is a crashed commit's leftover.
    await this.#meta.collect(this.#liveFiles);
    await this.#measureLive();
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
        if (this.#changed) await this.#commit();
        else await this.#ctx.inflight.drain();
      } catch (e) {
        failure = e;
        await this.#ctx.inflight.drain().catch(() => {});
      }
      this.#closed = true;
    });
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
      const height = heightFor(Math.ceil(size / this.blockSize));
      this.#devices.set(id, { id, size, mapping: { root: null, height }, created: Date.now(), savedRoot: 0, version: ++this.#version });
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
      this.#devices.set(id, { id, size: origin.size, mapping: this.#forest.share(origin.mapping), created: Date.now(), savedRoot: 0, version: ++this.#version });
    });
  }

  /**
   * Deletes a device: every block no other device sees goes back to free space at once.
   *
   * With `deferred` (Docker's dm.use_deferred_deletion) the device disappears at once, the
   * deletion is committed as pending, and its blocks are freed in the background; a crash
   * in between finishes the work at the next open. {@linkcode Pool.settle} waits for it.
   */
  async deleteDevice(id: DeviceId, options: { deferred?: boolean } = {}): Promise<void> {
    if (!options.deferred) {
      return this.#mutate("delete", () => {
        const dev = this.#device(id, "delete");
        this.#forest.drop(dev.mapping);
        this.#devices.delete(id);
        this.#readahead.forget(id);
      });
    }
    await this.#mutate("delete", async () => {
      this.#device(id, "delete").deleting = true;
      await this.#commit();
    });
    this.#finishDeletion(id);
  }

  #finishDeletion(id: DeviceId): void {
    const work = this.#mutate("delete", async () => {
      const dev = this.#devices.get(id);
      // Held (see holdDeletions): it stays pending, recorded, for the next open.
      if (!dev?.deleting || this.#holdDeletions) return;
      this.#forest.drop(dev.mapping);
      this.#devices.delete(id);
      this.#readahead.forget(id);
      // A participant in the middle of an operation: the freeing commits with its next commit
      // (a crash before that finishes the deletion again at open).
      if (this.#implicitAllowed()) await this.#commit();
    });
    this.#background.add(work);
    work.catch(() => {}).finally(() => this.#background.delete(work));
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
    await this.#ctx.inflight.drain();
  }

  /**
   * A handle on device `id` for reads, writes and discards. ENOENT if there is no such
   * device; the handle's operations fail with ENOENT once the device is deleted.
   */
  device(id: DeviceId): ThinDevice {
    const dev = this.#device(id, "open");
    return {
      id,
      size: dev.size,
      read: (offset, length) =>
        this.#lock.read(() => {
          this.#ctx.inflight.check();
          const d = this.#device(id, "read");
          checkRange(id, d.size, offset, length, "read");
          return this.#readahead.read(d, offset, length);
        }),
      readInto: (offset, target) =>
        this.#lock.read(() => {
          this.#ctx.inflight.check();
          const d = this.#device(id, "read");
          checkRange(id, d.size, offset, target.byteLength, "read");
          return this.#readahead.readInto(d, offset, target);
        }),
      write: (offset, bytes) =>
        this.#mutate("write", async () => {
          const d = this.#device(id, "write");
          checkRange(id, d.size, offset, bytes.byteLength, "write");
          d.version = ++this.#version;
          await writeRange(this.#ctx, id, d.mapping, offset, bytes);
          await this.#autoextend();
        }),
      discard: (offset, length) =>
        this.#mutate("discard", () => {
          const d = this.#device(id, "discard");
          checkRange(id, d.size, offset, length, "discard");
          d.version = ++this.#version;
          return discardRange(this.#ctx, id, d.mapping, offset, length);
        }),
    };
  }

  /** The live devices, by id. */
  devices(): DeviceInfo[] {
    this.#open("devices");
    return [...this.#devices.values()].filter((d) => !d.deleting).map((d) => ({ id: d.id, size: d.size })).sort((a, b) => a.id - b.id);
  }

  /** The pool block behind virtual block `vb` of device `id`, or undefined where unmapped. */
  lookup(id: DeviceId, vb: VBlock): BlockNo | undefined {
    const dev = this.#device(id, "lookup");
    const blocks = Math.ceil(dev.size / this.blockSize);
    if (!Number.isSafeInteger(vb) || vb < 0 || vb >= blocks) {
      throw storeError("EINVAL", "lookup", `device ${id}`, `virtual block '${vb}' is outside the device's ${blocks} blocks`);
    }
    const b = this.#forest.lookup(dev.mapping, vb);
    return b < 0 ? undefined : b;
  }

  /** Mapped, exclusive and shared block counts of a device (thin_ls). */
  usage(id: DeviceId): DeviceUsage {
    const dev = this.#device(id, "usage");
    let mapped = 0;
    let exclusive = 0;
    for (const [vb, block] of this.#forest.entries(dev.mapping)) {
      mapped++;
      if (this.#forest.resolve(dev.mapping, vb).exclusive && this.#space.refs[block] === 1) exclusive++;
    }
    return { id, mapped, exclusive, shared: mapped - exclusive };
  }

  /** The pool's counters, after dm-thin's status line. */
  status(): PoolStatus {
    this.#open("status");
    return {
      transactionId: this.#transactionId,
      blockSize: this.blockSize,
      dataBlocks: { used: this.#space.used, total: this.#space.total },
      metadataBytes: { used: this.#metadataUsed, total: this.#metadataSize },
      settings: { ...this.#settings },
      pendingFreeBlocks: this.#space.pending.size,
      devices: this.devices().length,
      deferredDeletes: [...this.#devices.values()].filter((d) => d.deleting).length,
    };
  }

  /**
   * Makes every change so far durable and atomic; the transaction id grows by one. EBUSY
   * while an attached participant (the layer store) is in the middle of an operation.
   */
  commit(): Promise<void> {
    this.#open("commit");
    return this.#lock.write(() => {
      this.#checkImplicit("commit");
      return this.#commit();
    });
  }

  /** True when every attached participant can commit its state as it is now. */
  #implicitAllowed(): boolean {
    for (const p of this.#participants.values()) if (p.allowsImplicitCommit?.() === false) return false;
    return true;
  }

  #checkImplicit(syscall: string): void {
    if (!this.#implicitAllowed()) {
      throw storeError("EBUSY", syscall, this.dir, "the layer store is in the middle of an operation; commit through it (store.sync()) or retry when it is done");
    }
  }

  /**
   * Grows the data file to `dataSize` bytes, or shrinks it when every block past the new
   * end is free. Shrinking below a block in use is refused with ENOSPC; a shrink commits
   * the open transaction before it cuts the file.
   */
  resize(dataSize: number): Promise<void> {
    return this.#mutate("resize", async () => {
      if (!Number.isSafeInteger(dataSize) || dataSize < this.blockSize) {
        throw storeError("EINVAL", "resize", this.dir, `data size '${dataSize}' must be a whole number of bytes of at least one block`);
      }
      const blocks = Math.floor(dataSize / this.blockSize);
      checkBlocks(blocks, this.blockSize, "resize", this.dir);
      if (blocks < this.#space.total) {
        for (let b = blocks; b < this.#space.total; b++) {
          if (this.#space.refs[b] !== 0 || this.#space.pending.has(b)) {
            throw storeError("ENOSPC", "resize", this.dir, `block ${b} past the new end is in use; the pool cannot shrink below what it holds`);
          }
        }
        // The file loses its tail only once a commit records the smaller pool: a crash in
        // between must not leave a record that needs more file than there is.
        this.#checkImplicit("resize");
        const total = this.#space.total;
        this.#space.shrink(blocks);
        try {
          await this.#commit();
        } catch (e) {
          this.#space.grow(total);
          throw e;
        }
        await fs.truncate(this.#ctx.file, blocks * this.blockSize);
      } else {
        // The file grows first: a larger file than the record says is harmless at open.
        await fs.truncate(this.#ctx.file, blocks * this.blockSize);
        this.#space.grow(blocks);
      }
    });
  }

  /**
   * Gives the data file's free blocks back to the host by punching holes in it, so its
   * allocated size (`du`) falls after devices are deleted. Blocks the last commit still
   * references are left alone until the next commit.
   */
  trim(): Promise<TrimResult> {
    return this.#lock.write(async () => {
      this.#open("trim");
      // A block freed in this transaction may still have a write queued on it.
      await this.#ctx.inflight.drain();
      const ranges: ByteRange[] = [];
      let blocks = 0;
      const bs = this.blockSize;
      for (let b = 0; b < this.#space.total; b++) {
        if (this.#space.refs[b] !== 0 || this.#space.pending.has(b)) continue;
        blocks++;
        const last = ranges[ranges.length - 1];
        if (last && last.offset + last.length === b * bs) last.length += bs;
        else ranges.push({ offset: b * bs, length: bs });
      }
      if (ranges.length === 0) return { blocks, ranges: 0, method: "none" };
      // In the workers, a batch of ranges a task, the batches in parallel.
      const PER_TASK = 256;
      const tasks: Promise<void>[] = [];
      for (let i = 0; i < ranges.length; i += PER_TASK) {
        const ops: IoOp[] = ranges.slice(i, i + PER_TASK).map((r) => ({ op: "punch", pos: r.offset, len: r.length }));
        tasks.push(this.#io.run({ file: this.#ctx.file, key: this.#ctx.key, ops }));
      }
      const results = await Promise.allSettled(tasks);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
      return { blocks, ranges: ranges.length, method: punchMethod() };
    });
  }

  /** Changes operator settings; they are stored with the next commit. */
  configure(settings: Partial<PoolSettings>): Promise<void> {
    return this.#mutate("configure", () => {
      this.#settings = checkSettings({ ...this.#settings, ...settings }, this.dir);
    });
  }

  /**
   * Fails with ENOSPC when free data space is below the minimum free space setting
   * (Docker's dm.min_free_space): whoever creates layers calls it first.
   */
  checkFreeSpace(syscall = "create"): void {
    const { used, total } = this.status().dataBlocks;
    const free = total - used;
    const min = Math.ceil(total * this.#settings.minFreeSpacePercent / 100);
    if (free < min) {
      throw storeError("ENOSPC", syscall, this.dir,
        `free data space is ${free} of ${total} blocks, below the minimum free space of ${this.#settings.minFreeSpacePercent}% (dm.min_free_space); free space by removing layers, or grow the pool with resize`);
    }
  }

  async #autoextend(): Promise<void> {
    const { autoextendThreshold: threshold, autoextendPercent: percent } = this.#settings;
    const total = this.#space.total;
    if (threshold >= 100 || percent <= 0 || this.#space.used * 100 <= total * threshold) return;
    const grown = Math.min(MAX_DATA_BLOCKS, total + Math.max(1, Math.ceil(total * percent / 100)));
    if (grown <= total) return;
    await fs.truncate(this.#ctx.file, grown * this.blockSize);
    this.#space.grow(grown);
    this.onAutoextend({ fromBlocks: total, toBlocks: grown, usedBlocks: this.#space.used });
  }

  /** Registers a participant whose metadata commits with the pool's (the layer store). */
  attach(name: string, participant: CommitParticipant): void {
    this.#participants.set(name, participant);
  }

  /** The root record a participant stored at the last commit. */
  participantRoot(name: string): unknown | undefined {
    return this.#participantRoots[name];
  }

  /** Reads a metadata file written through a commit's {@linkcode MetadataTransaction}. */
  readCbor(name: string): Promise<unknown> {
    return this.#meta.read(name);
  }

  /** Path of the data file. */
  get dataFile(): string {
    return this.#ctx.file;
  }

  /** The blocks no device sees and no commit still references: free for reuse (for trim). */
  freeBlocks(): BlockNo[] {
    const out: BlockNo[] = [];
    for (let b = 0; b < this.#space.total; b++) if (this.#space.refs[b] === 0 && !this.#space.pending.has(b)) out.push(b);
    return out;
  }

  async #mutate<T>(syscall: string, fn: () => T | Promise<T>): Promise<T> {
    this.#open(syscall);
    return await this.#lock.write(async () => {
      this.#open(syscall);
      this.#ctx.inflight.check();
      this.#changed = true;
      return await fn();
    });
  }

  async #commit(): Promise<void> {
    await this.#ctx.inflight.drain();
    // The data file's fdatasync runs while the metadata files are written; every new file
    // is synced (all at once) before the root switch, which is what makes them count.
    const dataSync = this.#io.run({ file: this.#ctx.file, key: this.#ctx.key, ops: [{ op: "sync" }] });
    dataSync.catch(() => {}); // handled below; a rejection must not count as unhandled meanwhile
    try {
      await this.#switchIn(dataSync);
    } catch (e) {
      await dataSync.catch(() => {});
      await this.#meta.dropStaged();
      for (const p of this.#participants.values()) p.aborted?.();
      throw e;
    }
  }

  /**
   * Writes the transaction's files and switches the root record to them. Nothing in memory
   * says a file holds committed state until the switch succeeded: a commit that fails
   * (metadata ENOSPC, an I/O error) leaves every change pending for the next commit, which
   * writes it again rather than naming a file that was never synced.
   */
  async #switchIn(dataSync: Promise<void>): Promise<void> {
    const tx = this.#transactionId + 1;
    const transaction: MetadataTransaction = {
      transactionId: tx,
      writeCbor: async (prefix, value) => {
        const name = await this.#meta.stage(prefix, tx, value);
        this.#written.add(name);
        return name;
      },
    };
    this.#compactSegments();
    const dirty = [...this.#forest.dirty];
    // Live node counts per segment as they will be once this commit is in.
    const segLive = new Map([...this.#segments].map(([name, s]) => [name, s.live]));
    let segment: string | undefined;
    if (dirty.length > 0) {
      const seg: SegmentRecord = { transactionId: tx, nodes: dirty.map(storeNode) };
      segment = await transaction.writeCbor("nodes", seg);
      for (const node of dirty) {
        const old = this.#nodeSegment.get(node.id);
        if (old) segLive.set(old, segLive.get(old)! - 1);
      }
      segLive.set(segment, dirty.length);
    }
    const devFiles = new Map<DeviceState, { file: string; root: NodeId }>();
    for (const dev of this.#devices.values()) {
      const root = dev.mapping.root?.id ?? 0;
      if (dev.file && root === dev.savedRoot && !dev.deleting) continue;
      const record: DeviceRecord = { id: dev.id, size: dev.size, height: dev.mapping.height, root, created: dev.created };
      if (dev.deleting) record.deleting = true;
      devFiles.set(dev, { file: await transaction.writeCbor(`dev-${dev.id}`, record), root });
    }
    const roots: Record<string, unknown> = {};
    for (const [name, p] of this.#participants) roots[name] = await p.prepareCommit(transaction);
    for (const [name, root] of Object.entries(this.#participantRoots)) if (!(name in roots)) roots[name] = root;
    const devicesFile = (d: DeviceState) => devFiles.get(d)?.file ?? d.file!;
    const live = new Set<string>();
    for (const [name, n] of segLive) if (n > 0) live.add(name);
    for (const d of this.#devices.values()) live.add(devicesFile(d));
    this.#addParticipantFiles(live);
    const record: PoolRecord = {
      format: POOL_FORMAT, version: POOL_VERSION, transactionId: tx, blockSize: this.blockSize,
      dataBlocks: this.#space.total, metadataSize: this.#metadataSize, nextNodeId: this.#forest.nextId,
      usedBlocks: this.#space.used,
      devices: Object.fromEntries([...this.#devices.values()].map((d) => [String(d.id), devicesFile(d)])),
      segments: [...segLive.keys()].filter((s) => live.has(s)),
      participants: roots,
      settings: this.#settings,
    };
    const used = this.#meta.bytesOf(live);
    if (used > this.#metadataSize) {
      throw storeError("ENOSPC", "commit", this.dir, `metadata needs ${used} bytes, more than the pool's ${this.#metadataSize}; delete devices or layers`);
    }
    await Promise.all([dataSync, this.#meta.syncStaged()]);
    await this.#meta.switchRoot(record);
    // Committed: from here on memory says so.
    if (segment) {
      for (const node of dirty) {
        this.#moveNode(node, segment);
        this.#nodes.set(node.id, node);
        this.#forest.dirty.delete(node);
      }
      this.#segments.set(segment, { live: dirty.length, total: dirty.length });
    }
    for (const [dev, { file, root }] of devFiles) {
      dev.file = file;
      dev.savedRoot = root;
    }
    this.#transactionId = tx;
    this.#participantRoots = roots;
    for (const p of this.#participants.values()) p.committed?.();
    this.#space.committed();
    this.#changed = false;
    for (const [name, s] of this.#segments) if (s.live === 0) this.#segments.delete(name);
    const dead = [...this.#liveFiles, ...this.#written].filter((f) => !live.has(f));
    this.#liveFiles = live;
    this.#written.clear();
    this.#metadataUsed = this.#meta.bytesOf(live);
    await Promise.all(dead.map((f) => fs.rm(path.join(this.#meta.dir, f), { force: true })));
    for (const f of dead) this.#meta.sizes.delete(f);
  }

  /** Sizes of live files not read at open (a participant's), for the metadata counters. */
  async #measureLive(): Promise<void> {
    for (const f of this.#liveFiles) {
      if (!this.#meta.sizes.has(f)) this.#meta.sizes.set(f, (await fs.stat(path.join(this.#meta.dir, f))).size);
    }
    this.#metadataUsed = this.#meta.bytesOf(this.#liveFiles);
  }

  /** Rewrites the live nodes of segments that are mostly dead, so old segments can go. */
  #compactSegments(): void {
    const sparse = new Set<string>();
    for (const [name, s] of this.#segments) if (s.live > 0 && s.total >= 64 && s.live * 4 < s.total) sparse.add(name);
    if (sparse.size === 0) return;
    for (const [id, seg] of this.#nodeSegment) if (sparse.has(seg)) this.#forest.dirty.add(this.#nodes.get(id)!);
  }

  #moveNode(node: MapNode, segment: string): void {
    const old = this.#nodeSegment.get(node.id);
    if (old) this.#segments.get(old)!.live--;
    this.#nodeSegment.set(node.id, segment);
  }

  #nodeDied(node: MapNode): void {
    const seg = this.#nodeSegment.get(node.id);
    if (seg) this.#segments.get(seg)!.live--;
    this.#nodeSegment.delete(node.id);
    this.#nodes.delete(node.id);
  }

  #collectLive(): Set<string> {
    const live = new Set<string>();
    for (const [name, s] of this.#segments) if (s.live > 0) live.add(name);
    for (const d of this.#devices.values()) if (d.file) live.add(d.file);
    this.#addParticipantFiles(live);
    return live;
  }

  #addParticipantFiles(live: Set<string>): void {
    for (const p of this.#participants.values()) for (const f of p.liveFiles()) live.add(f);
    if (this.#participants.size === 0) {
      // Not attached yet (opening): keep what the participants' last roots name.
      for (const root of Object.values(this.#participantRoots)) for (const f of filesOf(root)) live.add(f);
    }
  }

  #checkNewId(id: DeviceId, syscall: string): void {
    if (!Number.isInteger(id) || id < 0 || id > MAX_DEVICE_ID) {
      throw storeError("EINVAL", syscall, `device ${id}`, `device id '${id}' must be a whole number from 0 to ${MAX_DEVICE_ID} (24 bits)`);
    }
    const dev = this.#devices.get(id);
    if (dev?.deleting) throw storeError("EBUSY", syscall, `device ${id}`, "this id's device is still being deleted in the background; retry later");
    if (dev) throw storeError("EEXIST", syscall, `device ${id}`, "a device with this id exists; pick another id or delete it first");
  }

  #device(id: DeviceId, syscall: string): DeviceState {
    this.#open(syscall);
    const dev = this.#devices.get(id);
    if (!dev || dev.deleting) throw storeError("ENOENT", syscall, `device ${id}`, "no such thin device in this pool");
    return dev;
  }

  #open(syscall: string): void {
    if (this.#closed) throw storeError("EBADF", syscall, this.dir, "the pool is closed; open it again with Pool.open");
  }
}

function checkBlocks(blocks: number, blockSize: number, syscall: string, dir: string): void {
  if (blocks > MAX_DATA_BLOCKS) {
    throw storeError("EINVAL", syscall, dir,
      `a data size of ${blocks} blocks is over the ${MAX_DATA_BLOCKS} blocks a pool takes; the largest with ${blockSize}-byte blocks is ${MAX_DATA_BLOCKS * blockSize} bytes (larger blocks allow more)`);
  }
}

function checkSettings(s: PoolSettings, dir: string): PoolSettings {
  const pct = (v: number, name: string, max = 100) => {
    if (!Number.isFinite(v) || v < 0 || v > max) throw storeError("EINVAL", "configure", dir, `${name} '${v}' must be a percentage from 0 to ${max}`);
  };
  pct(s.minFreeSpacePercent, "minimum free space", 99);
  pct(s.autoextendThreshold, "autoextend threshold");
  pct(s.autoextendPercent, "autoextend percent", 1000);
  return s;
}

/** Participant roots name their files under `files` (a convention the pool relies on at open). */
function filesOf(root: unknown): string[] {
  const files = (root as { files?: unknown })?.files;
  return Array.isArray(files) ? files.filter((f): f is string => typeof f === "string") : [];
}
