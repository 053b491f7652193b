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
 * @module
 */
import { hasCode, storeError } from "../common/errors.ts";
import { GiB } from "../common/units.ts";
import { RwLock } from "../common/lock.ts";
import { Pool } from "../pool/pool.ts";
import { type DeviceId, MAX_DEVICE_ID, type ThinDevice } from "../pool/types.ts";
import { PageAllocator } from "./alloc.ts";
import { LookupCache } from "./cache.ts";
import { Catalog, loadLayers, ROOT_FORMAT, ROOT_VERSION, type StoreRoot } from "./catalog.ts";
import { checkStore } from "./fsck.ts";
import { LayerFs } from "./fs.ts";
import type { FsHost } from "./host.ts";
import { newInode, PAGE, S_IFDIR } from "./inode.ts";
import { Layer, type LayerId, type LayerKind } from "./layer.ts";
import { repairLayers } from "./repair.ts";
import { LayerView } from "./resolve.ts";
import { LayerTree } from "./tree.ts";
import type { FsckReport, LayerInfo, LayerOptions, LayerStoreOptions, LayerUpdate, LayerUsage, RemoveOptions } from "./types.ts";
import { compileFilters } from "./filter.ts";
import { layerChanges } from "./changes.ts";
import { decodeBase, encodeBase } from "./journal.ts";
import type { ApplyOptions, ApplyResult } from "../interchange/apply.ts";
import type { CheckoutOptions, CheckoutReport } from "../interchange/checkout.ts";
import { fsTarget } from "../interchange/fstarget.ts";
import type { ImageCatalog, ImageRecord, LayerHost } from "../interchange/host.ts";
import { createImage, type CreateImageOptions, exportImage, type ExportOptions, importImage, type ImportOptions, type ImportResult } from "../interchange/images.ts";
import type { ExportResult } from "../interchange/ociwrite.ts";
import { applyToLayer, checkoutLayer, diffLayer } from "../interchange/operations.ts";
import type { ByteSource } from "../interchange/source.ts";
import { storeHost } from "../interchange/storehost.ts";
import { pull, type PullOptions, type PullResult } from "../registry/pull.ts";
import { push, type PushOptions, type PushResult } from "../registry/push.ts";

/** The name the store commits under in its pool. */
export const PARTICIPANT = "layers";
/** Names of transactions' scratch layers start with this (no user key can: keys are shown, this is not). */
const SCRATCH = "\u0000tx:";

/**
 * Label of an active layer that holds unfinished work (an import's layer being filled):
 * if it is still there at the next open, a crash cut that work short and the store
 * removes it.
 */
