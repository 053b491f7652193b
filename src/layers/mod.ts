/**
 * The layer store: containerd-style snapshots (active layers, views, committed image
 * layers) over a thin pool, each layer's files reachable through an object shaped after
 * `node:fs/promises`.
 *
 * @example
 * ```ts ignore
 * import { LayerStore } from "./mod.ts";
 * const store = await LayerStore.open("/tmp/layers", { create: true, dataSize: 2 ** 30 });
 * await store.prepare("base-extract");
 * await store.fs("base-extract").writeFile("/etc/os-release", "ID=demo\n");
 * await store.commit("base", "base-extract");
 * await store.close();
 * ```
 *
 * @module
 */
export { LayerStore, PARTICIPANT, SCRATCH_LABEL } from "./store.ts";
export { LayerFs, type FileData, type ReadFileOptions, type TimeLike, type WriteFileOptions } from "./fs.ts";
export { LayerFileHandle } from "./filehandle.ts";
export { LayerDirent, LayerStats } from "./stats.ts";
/** Bounds of the lookup caches (see `LayerStoreOptions.cache`). */
export type { CacheOptions } from "./cache.ts";
/** An inode number, unique across a store (`Stats.ino`). */
export type { Ino } from "./inode.ts";
export { INLINE_MAX, PAGE, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from "./inode.ts";
/** The store's public shapes. */
/** One change of a layer against its parent (`LayerStore.changes`). */
export type { LayerChange } from "./changes.ts";
export type { FsckReport, Labels, LayerInfo, LayerKind, LayerOptions, LayerStoreOptions, LayerUpdate, LayerUsage, RemoveOptions } from "./types.ts";
export type { LayerHold } from "./holds.ts";
