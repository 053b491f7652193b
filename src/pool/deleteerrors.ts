/**
 * Deferred deletions that failed in the background. Nobody awaits that work, so its
 * failure is kept here: reported to the pool's user as it happens, listed in
 * `status()`, and kept beside the pool (`DIR/deferred-delete-errors.json`, written
 * atomically, best effort) so that a later process's status shows it too. The deletion
 * itself stays recorded as pending in the metadata and is retried at the next open; an
 * entry goes once a commit records its device as gone.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import type { DeferredDeleteError, DeviceId } from "./types.ts";

/** Name of the file beside the pool's data file. */
export const DELETE_ERRORS_FILE = "deferred-delete-errors.json";

interface Entry {
  error: DeferredDeleteError;
  /** The transaction id when it was recorded (or loaded): a commit after it, without the device, resolves it. */
  since: number;
}

/** The failed deferred deletions of one open pool. */
export class DeleteErrors {
  readonly #file: string;
  readonly #entries = new Map<DeviceId, Entry>();
  /** The file does not say what the entries say. */
  #changed = false;

  constructor(dir: string) {
    this.#file = path.join(dir, DELETE_ERRORS_FILE);
  }

  /** Reads what earlier processes recorded, keeping the devices still being deleted. */
  async load(deleting: Set<DeviceId>, transactionId: number): Promise<void> {
    let list: unknown;
    try {
      list = JSON.parse(await fs.readFile(this.#file, "utf8"));
    } catch {
      return; // none, or unreadable: it is only a report
    }
    if (!Array.isArray(list)) return;
    for (const e of list as DeferredDeleteError[]) {
      if (typeof e?.device === "number" && typeof e.message === "string" && deleting.has(e.device)) {
        const error: DeferredDeleteError = { device: e.device, message: e.message, time: String(e.time), ...(typeof e.code === "string" ? { code: e.code } : {}) };
        this.#entries.set(e.device, { error, since: transactionId });
      } else {
        this.#changed = true; // finished since, by some process
      }
    }
  }

  /** Records a failure of `device`'s deletion; returns what to report. */
  async record(device: DeviceId, e: unknown, transactionId: number): Promise<DeferredDeleteError> {
    const err = e as { code?: unknown; message?: unknown };
    const error: DeferredDeleteError = {
      device, message: String(err?.message ?? e), time: new Date().toISOString(),
      ...(typeof err?.code === "string" ? { code: err.code } : {}),
    };
    this.#entries.set(device, { error, since: transactionId });
    this.#changed = true;
    await this.save();
    return error;
  }

  /**
   * The failures still unresolved: `present` says whether the device is still in memory
   * (pending), `transactionId` is the last commit's.
   */
  list(present: (device: DeviceId) => boolean, transactionId: number): DeferredDeleteError[] {
    for (const [device, entry] of this.#entries) {
      if (!present(device) && transactionId > entry.since) {
        this.#entries.delete(device);
        this.#changed = true;
      }
    }
    return [...this.#entries.values()].map((e) => ({ ...e.error })).sort((a, b) => a.device - b.device);
  }

  /** Writes the file (or removes it when nothing is left) if it changed; failures are ignored (it is a report). */
  async save(): Promise<void> {
    if (!this.#changed) return;
    this.#changed = false;
    try {
      if (this.#entries.size === 0) {
        await fs.rm(this.#file, { force: true });
        return;
      }
      const tmp = `${this.#file}.tmp`;
      await fs.writeFile(tmp, JSON.stringify([...this.#entries.values()].map((e) => e.error), null, 1) + "\n");
      await fs.rename(tmp, this.#file);
    } catch {
      /* the disk that failed the deletion may fail this too */
    }
  }
}
