/** One call at a time per key. @module */

/**
 * Runs tasks one after another per key, and tasks of different keys side by side: the
 * daemon's calls on one layer (prepare then mount, release then commit) do not interleave.
 *
 * @example
 * ```ts
 * import { KeyLock } from "./keylock.ts";
 * const keys = new KeyLock();
 * await Promise.all([keys.run("a", async () => 1), keys.run("a", async () => 2)]); // in turn
 * ```
 */
export class KeyLock {
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` once every earlier task of `key` has finished (whether it failed or not). */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(key) ?? Promise.resolve();
    const mine = before.then(fn, fn);
    const tail = mine.catch(() => {});
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return mine;
  }
}
