/**
 * What a layer's file system view needs from its store: locking, the checks every call
 * makes (store open, layer present, layer writable), and the tree and I/O contexts.
 *
 * @module
 */
import type { LayerChange } from "./holds.ts";
import type { Layer } from "./layer.ts";
import type { LayerTree, TreeHost } from "./tree.ts";

/**
 * The store as its file system views use it.
 *
 * @example
 * ```ts ignore
 * const size = await host.reading(layer, "stat", () => host.view.resolve(layer, p, true, "stat").inode?.size);
 * ```
 */
export interface FsHost extends TreeHost {
  /** Runs `fn` under the store's shared lock, after checking that the store and the layer are open. */
  reading<T>(layer: Layer, syscall: string, fn: () => Promise<T> | T): Promise<T>;
  /**
   * Runs `fn` under the store's exclusive lock with a tree to change; EROFS unless the
   * layer is active. The layer's changes are written by the next commit (`sync`).
   */
  writing<T>(layer: Layer, syscall: string, path: string | undefined, fn: (tree: LayerTree) => Promise<T> | T): Promise<T>;
  /** True when something holding `layer` (a mount) wants to hear of its path-API changes (see holds.ts). */
  watched(layer: Layer): boolean;
  /** Tells those holders of a change, after `writing` has released the lock; settles when they have passed it on. */
  changed(layer: Layer, change: LayerChange): Promise<void>;
}
