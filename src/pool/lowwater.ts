/**
 * Low water marks (dm-thin's `low_water_mark`, watched by dm-event): free data space and
 * free metadata space each have a mark, a percentage of their total. When free space falls
 * under a mark the pool emits one `lowWater` event ("below"); it emits no more for that
 * space until free space is back at or over the mark ("above"), which re-arms it, as a
 * dm-thin pool re-arms its event when it is resumed after being extended. Autoextend does
 * not hide the warning: a write checks the marks before the pool grows, so a pool that
 * grows past its mark logs "below", "autoextend", "above".
 *
 * A mark of 0 never fires. Which spaces are under their marks is stored with the pool at
 * each commit, so a pool that stays under a mark across many short-lived processes (CLI
 * commands) warns once, not once per process.
 *
 * @module
 */
import type { PoolEvents } from "./events.ts";
import type { LowWaterEvent, PoolSettings } from "./types.ts";

/** What the marks are compared with: free data blocks and free metadata bytes. */
export interface SpaceUse {
  data: { used: number; total: number };
  metadata: { used: number; total: number };
}

/** The armed state of one pool's two marks. */
export class LowWater {
  readonly #below: { data: boolean; metadata: boolean };
  readonly #changed: () => void;

  /**
   * `below` is the state to start from and to keep up to date (the pool stores it with
   * each commit); `changed` is told when it changes, so that the next commit stores it.
   */
  constructor(readonly events: PoolEvents, below: { data: boolean; metadata: boolean }, changed: () => void) {
    this.#below = below;
    this.#changed = changed;
  }

  /** Emits an event for each mark that `use` has crossed since the last check. */
  check(use: SpaceUse, settings: PoolSettings): void {
    this.#one("data", use.data, settings.lowWaterMarkPercent);
    this.#one("metadata", use.metadata, settings.metadataLowWaterMarkPercent);
  }

  #one(space: LowWaterEvent["space"], { used, total }: { used: number; total: number }, mark: number): void {
    const free = Math.max(0, total - used);
    const below = free * 100 < total * mark;
    if (below === this.#below[space]) return;
    this.#below[space] = below;
    this.#changed();
    this.events.emit("lowWater", {
      space, crossed: below ? "below" : "above", markPercent: mark,
      freePercent: total > 0 ? Math.floor(free * 10_000 / total) / 100 : 0, free, used, total,
      unit: space === "data" ? "blocks" : "bytes",
    });
  }
}
