/**
 * `mount(store, key, dir)`: one layer on its own FUSE connection at `dir`, the layer's
 * root as the mount's root. Active layers mount read-write (unless `readOnly`), views
 * and committed layers read-only (EROFS). While mounted the layer is held: `commit` and
 * `remove` of it fail with EBUSY saying to unmount first, and a deferred `remove`
 * unmounts lazily and removes the layer when the last user of the mount has gone.
 *
 * @module
 */
import type { LayerStore } from "../layers/store.ts";
import { type LayerMount, LayerServer, type ServeLayerOptions, type ServeOptions } from "./server.ts";

/** Options of {@linkcode mount}. */
export interface MountOptions extends ServeOptions, ServeLayerOptions {}

/** A mounted layer, with its server (for its statistics). */
export interface MountedLayer extends LayerMount {
  /** The connection serving the mount (its statistics, node ids). */
  readonly server: LayerServer;
}

/**
 * Mounts layer `key` of `store` at directory `dir` (which must exist). The serving
 * happens in this process: never touch the mount from this process's own calls (a
 * system call into the mount from the thread that serves it cannot be answered); use
 * child processes. Unmount before closing the store.
 *
 * @example
 * ```ts ignore
 * const m = await mount(store, "ctr-1", "/run/ctr-1/rootfs");
 * spawnSync("sh", ["-c", `echo hi > ${m.path}/hello`]);
 * await m.unmount();
 * ```
 */
export async function mount(store: LayerStore, key: string, dir: string, options: MountOptions = {}): Promise<MountedLayer> {
  const server = await LayerServer.startSingle(store, key, dir, options);
  const readOnly = options.readOnly === true || !store.nodes(key).writable;
  return {
    path: server.path, key, readOnly, server, closed: server.closed,
    unmount: (o) => server.unmount(o),
  };
}
