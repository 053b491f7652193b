/**
 * A {@linkcode LayerHost} over any store with containerd's snapshotter calls and an
 * fs-shaped view of each layer — the layer store's `prepare`, `commit`, `remove`,
 * `stat` and `fs(key)` — for the parts the store does not provide natively: the diff's
 * change list falls back to walking a layer beside its parent, and apply runs in place
 * unless the store gives a transaction.
 *
 * @module
 */
import { hasCode } from "../common/errors.ts";
import { type FsLike, fsTarget } from "./fstarget.ts";
import type { LayerHost } from "./host.ts";
import type { LayerTarget } from "./target.ts";
import type { Change, LayerSource } from "./view.ts";
import { walkChanges } from "./walkdiff.ts";

/** The store calls used. */
export interface SnapshotterLike {
  prepare(key: string, parent?: string, options?: { labels?: Record<string, string> }): Promise<unknown>;
  commit(name: string, key: string): Promise<unknown>;
  remove(key: string): Promise<unknown>;
  /** containerd's `snapshots.Info`: `parent` is `""` for none. */
  stat(key: string): Promise<{ kind: string; parent: string }>;
  fs(key: string): FsLike;
}

/** What a store may add natively. */
export interface StoreHostOptions {
  /** The layer's own changes (else: a walk beside its parent). */
  changes?(name: string): AsyncIterable<Change>;
  /** An all-or-nothing run on active layer `key` (else: in place, not atomic). */
  transaction?<T>(key: string, fn: (target: LayerTarget) => Promise<T>): Promise<T>;
  /** Records an opaque directory (see `LayerTarget.markOpaque`). */
  markOpaque?(key: string, dir: string): Promise<void>;
  /**
   * The labels that make an active layer one the store removes at its next open (see
   * `LayerHost.prepare`'s `scratch`); without them a scratch layer is an ordinary one,
   * and a crash leaves it for the caller to remove.
   */
  scratchLabels?: Record<string, string>;
}

/**
 * A layer host for `store`.
 *
 * @example
 * ```ts ignore
 * const host = storeHost(layerStore);
 * await importImage(host, catalog, "busybox.tar");
 * ```
 */
export function storeHost(store: SnapshotterLike, options: StoreHostOptions = {}): LayerHost {
  const target = (key: string): LayerTarget => {
    const t = fsTarget(store.fs(key));
    if (options.markOpaque) t.markOpaque = (dir) => options.markOpaque!(key, dir);
    return t;
  };
  return {
    async exists(name) {
      try {
        return (await store.stat(name)).kind === "committed";
      } catch (e) {
        if (hasCode(e, "ENOENT")) return false;
        throw e;
      }
    },
    async prepare(key, parent, how) {
      const scratch = how?.scratch ? options.scratchLabels : undefined;
      await store.prepare(key, parent, scratch ? { labels: { ...scratch } } : undefined);
    },
    async commit(name, key) {
      await store.commit(name, key);
    },
    async remove(name) {
      await store.remove(name);
    },
    target,
    view: (name) => fsTarget(store.fs(name)),
    source(name): LayerSource {
      const view = fsTarget(store.fs(name));
      const changes = options.changes
        ? () => options.changes!(name)
        : async function* () {
          const { parent } = await store.stat(name);
          yield* walkChanges(parent ? fsTarget(store.fs(parent)) : undefined, view);
        };
      return { ...view, changes };
    },
    transaction: options.transaction ?? ((key, fn) => fn(target(key))),
  };
}
