/**
 * The layer store: containerd's snapshotter model over one thin pool. Every layer owns a
 * thin device that is a snapshot of its parent's (the lowest layers snapshot the empty
 * base device), and its metadata — record, tables, allocator — lives in CBOR files of
 * its own that commit atomically with the pool's.
 *
 * Durability: lifecycle calls (prepare, view, commit, remove, update) commit at once;
 * file changes commit with the next `sync()`, lifecycle call or `close()`. A crash
 * reopens the store at its last commit, every layer consistent with its device.
 *
 * Concurrency: calls may overlap freely; reads share a lock, changes take it alone.
 *
 * The layers above (images and changesets in src/images, mounts in src/mount) use the
 * public calls only, plus three made for them: {@linkcode LayerStore.changes} (a layer's
 * own changes), named records committed with the store ({@linkcode LayerStore.setRecord}),
 * and {@linkcode LayerStore.transaction}.
 *
 * @module
 */
import { hasCode, storeError } from "../common/errors.ts";
import { GiB } from "../common/units.ts";
import { Pool } from "../pool/pool.ts";
import type { DeltaOptions, DeltaRange } from "../pool/delta.ts";
import type { DeviceId } from "../pool/types.ts";
import { PageAllocator } from "./alloc.ts";
import { LookupCache } from "./cache.ts";
import { ROOT_FORMAT, ROOT_VERSION, type StoreRoot } from "./catalog.ts";
import { type LayerChange, layerChanges } from "./changes.ts";
import { compileFilters } from "./filter.ts";
import { LayerFs } from "./fs.ts";
import { fsHost } from "./fshost.ts";
import { checkStore } from "./fsck.ts";
import type { FsHost } from "./host.ts";
import type { LayerHold } from "./holds.ts";
import { LayerNodes } from "./nodes.ts";
import { newInode, PAGE, S_IFDIR } from "./inode.ts";
import { Layer, type LayerKind } from "./layer.ts";
import { loadAll, reap } from "./reap.ts";
import { repairLayers } from "./repair.ts";
import { checkName, SCRATCH, SCRATCH_LABEL, StoreState } from "./state.ts";
import { runTransaction } from "./transaction.ts";
import type { FsckReport, LayerInfo, LayerOptions, LayerStoreOptions, LayerUpdate, LayerUsage, RemoveOptions } from "./types.ts";

export { SCRATCH_LABEL } from "./state.ts";

/** The name the store commits under in its pool. */
export const PARTICIPANT = "layers";
const DEFAULT_BASE_SIZE = 10 * GiB;
const DEFAULT_DATA_SIZE = 100 * GiB;

/**
 * A store of layers.
 *
 * @example
 * ```ts ignore
 * import { LayerStore } from "thinstack";
 * const store = await LayerStore.open("/var/lib/thinstack", { create: true, dataSize: 20 * 2 ** 30 });
 * await store.prepare("image-1-extract");
 * await store.fs("image-1-extract").writeFile("/hello", "world\n");
 * await store.commit("image-1", "image-1-extract");
 * await store.prepare("container-1", "image-1");
 * console.log(await store.fs("container-1").readFile("/hello", "utf8")); // world
 * await store.close();
 * ```
 */
export class LayerStore {
  /** The pool underneath, for its status and maintenance. */
  readonly pool: Pool;
  readonly #s: StoreState;
  readonly #host: FsHost;

  /** For subclasses (the image store); applications call {@linkcode LayerStore.open}. */
  protected constructor(pool: Pool, root: StoreRoot, cache: LookupCache) {
    this.pool = pool;
    this.#s = new StoreState(pool, root, cache);
    this.#host = fsHost(this.#s);
  }

  /**
   * Opens the store in `dir` at its last commit; with `create`, makes it (and its pool)
   * when there is none. ENOENT when there is none and `create` is not set. Called on a
   * subclass, it makes an instance of that subclass.
   */
  static async open(dir: string, options: LayerStoreOptions = {}): Promise<LayerStore> {
    let pool: Pool;
    try {
      pool = await Pool.open(dir, { ioThreads: options.ioThreads, resumeDeletions: options.resumeDeletions, readahead: options.readahead });
    } catch (e) {
      if (!hasCode(e, "ENOENT") || !options.create) throw e;
      pool = await Pool.create(dir, {
        dataSize: options.dataSize ?? (options.dataDevice === undefined ? DEFAULT_DATA_SIZE : undefined), dataDevice: options.dataDevice, blockSize: options.blockSize, metadataSize: options.metadataSize,
        settings: options.settings, ioThreads: options.ioThreads, readahead: options.readahead,
      });
    }
    try {
      // `this` is the class open was called on: a subclass gets instances of its own.
      return await LayerStore.#load((p, r, c) => new this(p, r, c), pool, options);
    } catch (e) {
      await pool.close().catch(() => {});
      throw e;
    }
  }

