/**
 * One process at a time per pool. The pool and the layer store are made for one owner (as
 * dm-thin has one kernel): every open may commit, and an open removes the metadata files
 * the last commit does not name — which, with two processes, can be the files the other
 * one is committing. So an open pool holds `DIR/lock`, a file holding its pid, until it
 * closes, and each CLI command holds it from before it opens the store until after it
 * closes it. Within one process the lock is counted, not exclusive: the owner may open
 * the pool more than once.
 *
 * A lock whose process is gone (killed, crashed) is stale and taken over. Liveness is
 * `kill(pid, 0)`, so processes sharing a store must share a pid namespace.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { storeError } from "../common/errors.ts";

/** Name of the lock file in a store's directory. */
export const LOCK_FILE = "lock";

/** A lock file without a pid yet is someone's fresh lock for this long (its write is under way). */
const FRESH_MS = 5_000;

/** Locks this process holds, with their depth: a command's helpers may lock again. */
const held = new Map<string, number>();

/**
 * Takes the lock of the pool in `root` (a directory that must exist) for this process, or
 * one more count of it; EBUSY while another live process holds it. Returns its release.
 */
export async function lockPool(root: string): Promise<() => Promise<void>> {
  const file = path.join(root, LOCK_FILE);
  const depth = held.get(file) ?? 0;
  if (depth === 0) await acquire(root, file);
  held.set(file, depth + 1);
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    const left = held.get(file)! - 1;
    if (left > 0) held.set(file, left);
    else {
      held.delete(file);
      await fs.rm(file, { force: true });
    }
  };
}

/** Runs `fn` holding the lock of the pool in `root` (see {@linkcode lockPool}). */
export async function withLock<T>(root: string, fn: () => Promise<T>): Promise<T> {
  const release = await lockPool(root);
  try {
    return await fn();
  } finally {
    await release();
  }
}

async function acquire(root: string, file: string): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await fs.writeFile(file, `${process.pid}\n`, { flag: "wx" });
      return;
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
    }
    const text = await fs.readFile(file, "utf8").catch(() => undefined);
    if (text === undefined) continue; // released meanwhile
    const pid = Number(text.trim());
    if (Number.isSafeInteger(pid) && pid > 0) {
      if (alive(pid)) {
        throw storeError("EBUSY", "lock", root, `the pool is in use by process ${pid}; wait for it to finish or close the pool there (if no such process runs, remove '${file}')`);
      }
    } else {
      const age = Date.now() - ((await fs.stat(file).catch(() => undefined))?.mtimeMs ?? 0);
      if (age < FRESH_MS) throw storeError("EBUSY", "lock", root, "the pool is in use by another process; wait for it to finish");
    }
    // Stale: its process is gone. Take it over.
    await fs.rm(file, { force: true });
  }
  throw storeError("EBUSY", "lock", root, "the pool's lock keeps changing hands; retry");
}

function alive(pid: number): boolean {
  // Our own pid in a lock this process does not hold: a killed predecessor that had the
  // same pid (in a container, every run may be pid 1).
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM"; // someone else's process: alive
  }
}
