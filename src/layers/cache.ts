/**
 * Bounded caches of lookups through the frozen part of a chain (committed layers and
 * views). What a frozen layer sees never changes, so entries are never invalidated;
 * layer ids are never reused, so a removed layer's entries are merely dead weight
 * until they are evicted.
 *
 * @module
 */
import { LRUCache } from "lru-cache";
import type { Ino, Inode } from "./inode.ts";
import type { LayerId } from "./layer.ts";
import type { LayerPath } from "./path.ts";

/** Bounds of the lookup caches. */
export interface CacheOptions {
  /** Path lookups and inode lookups kept, each. Default 100,000. */
  entries?: number;
  /** Merged directory listings kept. Default 1,024. */
  listings?: number;
}

/**
 * The caches, keyed by (frozen layer, path) and (frozen layer, inode).
 *
 * @example
 * ```ts
 * import { LookupCache } from "./cache.ts";
 * const cache = new LookupCache({ entries: 1000 });
 * cache.setEntry(3, "/etc/hosts", 42);
 * console.log(cache.entry(3, "/etc/hosts")); // 42
 * ```
 */
export class LookupCache {
  readonly #entries: LRUCache<string, number>;
  readonly #inodes: LRUCache<string, Inode | false>;
  readonly #listings: LRUCache<string, ReadonlyMap<string, Ino>>;
  hits = 0;
  misses = 0;

  constructor(options: CacheOptions = {}) {
    this.#entries = new LRUCache({ max: Math.max(1, options.entries ?? 100_000) });
    this.#inodes = new LRUCache({ max: Math.max(1, options.entries ?? 100_000) });
    this.#listings = new LRUCache({ max: Math.max(1, options.listings ?? 1024) });
  }

  /** The inode `path` names as seen from frozen `layer` (0: nothing), or undefined if not cached. */
  entry(layer: LayerId, path: LayerPath): Ino | undefined {
    const v = this.#entries.get(`${layer}:${path}`);
    if (v === undefined) this.misses++;
    else this.hits++;
    return v;
  }

  setEntry(layer: LayerId, path: LayerPath, ino: Ino): void {
    this.#entries.set(`${layer}:${path}`, ino);
  }

  /** The inode as seen from frozen `layer` (false: none), or undefined if not cached. */
  inode(layer: LayerId, ino: Ino): Inode | false | undefined {
    return this.#inodes.get(`${layer}:${ino}`);
  }

  setInode(layer: LayerId, ino: Ino, inode: Inode | false): void {
    this.#inodes.set(`${layer}:${ino}`, inode);
  }

  /** The merged listing of `dir` as seen from frozen `layer`, if cached. */
  listing(layer: LayerId, dir: LayerPath): ReadonlyMap<string, Ino> | undefined {
    return this.#listings.get(`${layer}:${dir}`);
  }

  setListing(layer: LayerId, dir: LayerPath, names: ReadonlyMap<string, Ino>): void {
    this.#listings.set(`${layer}:${dir}`, names);
  }

  /** Forgets everything: for a repair, the one thing that changes frozen layers. */
  clear(): void {
    this.#entries.clear();
    this.#inodes.clear();
    this.#listings.clear();
  }
}
