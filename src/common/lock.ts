/** A small async readers-writer lock. @module */

/**
 * Many readers or one writer at a time; waiting writers go before new readers, so a
 * stream of reads cannot starve a write.
 *
 * @example
 * ```ts
 * import { RwLock } from "./lock.ts";
 * const lock = new RwLock();
 * await lock.write(async () => { // exclusive
 * });
 * ```
 */
export class RwLock {
  #readers = 0;
  #writer = false;
  #queue: { write: boolean; wake: () => void }[] = [];

  /** True while a writer holds the lock. */
  get writing(): boolean {
    return this.#writer;
  }

  /** Runs `fn` while holding the lock shared. */
  async read<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.#writer || this.#queue.length > 0) {
      await new Promise<void>((wake) => this.#queue.push({ write: false, wake }));
    } else {
      this.#readers++;
    }
    try {
      return await fn();
    } finally {
      this.#readers--;
      this.#next();
    }
  }

  /**
   * Takes the lock shared at once if no writer holds it (a writer that is only waiting does
   * not stop it), and returns its release; undefined when a writer holds it. For a caller
   * that must decide now and keep the decision true until it is done.
   */
  tryRead(): (() => void) | undefined {
    if (this.#writer) return undefined;
    this.#readers++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#readers--;
      this.#next();
    };
  }

  /** Runs `fn` while holding the lock exclusively. */
  async write<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.#writer || this.#readers > 0 || this.#queue.length > 0) {
      await new Promise<void>((wake) => this.#queue.push({ write: true, wake }));
    } else {
      this.#writer = true;
    }
    try {
      return await fn();
    } finally {
      this.#writer = false;
      this.#next();
    }
  }

  #next(): void {
    if (this.#writer || this.#readers > 0) return;
    const head = this.#queue[0];
    if (!head) return;
    if (head.write) {
      this.#queue.shift();
      this.#writer = true;
      head.wake();
      return;
    }
    while (this.#queue.length > 0 && !this.#queue[0].write) {
      this.#readers++;
      this.#queue.shift()!.wake();
    }
  }
}
