/**
 * Holds on layers: something outside the store uses a layer in place (a mount serves its
 * files to the kernel), so the layer must not change identity under it. While a layer is
 * held, `commit`, `remove` and `transaction` of it fail with EBUSY, saying what holds it;
 * a `remove` with `deferred` instead asks each holder to let go once its last user has
 * gone (a mount unmounts lazily) and removes the layer when the last hold is released,
 * as devicemapper's deferred removal and containerd's asynchronous remove do.
 *
 * A holder may also hear of the changes made to the layer through the store's path API
 * (`store.fs(key)` and its file handles) while it holds it: a mount passes them on to
 * the kernel, whose caches of the layer would otherwise go stale. Changes a holder makes
 * itself (a mount's requests, through `LayerNodes`) are not reported back to it.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { Ino, Inode } from "./inode.ts";
import type { Layer } from "./layer.ts";
import type { LayerPath } from "./path.ts";

/** A name a path-API call touched, as the layer had it just before the change and has it after. */
export interface ChangedName {
  /** The canonical directory holding the name (the entry itself for the root, whose `name` is ""). */
  readonly dir: LayerPath;
  /** That directory's inode. */
  readonly dirIno: Ino;
  readonly name: string;
  /** The inode the name led to before the change (0 for nothing), and that inode as it was. */
  readonly before: Ino;
  readonly was: Inode | undefined;
  /** The inode it leads to after the change (0 for nothing). */
  readonly after: Ino;
}

/**
 * A change made through the store's path API to a held layer: the names it touched
 * (both of a rename or a link; a directory that moved, with the paths below it, is
 * `moved`), or the inode a file handle wrote or truncated.
 */
export type LayerChange =
  | { readonly names: readonly ChangedName[]; readonly moved?: { readonly from: LayerPath; readonly to: LayerPath } }
  | { readonly ino: Ino };

/** Something that uses a layer in place. */
export interface LayerHold {
  /** What holds the layer, for error messages: `mounted at '/run/ctr-1/rootfs'`. */
  readonly reason: string;
  /**
   * A deferred `remove` of the layer: let go of it once its last user is gone (then
   * release the hold). Without it, a deferred remove fails with EBUSY like any other.
   */
  releaseWhenIdle?(): void;
  /**
   * A change made to the layer through the store's path API, told once the store's lock
   * is released; the call that made it returns when the promise settles, so keep it
   * bounded. Never called for changes made through `store.nodes` (the holder's own).
   *
   * @internal For src/mount: the change's types are the store's own, not part of the public API.
   */
  changed?(change: LayerChange): Promise<void> | void;
}

/**
 * The holds of one store.
 *
 * @example
 * ```ts ignore
 * const release = holds.add(layer, { reason: "mounted at '/mnt'" });
 * holds.check(layer, "commit"); // EBUSY: ... mounted at '/mnt'; unmount it first
 * release();
 * ```
 */
export class LayerHolds {
  readonly #holds = new Map<Layer, Set<LayerHold>>();
  /** Layers a deferred remove is waiting on, with what removes them once free. */
  readonly #removals = new Map<Layer, () => Promise<void>>();

  /** Adds a hold; returns its release (calling it twice does nothing). */
  add(layer: Layer, hold: LayerHold): () => void {
    let set = this.#holds.get(layer);
    if (!set) this.#holds.set(layer, set = new Set());
    set.add(hold);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      set.delete(hold);
      if (set.size > 0) return;
      this.#holds.delete(layer);
      const remove = this.#removals.get(layer);
      this.#removals.delete(layer);
      // The store may be closed or the layer gone by now: then there is nothing to do.
      remove?.().catch(() => {});
    };
  }

  /** True while anything holds `layer`. */
  held(layer: Layer): boolean {
    return (this.#holds.get(layer)?.size ?? 0) > 0;
  }

  /** True while a holder of `layer` wants to hear of its path-API changes. */
  watching(layer: Layer): boolean {
    const set = this.#holds.get(layer);
    if (!set) return false;
    for (const h of set) if (h.changed) return true;
    return false;
  }

  /** Tells `layer`'s holders of `change`; settles when they all have passed it on (their failures are theirs). */
  async changed(layer: Layer, change: LayerChange): Promise<void> {
    const set = this.#holds.get(layer);
    if (!set) return;
    await Promise.all([...set].map(async (h) => {
      try {
        await h.changed?.(change);
      } catch {
        // A holder that cannot pass a change on (its connection ended) leaves the change made.
      }
    }));
  }

  /** EBUSY, naming the holders, when `layer` is held. */
  check(layer: Layer, syscall: string): void {
    const set = this.#holds.get(layer);
    if (!set || set.size === 0) return;
    const what = [...set].map((h) => h.reason).join(", ");
    const pending = this.#removals.has(layer) ? " (a deferred remove is waiting for it)" : "";
    throw storeError("EBUSY", syscall, layer.record.name, `the layer is ${what}${pending}; unmount it first`);
  }

  /**
   * For a deferred remove of a held layer: asks every holder to let go when idle and
   * runs `remove` once the last one has. EBUSY (as {@linkcode check}) when a holder cannot.
   */
  removeWhenReleased(layer: Layer, remove: () => Promise<void>): void {
    const set = this.#holds.get(layer);
    if (!set || set.size === 0) return;
    if ([...set].some((h) => !h.releaseWhenIdle)) this.check(layer, "remove");
    this.#removals.set(layer, remove);
    for (const h of [...set]) h.releaseWhenIdle!();
  }
}
