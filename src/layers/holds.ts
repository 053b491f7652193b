/**
 * Holds on layers: something outside the store uses a layer in place (a mount serves its
 * files to the kernel), so the layer must not change identity under it. While a layer is
 * held, `commit`, `remove` and `transaction` of it fail with EBUSY, saying what holds it;
 * a `remove` with `deferred` instead asks each holder to let go once its last user has
 * gone (a mount unmounts lazily) and removes the layer when the last hold is released,
 * as devicemapper's deferred removal and containerd's asynchronous remove do.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { Layer } from "./layer.ts";

/** Something that uses a layer in place. */
export interface LayerHold {
  /** What holds the layer, for error messages: `mounted at '/run/ctr-1/rootfs'`. */
  readonly reason: string;
  /**
   * A deferred `remove` of the layer: let go of it once its last user is gone (then
   * release the hold). Without it, a deferred remove fails with EBUSY like any other.
   */
  releaseWhenIdle?(): void;
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
