/**
 * What one open layer store holds, shared by its parts (store.ts, fshost.ts,
 * transaction.ts, reap.ts): the pool, the lock, the catalog, every layer by id and by
 * name, and the id counters. Nothing outside src/layers sees it.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { RwLock } from "../common/lock.ts";
import type { Pool } from "../pool/pool.ts";
import { type DeviceId, MAX_DEVICE_ID, type ThinDevice } from "../pool/types.ts";
import type { LookupCache } from "./cache.ts";
import { Catalog, type StoreRoot } from "./catalog.ts";
import { LayerHolds } from "./holds.ts";
import { PAGE } from "./inode.ts";
import type { Layer, LayerId } from "./layer.ts";
import { LayerView } from "./resolve.ts";
import type { LayerInfo } from "./types.ts";

/** Names of transactions' scratch layers start with this (no user key can: keys are shown, this is not). */
export const SCRATCH = "\u0000tx:";

/**
 * Label of an active layer that holds unfinished work (an import's layer being filled):
 * if it is still there at the next open, a crash cut that work short and the store
 * removes it.
 */
export const SCRATCH_LABEL = "thinstack.io/scratch";

/** An open store's state. */
export class StoreState {
  readonly lock = new RwLock();
  readonly view: LayerView;
  readonly catalog: Catalog;
  readonly layers = new Map<LayerId, Layer>();
  readonly byName = new Map<string, Layer>();
  readonly #devices = new Map<LayerId, ThinDevice>();
  /** Layers whose parent is missing, kept (parentless) for check and repair when opened with `salvage`. */
  readonly orphans = new Set<Layer>();
  /** What uses layers in place (mounts): see holds.ts. */
  readonly holds = new LayerHolds();
  /** Devices of removed layers not deleted yet (deferred removal). */
  retired: DeviceId[];
  nextIno: number;
  nextLayer: number;
  nextDevice: number;
  /** 4 KiB pages in a layer's device (the base size), and per pool block. */
  readonly totalPages: number;
  readonly pagesPerBlock: number;
  closed = false;

  constructor(readonly pool: Pool, root: StoreRoot, cache: LookupCache) {
    this.catalog = new Catalog(pool, root, () => ({
      layers: this.layers.values(),
      counters: { nextIno: this.nextIno, nextLayer: this.nextLayer, nextDevice: this.nextDevice, retired: this.retired },
    }));
    this.view = new LayerView(cache);
    this.nextIno = root.nextIno;
    this.nextLayer = root.nextLayer;
    this.nextDevice = root.nextDevice;
    this.retired = [...root.retired ?? []];
    this.totalPages = Math.floor(root.baseSize / PAGE);
    this.pagesPerBlock = pool.blockSize / PAGE;
  }

  /** Commits the store's changes with the pool. Call under the write lock. */
  async commit(): Promise<void> {
    await this.catalog.commit();
    this.retired = [...this.catalog.root.retired];
  }

  /** Runs `fn` under the write lock once the store is known to be open. */
  mutate<T>(syscall: string, fn: () => Promise<T>): Promise<T> {
    return this.lock.write(() => {
      this.checkOpen(syscall);
      return fn();
    });
  }

  /** The layer named `key`; ENOENT if there is none. */
  get(key: string, syscall: string): Layer {
    this.checkOpen(syscall);
    const layer = typeof key === "string" ? this.byName.get(key) : undefined;
    if (!layer) throw storeError("ENOENT", syscall, key, "no such layer");
    return layer;
  }

  /** Adds a layer (a new one, or one loaded at open). */
  register(layer: Layer): void {
    this.layers.set(layer.id, layer);
    this.byName.set(layer.record.name, layer);
  }

  /** Takes a layer out of the store (its device is the caller's business). */
  unregister(layer: Layer): void {
    layer.removed = true;
    this.layers.delete(layer.id);
    this.byName.delete(layer.record.name);
    this.#devices.delete(layer.id);
    this.catalog.forget(layer);
    if (layer.parent) layer.parent.children--;
  }

  /** The thin device of `layer`. */
  device(layer: Layer): ThinDevice {
    let dev = this.#devices.get(layer.id);
    if (!dev) this.#devices.set(layer.id, dev = this.pool.device(layer.record.device));
    return dev;
  }

  /** A device id no device has. */
  allocDevice(syscall: string): DeviceId {
    const used = new Set(this.pool.devices().map((d) => d.id));
    for (let tries = 0; tries <= MAX_DEVICE_ID; tries++) {
      const id = this.nextDevice;
      this.nextDevice = id >= MAX_DEVICE_ID ? 1 : id + 1;
      if (!used.has(id) && id !== this.catalog.root.baseDevice) return id;
    }
    throw storeError("ENOSPC", syscall, this.pool.dir, "every one of the 16,777,216 device ids is in use");
  }

  /** containerd's `Info` of a layer. */
  info(layer: Layer): LayerInfo {
    const r = layer.record;
    const parent = r.parent ? this.layers.get(r.parent)?.record.name ?? "" : "";
    return { name: r.name, parent, kind: r.kind, created: new Date(r.created), updated: new Date(r.updated), labels: { ...r.labels } };
  }

  /** EBADF once the store is closed. */
  checkOpen(syscall: string): void {
    if (this.closed) throw storeError("EBADF", syscall, this.pool.dir, "the layer store is closed; open it again");
  }

  /** EBADF once the store is closed, ENOENT once the layer is removed. */
  checkLayer(layer: Layer, syscall: string): void {
    this.checkOpen(syscall);
    if (layer.removed) throw storeError("ENOENT", syscall, layer.record.name, "the layer was removed");
  }
}

/** EINVAL for a key or name a layer cannot have. */
export function checkName(name: string, syscall: string): void {
  if (typeof name !== "string" || name === "") throw storeError("EINVAL", syscall, String(name), "a layer key or name must be a non-empty string");
  // Names of this form are the store's own scratch layers, dropped at the next open.
  if (name.startsWith(SCRATCH)) throw storeError("EINVAL", syscall, JSON.stringify(name), "a layer key or name must not start with a NUL character");
}