export const SCRATCH_LABEL = "thinstack.io/scratch";
/** Store records holding images are named this plus the image's name. */
const IMAGE_RECORD = "image/";
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
  readonly #view: LayerView;
  readonly #lock = new RwLock();
  readonly #layers = new Map<LayerId, Layer>();
  readonly #byName = new Map<string, Layer>();
  readonly #devices = new Map<LayerId, ThinDevice>();
  /** Layers whose parent is missing, kept (parentless) for check and repair when opened with `salvage`. */
  readonly #orphans = new Set<Layer>();
  readonly #catalog: Catalog;
  readonly #host: FsHost;
  #layerHost: LayerHost | undefined;
  #closed = false;
  /** Devices of removed layers not deleted yet (deferred removal). */
  #retired: DeviceId[];
  #nextIno: number;
  #nextLayer: number;
  #nextDevice: number;
  readonly #totalPages: number;
  readonly #pagesPerBlock: number;

  private constructor(pool: Pool, root: StoreRoot, cache: LookupCache) {
    this.pool = pool;
    this.#catalog = new Catalog(pool, root, () => ({
      layers: this.#layers.values(),
      counters: { nextIno: this.#nextIno, nextLayer: this.#nextLayer, nextDevice: this.#nextDevice, retired: this.#retired },
    }));
    this.#view = new LayerView(cache);
    this.#nextIno = root.nextIno;
    this.#nextLayer = root.nextLayer;
    this.#nextDevice = root.nextDevice;
    this.#retired = [...root.retired ?? []];
    this.#totalPages = Math.floor(root.baseSize / PAGE);
    this.#pagesPerBlock = pool.blockSize / PAGE;
    const host: FsHost = {
      view: this.#view,
      nextIno: () => this.#nextIno++,
      data: (layer) => ({ layer, device: this.#device(layer), blockSize: this.pool.blockSize }),
      reading: (layer, syscall, fn) => this.#lock.read(() => {
        this.#checkLayer(layer, syscall);
        return fn();
      }),
      writing: (layer, syscall, path, fn) => this.#lock.write(async () => {
        this.#checkLayer(layer, syscall);
        if (!layer.writable) throw storeError("EROFS", syscall, path, `layer '${layer.record.name}' is ${layer.record.kind === "view" ? "a view" : "committed"} and read-only`);
        if (layer.inTransaction) throw storeError("EBUSY", syscall, path, `layer '${layer.record.name}' is being changed by a transaction (an apply); wait for it to finish`);
        this.#catalog.markDirty(layer);
        try {
          return await fn(new LayerTree(host, layer));
        } catch (e) {
          if (!hasCode(e, "ENOSPC") || this.pool.status().pendingFreeBlocks === 0) throw e;
        }
        // The pool is short of blocks this transaction freed, which a commit makes usable;
        // it does not commit in the middle of an operation, so the store commits here (the
        // failed write changed only what a write that fails may change) and runs it again.
        await this.#commit();
        this.#catalog.markDirty(layer);
        return await fn(new LayerTree(host, layer));
      }),
    };
    this.#host = host;
  }

  /**
   * Opens the store in `dir` at its last commit; with `create`, makes it (and its pool)
   * when there is none. ENOENT when there is none and `create` is not set.
   */
  static async open(dir: string, options: LayerStoreOptions = {}): Promise<LayerStore> {
    let pool: Pool;
    try {
      pool = await Pool.open(dir, { ioThreads: options.ioThreads, resumeDeletions: options.resumeDeletions, readahead: options.readahead });
    } catch (e) {
      if (!hasCode(e, "ENOENT") || !options.create) throw e;
      pool = await Pool.create(dir, {
        dataSize: options.dataSize ?? DEFAULT_DATA_SIZE, blockSize: options.blockSize, metadataSize: options.metadataSize,
        settings: options.settings, ioThreads: options.ioThreads, readahead: options.readahead,
      });
    }
    try {
      return await LayerStore.#load(pool, options);
    } catch (e) {
      await pool.close().catch(() => {});
      throw e;
    }
  }

  static async #load(pool: Pool, options: LayerStoreOptions): Promise<LayerStore> {
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
      const store = new LayerStore(pool, root, cache);
      pool.attach(PARTICIPANT, store.#catalog.participant(() => !store.#lock.writing));
      await pool.createThin(baseDevice, baseSize);
      await store.#lock.write(() => store.#commit());
      return store;
    }
    if (root.format !== ROOT_FORMAT || root.version !== ROOT_VERSION) {
      throw storeError("EINVAL", "open", pool.dir, "the layer store's root record is of a format this build does not read");
    }
    const store = new LayerStore(pool, root, cache);
    await store.#loadLayers(options.salvage === true);
    await store.#catalog.loadRecords();
    pool.attach(PARTICIPANT, store.#catalog.participant(() => !store.#lock.writing));
    await store.#lock.write(async () => {
      let changed = await store.#reapOrphans();
      changed = await store.#reapLeftovers() || changed;
      const live = new Set(pool.devices().map((d) => d.id));
      for (const dev of root.retired ?? []) {
        if (live.has(dev)) await pool.deleteDevice(dev);
        changed = true;
      }
      if (changed) await store.#commit();
    });
    return store;
  }

  async #loadLayers(salvage: boolean): Promise<void> {
    for (const layer of await loadLayers(this.pool, this.#catalog.root, this.#totalPages, this.#pagesPerBlock)) {
      this.#layers.set(layer.id, layer);
      this.#byName.set(layer.record.name, layer);
    }
    for (const layer of this.#layers.values()) {
      if (!layer.record.parent) continue;
      const parent = this.#layers.get(layer.record.parent);
      if (!parent && salvage) {
        this.#orphans.add(layer);
        continue;
      }
      if (!parent) throw storeError("EIO", "open", this.pool.dir, `layer '${layer.record.name}' names parent ${layer.record.parent}, which is missing`);
      layer.parent = parent;
      parent.children++;
    }
  }

  /**
   * Drops what a crash can leave behind: the scratch layers of unfinished transactions
   * (their layer keeps its state from before), and devices no layer names (made for a
   * layer whose creation never committed).
   */
  async #reapLeftovers(): Promise<boolean> {
    let any = false;
    for (const layer of [...this.#layers.values()]) {
      const unfinished = layer.record.kind === "active" && layer.children === 0 && layer.record.labels?.[SCRATCH_LABEL] !== undefined;
      if (!layer.record.name.startsWith(SCRATCH) && !unfinished) continue;
      await this.pool.deleteDevice(layer.record.device).catch(() => {});
      this.#unregister(layer);
      any = true;
    }
    const named = new Set<DeviceId>([this.#catalog.root.baseDevice, ...this.#retired]);
    for (const layer of this.#layers.values()) named.add(layer.record.device);
    for (const { id } of this.pool.devices()) {
      if (named.has(id)) continue;
      await this.pool.deleteDevice(id);
      any = true;
    }
    return any;
  }

  /** Frees inodes that open handles kept alive when the process ended. */
  async #reapOrphans(): Promise<boolean> {
    let any = false;
    for (const layer of this.#layers.values()) {
      if (!layer.writable) continue;
      const tree = new LayerTree(this.#host, layer);
      for (const [ino, inode] of [...layer.tables.inodes]) {
        if (inode.nlink > 0) continue;
        await tree.release(ino);
        this.#catalog.markDirty(layer);
        any = true;
      }
    }
    return any;
  }

  /** Commits the store's changes with the pool. Call under the write lock. */
  async #commit(): Promise<void> {
    await this.#catalog.commit();
    this.#retired = [...this.#catalog.root.retired];
  }

  /** Makes every file change so far durable (a no-op when nothing changed). */
  sync(): Promise<void> {
    return this.#mutate("sync", async () => {
      if (this.#catalog.hasChanges) await this.#commit();
    });
  }

  /** Commits pending changes and closes the store and its pool. A second close does nothing. */
  async close(): Promise<void> {
    await this.#lock.write(async () => {
      if (this.#closed) return;
      if (this.#catalog.hasChanges) await this.#commit();
      this.#closed = true;
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
    return this.#mutate(syscall, async () => {
      checkName(key, syscall);
      if (this.#byName.has(key)) throw storeError("EEXIST", syscall, key, "a layer with this key or name exists; remove it or pick another");
      let parent: Layer | undefined;
      if (parentName) {
        parent = this.#byName.get(parentName);
        if (!parent) throw storeError("ENOENT", syscall, parentName, "no such parent layer");
        if (parent.record.kind !== "committed") {
          throw storeError("EINVAL", syscall, parentName, `the parent is ${parent.record.kind === "view" ? "a view" : "active"}; only committed layers can be parents`);
        }
      }
      this.pool.checkFreeSpace(syscall);
      const device = this.#allocDevice(syscall);
      await this.pool.createSnapshot(device, parent ? parent.record.device : this.#catalog.root.baseDevice);
      const now = Date.now();
      const id = this.#nextLayer++;
      const root = parent ? parent.record.root : this.#nextIno++;
      const layer = new Layer(
        { id, name: key, kind, parent: parent?.id ?? 0, device, root, created: now, updated: now, labels: { ...options?.labels } },
        parent ? parent.alloc.inherit() : PageAllocator.fresh(this.#totalPages, this.#pagesPerBlock),
        parent,
      );
      if (!parent) layer.tables.putInode(root, newInode(S_IFDIR | 0o755, now));
      this.#layers.set(id, layer);
      this.#byName.set(key, layer);
      if (parent) parent.children++;
      this.#catalog.markDirty(layer);
      try {
        await this.#commit();
      } catch (e) {
        this.#unregister(layer);
        await this.pool.deleteDevice(device).catch(() => {});
        throw e;
      }
      return this.#info(layer);
    });
  }

  /**
   * Turns active layer `key` into committed layer `name`; `key` is gone after. The labels
   * become `options.labels` when given. EINVAL for a view, EBUSY while files are open.
   */
  commit(name: string, key: string, options?: LayerOptions): Promise<LayerInfo> {
    return this.#mutate("commit", async () => {
      checkName(name, "commit");
      const layer = this.#get(key, "commit");
      if (layer.record.kind !== "active") throw storeError("EINVAL", "commit", key, `'${key}' is ${layer.record.kind === "view" ? "a view" : "committed"}; only active layers can be committed`);
      if (name !== key && this.#byName.has(name)) throw storeError("EEXIST", "commit", name, "a layer with this name exists");
      if (layer.handles.size > 0) throw storeError("EBUSY", "commit", key, "files of the layer are open; close them first");
      if (layer.inTransaction) throw storeError("EBUSY", "commit", key, "a transaction (an apply) is changing the layer; wait for it to finish");
      const before = layer.record;
      const now = Date.now();
      // A committed layer is finished work: the scratch label does not carry over.
      const { [SCRATCH_LABEL]: _scratch, ...labels } = options?.labels ?? before.labels;
      layer.record = { ...before, name, kind: "committed", created: now, updated: now, labels };
      this.#byName.delete(key);
      this.#byName.set(name, layer);
      layer.recordDirty = true;
      this.#catalog.markDirty(layer);
      try {
        await this.#commit();
      } catch (e) {
        layer.record = before;
        this.#byName.delete(name);
        this.#byName.set(key, layer);
        throw e;
      }
      return this.#info(layer);
    });
  }

  /**
   * Removes a layer and its device: blocks only it held go back to the pool. EBUSY when
   * it has children or open files (nothing changes then). The key or name is free after.
   * With `deferred`, the blocks are freed in the background (the layer is gone at once).
   */
  remove(key: string, options: RemoveOptions = {}): Promise<void> {
    return this.#mutate("remove", async () => {
      const layer = this.#get(key, "remove");
      if (layer.children > 0) throw storeError("EBUSY", "remove", key, `cannot remove: ${layer.children} layer(s) are based on it; remove them first`);
      if (layer.handles.size > 0) throw storeError("EBUSY", "remove", key, "cannot remove: files of the layer are open");
      if (layer.inTransaction) throw storeError("EBUSY", "remove", key, "cannot remove: a transaction (an apply) is changing the layer");
      const device = layer.record.device;
      if (!options.deferred) {
        // The device's deletion and the store's new root switch in with one commit.
        await this.pool.deleteDevice(device);
        this.#unregister(layer);
        await this.#commit();
        return;
      }
      // The root drops the layer first and remembers the device, so a crash before the
      // pool's own deletion commits cannot leave a layer without its device.
      this.#unregister(layer);
      this.#retired.push(device);
      await this.#commit();
      await this.pool.deleteDevice(device, { deferred: true });
    });
  }

  #unregister(layer: Layer): void {
    layer.removed = true;
    this.#layers.delete(layer.id);
    this.#byName.delete(layer.record.name);
    this.#devices.delete(layer.id);
    this.#catalog.forget(layer);
    if (layer.parent) layer.parent.children--;
  }

  /** containerd's `Info` of a layer. ENOENT if there is none. */
  stat(key: string): Promise<LayerInfo> {
    return this.#lock.read(() => this.#info(this.#get(key, "stat")));
  }

  /**
   * Changes labels, as containerd's Update: without field paths the labels are replaced;
   * `labels` replaces them too; `labels.<key>` sets or deletes one. Any other field is
   * immutable: EINVAL.
   */
  update(info: LayerUpdate, ...fieldPaths: string[]): Promise<LayerInfo> {
    return this.#mutate("update", async () => {
      const layer = this.#get(info.name, "update");
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
      this.#catalog.markDirty(layer);
      await this.#commit();
      return this.#info(layer);
    });
  }

  /** Calls `fn` for every layer matching any of `filters` (containerd's filter syntax). */
  async walk(fn: (info: LayerInfo) => void | Promise<void>, ...filters: string[]): Promise<void> {
    const match = compileFilters(filters);
    for (const info of await this.list()) if (match(info)) await fn(info);
  }

  /** Every layer's info. */
  list(): Promise<LayerInfo[]> {
    return this.#lock.read(() => {
      this.#checkOpen("list");
      return [...this.#layers.values()].filter((l) => !l.record.name.startsWith(SCRATCH)).map((l) => this.#info(l));
    });
  }

  /** What the layer alone holds: its own pool blocks and inline data, and its own inodes. */
  usage(key: string): Promise<LayerUsage> {
    return this.#lock.read(() => {
      const layer = this.#get(key, "usage");
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
  async transaction<T>(key: string, fn: (fs: LayerFs) => Promise<T>): Promise<T> {
    const { original, scratch } = await this.#mutate("transaction", async () => {
      const layer = this.#get(key, "transaction");
      if (layer.record.kind !== "active") throw storeError("EINVAL", "transaction", key, `'${key}' is ${layer.record.kind === "view" ? "a view" : "committed"}; only active layers change`);
      if (layer.inTransaction || layer.handles.size > 0) throw storeError("EBUSY", "transaction", key, "the layer has open files or another transaction; close them or wait");
      this.pool.checkFreeSpace("transaction");
      const device = this.#allocDevice("transaction");
      await this.pool.createSnapshot(device, layer.record.device);
      const copy = decodeBase(structuredClone(encodeBase(layer)), this.#totalPages, this.#pagesPerBlock);
      const id = this.#nextLayer++;
      copy.record = { ...copy.record, id, name: `${SCRATCH}${id}:${key}`, device };
      copy.tables.takeDirty(); // a new layer's first commit writes its tables whole
      copy.parent = layer.parent;
      if (copy.parent) copy.parent.children++;
      this.#layers.set(id, copy);
      this.#byName.set(copy.record.name, copy);
      this.#catalog.markDirty(copy);
      layer.inTransaction = true;
      return { original: layer, scratch: copy };
    });
    let result: T;
    try {
      result = await fn(new LayerFs(this.#host, scratch));
      if (scratch.handles.size > 0) throw storeError("EBUSY", "transaction", key, "the transaction left files open; close them before it returns");
    } catch (e) {
      await this.#lock.write(async () => {
        original.inTransaction = false;
        if (this.#closed) return;
        await this.pool.deleteDevice(scratch.record.device);
        this.#unregister(scratch);
        await this.#commit();
      }).catch(() => {});
      throw e;
    }
    await this.#mutate("transaction", async () => {
      original.inTransaction = false;
      // The copy takes the layer's place and its device goes, in one commit.
      await this.pool.deleteDevice(original.record.device);
      this.#unregister(original);
      original.replacedBy = scratch;
      this.#byName.delete(scratch.record.name);
      scratch.record = { ...scratch.record, name: key, updated: Date.now() };
      scratch.recordDirty = true;
      this.#byName.set(key, scratch);
      this.#catalog.markDirty(scratch);
      await this.#commit();
    });
    return result;
  }

  /**
   * Applies a layer tarball (plain or gzip: a path, bytes, a Node stream, an async
   * iterable or a web ReadableStream) to active layer `key` by the OCI rules, all or
   * nothing: on any failure the layer is left as it was.
   *
   * @example
   * ```ts ignore
   * await store.prepare("ctr-1", "sha256:…");
   * const { entries } = await store.apply("ctr-1", "changes.tar.gz");
   * ```
   */
  async apply(key: string, source: ByteSource, options?: ApplyOptions): Promise<ApplyResult> {
    this.#get(key, "apply");
    return await applyToLayer(this.#interchange(), key, source, options);
  }

  /**
   * The changes of layer `key` against its parent as an OCI changeset tar, streamed in a
   * deterministic order (the same layer always gives the same bytes).
   *
   * @example
   * ```ts ignore
   * await pipeline(Readable.from(store.diff("ctr-1")), fs.createWriteStream("ctr-1.tar"));
   * ```
   */
  diff(key: string): AsyncGenerator<Uint8Array> {
    this.#get(key, "diff");
    return diffLayer(this.#interchange(), key);
  }

  /**
   * Imports an OCI image layout (directory or tar) or a `docker save` tar. Layers are
   * named by ChainID, so layers already in the store are skipped; digests are checked as
   * bytes stream in, and a failed import leaves nothing behind.
   *
   * @example
   * ```ts ignore
   * const { name, layers } = await store.importImage("busybox.tar", { name: "busybox" });
   * await store.prepare("ctr-1", layers.at(-1));
   * ```
   */
  async importImage(path: string, options?: ImportOptions): Promise<ImportResult> {
    this.#checkOpen("import");
    return await importImage(this.#interchange(), this.#images(), path, options);
  }

  /**
   * Pulls image `ref` (`host[:port]/name[:tag|@digest]`) from its registry: layers the
   * store has are skipped, the others stream into their layers with digests checked;
   * a failed pull leaves nothing behind. See src/registry/pull.ts.
   *
   * @example
   * ```ts ignore
   * const { name, layers } = await store.pull("127.0.0.1:5000/app:1", { plainHttp: true });
   * ```
   */
  async pull(ref: string, options?: PullOptions): Promise<PullResult> {
    this.#checkOpen("pull");
    return await pull(this.#interchange(), this.#images(), ref, options);
  }

  /**
   * Pushes image `name` to `ref` (`host[:port]/name:tag`): layers the registry has or can
   * mount are not sent, the others are exported (gzip) as they upload. See src/registry/push.ts.
   *
   * @example
   * ```ts ignore
   * const { manifestDigest } = await store.push("app:1", "127.0.0.1:5000/app:1", { plainHttp: true });
   * ```
   */
  async push(name: string, ref: string, options?: PushOptions): Promise<PushResult> {
    this.#checkOpen("push");
    return await push(this.#interchange(), this.#images(), name, ref, options);
  }

  /** The images in the store, by name. */
  async images(): Promise<ImageRecord[]> {
    return await this.#images().listImages();
  }

  /** The image named `name`; ENOENT if there is none. */
  async image(name: string): Promise<ImageRecord> {
    const record = await this.#images().getImage(name);
    if (!record) throw storeError("ENOENT", "image", name, "no such image; see images() for the ones there are");
    return record;
  }

  /**
   * Records committed layer `top` and the layers below it as image `name` (replacing an
   * image of that name), as `docker commit` does: each layer is diffed once for its DiffID,
   * so the record's config digest is the one {@linkcode exportImage} writes. The config
   * defaults to linux/amd64 with no `created` time. EINVAL unless `top` is committed.
   *
   * @example
   * ```ts ignore
   * await store.commit("app", "app-build");
   * await store.createImage("app:1", "app", { config: { created: "2026-01-01T00:00:00Z" } });
   * await store.exportImage("app:1", "out/app");
   * ```
   */
  async createImage(name: string, top: string, options?: CreateImageOptions): Promise<ImageRecord> {
    const layers: string[] = [];
    await this.#lock.read(async () => {
      const layer = this.#get(top, "image");
      if (layer.record.kind !== "committed") throw storeError("EINVAL", "image", top, `'${top}' is ${layer.record.kind}; an image is made of committed layers`);
      for (let l: Layer | undefined = layer; l; l = l.parent) layers.unshift(l.record.name);
    });
    return await createImage(this.#interchange(), this.#images(), name, layers, options);
  }

  /** Forgets image `name` (its layers stay until removed). ENOENT if there is none. */
  removeImage(name: string): Promise<void> {
    return this.#mutate("rmi", async () => {
      if (this.#catalog.record(IMAGE_RECORD + name) === undefined) throw storeError("ENOENT", "rmi", name, "no such image");
      this.#catalog.setRecord(IMAGE_RECORD + name, undefined);
      await this.#commit();
    });
  }

  /**
   * Writes image `name` as an OCI layout directory (`format: "oci"`, the default) or a
   * `docker save` tar, with digests, sizes and DiffIDs of the layers' diffs.
   *
   * @example
   * ```ts ignore
   * await store.exportImage("busybox", "out/busybox-oci");
   * ```
   */
  async exportImage(name: string, path: string, options?: ExportOptions): Promise<ExportResult> {
    this.#checkOpen("export");
    return await exportImage(this.#interchange(), this.#images(), name, path, options);
  }

  /**
   * Writes layer `key`'s merged tree to host directory `dir`: what a runtime needs as a
   * rootfs (modes, owners as root, links, devices where permitted, times).
   *
   * @example
   * ```ts ignore
   * await store.checkout("ctr-1", "/run/ctr-1/rootfs");
   * ```
   */
  async checkout(key: string, dir: string, options?: CheckoutOptions): Promise<CheckoutReport> {
    this.#get(key, "checkout");
    return await checkoutLayer(this.#interchange(), key, dir, options);
  }

  /** The store as the interchange code sees it, with the store's own changes and transactions. */
  #interchange(): LayerHost {
    return this.#layerHost ??= storeHost(this, {
      changes: (name) => {
        const layer = this.#get(name, "diff");
        return layerChanges(layer, new LayerFs(this.#host, layer), layer.parent ? new LayerFs(this.#host, layer.parent) : undefined);
      },
      transaction: (key, fn) => this.transaction(key, (fs) => fn(fsTarget(fs))),
    });
  }

  #images(): ImageCatalog {
    return {
      getImage: (name) => Promise.resolve(this.#catalog.record(IMAGE_RECORD + name) as ImageRecord | undefined),
      putImage: (record) => this.#mutate("import", async () => {
        this.#catalog.setRecord(IMAGE_RECORD + record.name, record);
        await this.#commit();
      }),
      listImages: () => Promise.resolve(
        this.#catalog.records().filter(([n]) => n.startsWith(IMAGE_RECORD)).map(([, r]) => r as ImageRecord)
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
      ),
    };
  }

  /** The files of layer `key`, shaped after `node:fs/promises`. ENOENT if there is no such layer. */
  fs(key: string): LayerFs {
    return new LayerFs(this.#host, this.#get(key, "fs"));
  }

  /** Hits and misses of the lookup caches of frozen layers (path lookups). */
  cacheStats(): { hits: number; misses: number } {
    return { hits: this.#view.cache.hits, misses: this.#view.cache.misses };
  }

  /** Size of the base device, the most any layer can hold (dm.basesize). */
  get baseSize(): number {
    return this.#catalog.root.baseSize;
  }

  /** Mapped, exclusive and shared pool blocks of a layer's device (thin_ls). */
  blockUsage(key: string): { device: DeviceId; mapped: number; exclusive: number; shared: number } {
    const device = this.#get(key, "usage").record.device;
    const { mapped, exclusive, shared } = this.pool.usage(device);
    return { device, mapped, exclusive, shared };
  }

  /**
   * Repairs what {@linkcode fsck} finds (see repair.ts: derived metadata is rebuilt in every
   * layer, what cannot be derived is dropped, layers whose parent is missing go) and
   * commits; returns one line per change. What it cannot repair, fsck still reports.
   */
  repair(): Promise<string[]> {
    return this.#mutate("repair", async () => {
      const { changes, changed, drop } = await repairLayers(this.pool, this.#host, [...this.#layers.values()], {
        orphans: this.#orphans, baseDevice: this.#catalog.root.baseDevice,
      });
      const live = new Set(this.pool.devices().map((d) => d.id));
      for (const layer of drop) {
        if (live.has(layer.record.device)) await this.pool.deleteDevice(layer.record.device);
        this.#orphans.delete(layer);
        this.#unregister(layer);
      }
      for (const layer of changed) this.#catalog.markDirty(layer);
      if (this.#catalog.hasChanges || drop.length > 0 || changes.length > 0) await this.#commit();
      return changes;
    });
  }

  /** The problems {@linkcode fsck} finds, one line each; empty when the store is consistent. */
  async check(): Promise<string[]> {
    return (await this.fsck()).problems;
  }

  /** Checks the store against its pool: blocks in use, link counts, dangling entries. */
  fsck(): Promise<FsckReport> {
    return this.#lock.write(() => {
      this.#checkOpen("fsck");
      return checkStore(this.pool, this.#view, [...this.#layers.values()], this.#catalog.root.baseDevice, this.#orphans);
    });
  }

  #info(layer: Layer): LayerInfo {
    const r = layer.record;
    const parent = r.parent ? this.#layers.get(r.parent)?.record.name ?? "" : "";
    return { name: r.name, parent, kind: r.kind, created: new Date(r.created), updated: new Date(r.updated), labels: { ...r.labels } };
  }

  #get(key: string, syscall: string): Layer {
    this.#checkOpen(syscall);
    const layer = typeof key === "string" ? this.#byName.get(key) : undefined;
    if (!layer) throw storeError("ENOENT", syscall, key, "no such layer");
    return layer;
  }

  #device(layer: Layer): ThinDevice {
    let dev = this.#devices.get(layer.id);
    if (!dev) this.#devices.set(layer.id, dev = this.pool.device(layer.record.device));
    return dev;
  }

  #allocDevice(syscall: string): DeviceId {
    const used = new Set(this.pool.devices().map((d) => d.id));
    for (let tries = 0; tries <= MAX_DEVICE_ID; tries++) {
      const id = this.#nextDevice;
      this.#nextDevice = id >= MAX_DEVICE_ID ? 1 : id + 1;
      if (!used.has(id) && id !== this.#catalog.root.baseDevice) return id;
    }
    throw storeError("ENOSPC", syscall, this.pool.dir, "every one of the 16,777,216 device ids is in use");
  }

  #mutate<T>(syscall: string, fn: () => Promise<T>): Promise<T> {
    return this.#lock.write(() => {
      this.#checkOpen(syscall);
      return fn();
    });
  }

  #checkOpen(syscall: string): void {
    if (this.#closed) throw storeError("EBADF", syscall, this.pool.dir, "the layer store is closed; open it again");
  }

  #checkLayer(layer: Layer, syscall: string): void {
    this.#checkOpen(syscall);
    if (layer.removed) throw storeError("ENOENT", syscall, layer.record.name, "the layer was removed");
  }
}

function checkName(name: string, syscall: string): void {
  if (typeof name !== "string" || name === "") throw storeError("EINVAL", syscall, String(name), "a layer key or name must be a non-empty string");
  // Names of this form are the store's own scratch layers, dropped at the next open.
  if (name.startsWith(SCRATCH)) throw storeError("EINVAL", syscall, JSON.stringify(name), "a layer key or name must not start with a NUL character");
}