  static async #load(
    make: (pool: Pool, root: StoreRoot, cache: LookupCache) => LayerStore, pool: Pool, options: LayerStoreOptions,
  ): Promise<LayerStore> {
    const cache = new LookupCache(options.cache);
    let root = pool.participantRoot(PARTICIPANT) as StoreRoot | undefined;
    if (root === undefined) {
      if (!options.create) throw storeError("ENOENT", "open", pool.dir, "the pool holds no layer store; open it with { create: true }");
      const baseSize = options.baseSize ?? DEFAULT_BASE_SIZE;
      if (!Number.isSafeInteger(baseSize) || baseSize < pool.blockSize || baseSize % PAGE !== 0) {
        throw storeError("EINVAL", "open", pool.dir, `base size '${baseSize}' must be a whole number of 4 KiB pages, at least one pool block`);
      }
      const used = new Set(pool.devices().map((d) => d.id));
      let baseDevice = 0;
      while (used.has(baseDevice)) baseDevice++;
      root = {
        format: ROOT_FORMAT, version: ROOT_VERSION, files: [], baseDevice, baseSize,
        nextIno: 1, nextLayer: 1, nextDevice: baseDevice + 1, layers: [], retired: [],
      };
      const store = make(pool, root, cache);
      const s = store.#s;
      pool.attach(PARTICIPANT, s.catalog.participant(() => s.lock.tryRead()));
      await pool.createThin(baseDevice, baseSize);
      await s.lock.write(() => s.commit());
      return store;
    }
    if (root.format !== ROOT_FORMAT || root.version !== ROOT_VERSION) {
      throw storeError("EINVAL", "open", pool.dir, "the layer store's root record is of a format this build does not read");
    }
    const store = make(pool, root, cache);
    const s = store.#s;
    await loadAll(s, options.salvage === true);
    await s.catalog.loadRecords();
    pool.attach(PARTICIPANT, s.catalog.participant(() => s.lock.tryRead()));
    await s.lock.write(() => reap(s, store.#host));
    return store;
  }

  /** Makes every file change so far durable (a no-op when nothing changed). */
  sync(): Promise<void> {
    return this.#s.mutate("sync", async () => {
      if (this.#s.catalog.hasChanges) await this.#s.commit();
    });
  }

  /** Commits pending changes and closes the store and its pool. A second close does nothing. */
  async close(): Promise<void> {
    const s = this.#s;
    await s.lock.write(async () => {
      if (s.closed) return;
      if (s.catalog.hasChanges) await s.commit();
      s.closed = true;
      await this.pool.close();
    });
  }

  /** Makes a writable layer `key` on top of committed layer `parent` (or empty). EEXIST if `key` is taken. */
  prepare(key: string, parent?: string, options?: LayerOptions): Promise<LayerInfo> {
    return this.#create("active", key, parent, options, "prepare");
  }

  /** Makes a read-only layer `key` showing committed layer `parent` (or empty). */
  view(key: string, parent?: string, options?: LayerOptions): Promise<LayerInfo> {
    return this.#create("view", key, parent, options, "view");
  }

  #create(kind: LayerKind, key: string, parentName: string | undefined, options: LayerOptions | undefined, syscall: string): Promise<LayerInfo> {
    const s = this.#s;
    return s.mutate(syscall, async () => {
      checkName(key, syscall);
      if (s.byName.has(key)) throw storeError("EEXIST", syscall, key, "a layer with this key or name exists; remove it or pick another");
      let parent: Layer | undefined;
      if (parentName) {
        parent = s.byName.get(parentName);
        if (!parent) throw storeError("ENOENT", syscall, parentName, "no such parent layer");
        if (parent.record.kind !== "committed") {
          throw storeError("EINVAL", syscall, parentName, `the parent is ${parent.record.kind === "view" ? "a view" : "active"}; only committed layers can be parents`);
        }
      }
      this.pool.checkFreeSpace(syscall);
      const device = s.allocDevice(syscall);
      await this.pool.createSnapshot(device, parent ? parent.record.device : s.catalog.root.baseDevice);
      const now = Date.now();
      const id = s.nextLayer++;
      const root = parent ? parent.record.root : s.nextIno++;
      const layer = new Layer(
        { id, name: key, kind, parent: parent?.id ?? 0, device, root, created: now, updated: now, labels: { ...options?.labels } },
        parent ? parent.alloc.inherit() : PageAllocator.fresh(s.totalPages, s.pagesPerBlock),
        parent,
      );
      if (!parent) layer.tables.putInode(root, newInode(S_IFDIR | 0o755, now));
      s.register(layer);
      if (parent) parent.children++;
      s.catalog.markDirty(layer);
      try {
        await s.commit();
      } catch (e) {
        s.unregister(layer);
        await this.pool.deleteDevice(device).catch(() => {});
        throw e;
      }
      return s.info(layer);
    });
  }

  /**
   * Turns active layer `key` into committed layer `name`; `key` is gone after. The labels
   * become `options.labels` when given. EINVAL for a view, EBUSY while files are open.
   */
  commit(name: string, key: string, options?: LayerOptions): Promise<LayerInfo> {
    const s = this.#s;
    return s.mutate("commit", async () => {
      checkName(name, "commit");
      const layer = s.get(key, "commit");
      if (layer.record.kind !== "active") throw storeError("EINVAL", "commit", key, `'${key}' is ${layer.record.kind === "view" ? "a view" : "committed"}; only active layers can be committed`);
      if (name !== key && s.byName.has(name)) throw storeError("EEXIST", "commit", name, "a layer with this name exists");
      s.holds.check(layer, "commit");
      if (layer.handles.size > 0) throw storeError("EBUSY", "commit", key, "files of the layer are open; close them first");
      if (layer.inTransaction) throw storeError("EBUSY", "commit", key, "a transaction (an apply) is changing the layer; wait for it to finish");
      const before = layer.record;
      const now = Date.now();
      // A committed layer is finished work: the scratch label does not carry over.
      const { [SCRATCH_LABEL]: _scratch, ...labels } = options?.labels ?? before.labels;
      layer.record = { ...before, name, kind: "committed", created: now, updated: now, labels };
      s.byName.delete(key);
      s.byName.set(name, layer);
      layer.recordDirty = true;
      s.catalog.markDirty(layer);
      try {
        await s.commit();
      } catch (e) {
        layer.record = before;
        s.byName.delete(name);
        s.byName.set(key, layer);
        throw e;
      }
      return s.info(layer);
    });
  }

  /**
   * Removes a layer and its device: blocks only it held go back to the pool. EBUSY when
   * it has children or open files (nothing changes then). The key or name is free after.
   * With `deferred`, the blocks are freed in the background (the layer is gone at once).
   */
  remove(key: string, options: RemoveOptions = {}): Promise<void> {
    const s = this.#s;
    return s.mutate("remove", async () => {
      const layer = s.get(key, "remove");
      if (layer.children > 0) throw storeError("EBUSY", "remove", key, `cannot remove: ${layer.children} layer(s) are based on it; remove them first`);
      if (s.holds.held(layer)) {
        if (!options.deferred) s.holds.check(layer, "remove");
        s.holds.removeWhenReleased(layer, () => this.remove(key, options));
        return;
      }
      if (layer.handles.size > 0) throw storeError("EBUSY", "remove", key, "cannot remove: files of the layer are open");
      if (layer.inTransaction) throw storeError("EBUSY", "remove", key, "cannot remove: a transaction (an apply) is changing the layer");
      const device = layer.record.device;
      if (!options.deferred) {
        // The device's deletion and the store's new root switch in with one commit.
        await this.pool.deleteDevice(device);
        s.unregister(layer);
        await s.commit();
        return;
      }
      // The root drops the layer first and remembers the device, so a crash before the
      // pool's own deletion commits cannot leave a layer without its device.
      s.unregister(layer);
      s.retired.push(device);
      await s.commit();
      // Its last step: the pool's commit of the pending deletion carries the tables as they are.
      await s.catalog.asCommitter(() => this.pool.deleteDevice(device, { deferred: true }));
    });
  }

  /** containerd's `Info` of a layer. ENOENT if there is none. */
  stat(key: string): Promise<LayerInfo> {
    return this.#s.lock.read(() => this.#s.info(this.#s.get(key, "stat")));
  }

  /**
   * Changes labels, as containerd's Update: without field paths the labels are replaced;
   * `labels` replaces them too; `labels.<key>` sets or deletes one. Any other field is
   * immutable: EINVAL.
   */
  update(info: LayerUpdate, ...fieldPaths: string[]): Promise<LayerInfo> {
    const s = this.#s;
    return s.mutate("update", async () => {
      const layer = s.get(info.name, "update");
      let labels = { ...layer.record.labels };
      if (fieldPaths.length === 0) labels = { ...info.labels };
      for (const fp of fieldPaths) {
        if (fp === "labels") labels = { ...info.labels };
        else if (fp.startsWith("labels.")) {
          const k = fp.slice("labels.".length);
          const v = info.labels?.[k];
          if (v === undefined) delete labels[k];
          else labels[k] = v;
        } else {
          throw storeError("EINVAL", "update", info.name, `field '${fp}' cannot be changed; only labels can`);
        }
      }
      layer.record = { ...layer.record, labels, updated: Date.now() };
      layer.recordDirty = true;
      s.catalog.markDirty(layer);
      await s.commit();
      return s.info(layer);
    });
  }

  /** Calls `fn` for every layer matching any of `filters` (containerd's filter syntax). */
  async walk(fn: (info: LayerInfo) => void | Promise<void>, ...filters: string[]): Promise<void> {
    const match = compileFilters(filters);
    for (const info of await this.list()) if (match(info)) await fn(info);
  }

  /** Every layer's info. */
  list(): Promise<LayerInfo[]> {
    const s = this.#s;
    return s.lock.read(() => {
      s.checkOpen("list");
      return [...s.layers.values()].filter((l) => !l.record.name.startsWith(SCRATCH)).map((l) => s.info(l));
    });
  }

  /** What the layer alone holds: its own pool blocks and inline data, and its own inodes. */
  usage(key: string): Promise<LayerUsage> {
    return this.#s.lock.read(() => {
      const layer = this.#s.get(key, "usage");
      let size = layer.alloc.ownBlocks * this.pool.blockSize;
      for (const inode of layer.tables.inodes.values()) {
        if (inode.inline) size += inode.inline.byteLength;
        else if (inode.target !== undefined) size += inode.size;
      }
      return { size, inodes: layer.tables.inodes.size };
    });
  }

  /**
   * Runs `fn` on a scratch copy of active layer `key` and, if it succeeds, makes the copy
   * the layer in one commit; if it throws, the copy goes and the layer is exactly as it
   * was. The copy is a snapshot of the layer's device (O(1)) plus a copy of the layer's
   * own tables (in proportion to what the layer changed so far, nothing for a new layer).
   * While it runs, changes to `key` itself fail with EBUSY. `apply` runs in one.
   *
   * @example
   * ```ts ignore
   * await store.transaction("ctr-1", async (fs) => {
   *   await fs.writeFile("/etc/a", "1");
   *   throw new Error("changed my mind"); // /etc/a is not in ctr-1
   * });
   * ```
   */
  transaction<T>(key: string, fn: (fs: LayerFs) => Promise<T>): Promise<T> {
    return runTransaction(this.#s, this.#host, key, fn);
  }

  /**
   * The changes of layer `key` against its parent, read off the layer's own tables (so
   * they cost what the layer changed): each path added, modified or deleted, parents
   * before children where both changed. The layer must not change while they are read.
   *
   * @example
   * ```ts ignore
   * for await (const c of store.changes("ctr-1")) console.log(c.kind, c.path);
   * ```
   */
  changes(key: string): AsyncGenerator<LayerChange> {
    const layer = this.#s.get(key, "diff");
    return layerChanges(layer, new LayerFs(this.#host, layer), layer.parent ? new LayerFs(this.#host, layer.parent) : undefined);
  }

  /** The record named `name` (see {@linkcode LayerStore.setRecord}), or undefined. */
  record(name: string): unknown {
    this.#s.checkOpen("record");
    return this.#s.catalog.record(name);
  }

  /** Every record whose name starts with `prefix`, as [name, value] pairs. */
  records(prefix = ""): [string, unknown][] {
    this.#s.checkOpen("record");
    return this.#s.catalog.records().filter(([n]) => n.startsWith(prefix));
  }

  /**
   * Sets named record `name` to `value` (undefined deletes it) and commits: small records
   * that the layers above keep with the store's metadata (the image store's image
   * records), durable and atomic with it. Returns whether a record of that name was there.
   *
   * @example
   * ```ts ignore
   * await store.setRecord("app/settings", { theme: "dark" });
   * console.log(store.record("app/settings"));
   * ```
   */
  setRecord(name: string, value: unknown): Promise<boolean> {
    const s = this.#s;
    return s.mutate("record", async () => {
      const existed = s.catalog.record(name) !== undefined;
      if (value === undefined && !existed) return false;
      s.catalog.setRecord(name, value);
      await s.commit();
      return existed;
    });
  }

  /** The files of layer `key`, shaped after `node:fs/promises`. ENOENT if there is no such layer. */
  fs(key: string): LayerFs {
    return new LayerFs(this.#host, this.#s.get(key, "fs"));
  }

  /**
   * The files of layer `key` addressed by directory path and inode number, for servers
   * that address files as a kernel does (see nodes.ts). ENOENT if there is no such layer.
   *
   * @internal For src/mount: its types are the store's own, not part of the public API.
   */
  nodes(key: string): LayerNodes {
    return new LayerNodes(this.#host, this.#s.get(key, "nodes"));
  }

  /**
   * Holds layer `key` for something that uses it in place (a mount): until the returned
   * release is called, `commit`, `remove` and `transaction` of it fail with EBUSY naming
   * `hold.reason`; a deferred `remove` asks the holder to let go when idle and removes
   * the layer once every hold is released (see holds.ts).
   */
  hold(key: string, hold: LayerHold): () => void {
    return this.#s.holds.add(this.#s.get(key, "hold"), hold);
  }

  /** Hits and misses of the lookup caches of frozen layers (path lookups). */
  cacheStats(): { hits: number; misses: number } {
    return { hits: this.#s.view.cache.hits, misses: this.#s.view.cache.misses };
  }

  /** Size of the base device, the most any layer can hold (dm.basesize). */
  get baseSize(): number {
    return this.#s.catalog.root.baseSize;
  }

  /**
   * thin_delta of two layers: the runs of their devices' blocks that differ (with `same`,
   * that agree too), read off the block maps (see {@linkcode Pool.delta}). A layer's
   * tables and inline files live in metadata, not in its device: this is its file data.
   */
  async delta(left: string, right: string, options: DeltaOptions = {}): Promise<DeltaRange[]> {
    const a = this.#s.get(left, "delta").record.device;
    const b = this.#s.get(right, "delta").record.device;
    return await this.pool.delta(a, b, options);
  }

  /** Mapped, exclusive and shared pool blocks of a layer's device (thin_ls). */
  blockUsage(key: string): { device: DeviceId; mapped: number; exclusive: number; shared: number } {
    const device = this.#s.get(key, "usage").record.device;
    const { mapped, exclusive, shared } = this.pool.usage(device);
    return { device, mapped, exclusive, shared };
  }

  /**
   * Repairs what {@linkcode fsck} finds (see repair.ts: derived metadata is rebuilt in every
   * layer, what cannot be derived is dropped, layers whose parent is missing go) and
   * commits; returns one line per change. What it cannot repair, fsck still reports.
   */
  repair(): Promise<string[]> {
    const s = this.#s;
    return s.mutate("repair", async () => {
      const { changes, changed, drop } = await repairLayers(this.pool, this.#host, [...s.layers.values()], {
        orphans: s.orphans, baseDevice: s.catalog.root.baseDevice,
      });
      const live = new Set(this.pool.devices().map((d) => d.id));
      for (const layer of drop) {
        if (live.has(layer.record.device)) await this.pool.deleteDevice(layer.record.device);
        s.orphans.delete(layer);
        s.unregister(layer);
      }
      for (const layer of changed) s.catalog.markDirty(layer);
      if (s.catalog.hasChanges || drop.length > 0 || changes.length > 0) await s.commit();
      return changes;
    });
  }

  /** The problems {@linkcode fsck} finds, one line each; empty when the store is consistent. */
  async check(): Promise<string[]> {
    return (await this.fsck()).problems;
  }

  /** Checks the store against its pool: blocks in use, link counts, dangling entries. */
  fsck(): Promise<FsckReport> {
    const s = this.#s;
    return s.lock.write(() => {
      s.checkOpen("fsck");
      return checkStore(this.pool, s.view, [...s.layers.values()], s.catalog.root.baseDevice, s.orphans);
    });
  }
}
