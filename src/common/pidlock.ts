/**
 * One process at a time per pool, and one open pool per directory in a process. The pool
 * and the layer store are made for one owner (as dm-thin has one kernel): every open may
 * commit, and an open removes the metadata files the last commit does not name — which,
 * with two owners, can be the files the other one is committing.
 *
 * Between processes: an open pool holds `DIR/lock`, a file holding its pid, until it
 * closes, and each CLI command holds it from before it opens the store until after it
 * closes it. Within one process the lock is counted (a command holds it and then opens
 * the store, which takes it again), but the pool itself is exclusive: a second open of a
 * directory this process has open is EBUSY ({@linkcode openLock}).
 *
 * The lock is never written in place. A taker first writes its pid into a file of its
 * own (`lock.PID.RANDOM`) and fsyncs it, then links that file to `lock`: the link either
 * creates `lock` whole or fails because there is one. A lock whose process is gone
 * (killed, crashed) is stale and taken over by exactly one taker: it first claims that
 * lock file — that inode — by linking its own file to `lock.claim.INODE` (only one link
 * can succeed), then checks that `lock` is still the stale file and renames its own file
 * over it. Nothing else replaces a lock that exists, so between that check and the
 * rename nobody can change it; a live lock is never removed. A claim whose own taker
 * died is taken over the same way, one level down. Liveness is `kill(pid, 0)`, so
 * processes sharing a store must share a pid namespace.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { storeError } from "../common/errors.ts";

/** Name of the lock file in a store's directory. */
export const LOCK_FILE = "lock";

/** A lock file without a pid is someone's fresh lock for this long (an older build writes its pid after creating it). */
const FRESH_MS = 5_000;
/** Looks at a lock being taken over by someone else before giving up (with a short sleep between). */
const ATTEMPTS = 100;
/** Claims of claims: a taker that died while taking over, this many times in a row, needs a person. */
const MAX_DEPTH = 3;

/** Locks this process holds: how many times, and the inode of its lock file. */
const held = new Map<string, { depth: number; ino: number; dev: number }>();
/** Per lock file, the acquisition or release under way in this process: the next one waits for it. */
const busy = new Map<string, Promise<unknown>>();
/** Directories (real paths) of the pools open in this process. */
const openPools = new Set<string>();

/**
 * Takes the lock of the pool in `root` (a directory that must exist) for this process, or
 * one more count of it; EBUSY while another live process holds it. Returns its release.
 * For callers that hold the store while they open it (the CLI); a pool takes the lock
 * through {@linkcode openLock}.
 */
export async function lockPool(root: string): Promise<() => Promise<void>> {
  const file = path.join(await fs.realpath(root), LOCK_FILE);
  await serialized(file, async () => {
    const h = held.get(file);
    if (h) h.depth++;
    else held.set(file, { depth: 1, ...await acquire(root, file) });
  });
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await serialized(file, async () => {
      const h = held.get(file)!;
      if (--h.depth > 0) return;
      held.delete(file);
      // Ours unless something outside this protocol replaced it: then it is not ours to remove.
      const now = await inspect(file);
      if (now && now.ino === h.ino && now.dev === h.dev) await fs.rm(file, { force: true });
    });
  };
}

/**
 * Takes the lock of the pool in `root` for an open pool: like {@linkcode lockPool}, and
 * EBUSY when this process already has the pool in `root` open (two instances would each
 * remove the files the other commits).
 */
export async function openLock(root: string, syscall = "open"): Promise<() => Promise<void>> {
  const real = await fs.realpath(root);
  if (openPools.has(real)) {
    throw storeError("EBUSY", syscall, root, "the store is already open in this process; use the open instance, or close it first");
  }
  openPools.add(real);
  let release: () => Promise<void>;
  try {
    release = await lockPool(root);
  } catch (e) {
    openPools.delete(real);
    throw e;
  }
  return async () => {
    try {
      await release();
    } finally {
      openPools.delete(real);
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

/** Runs `fn` after any acquisition or release of `file` under way in this process. */
async function serialized<T>(file: string, fn: () => Promise<T>): Promise<T> {
  for (let p = busy.get(file); p; p = busy.get(file)) await p.catch(() => {});
  const run = fn();
  busy.set(file, run);
  try {
    return await run;
  } finally {
    if (busy.get(file) === run) busy.delete(file);
  }
}

/** A lock file as found: which file (inode) and whose. */
interface Holder {
  ino: number;
  dev: number;
  /** The pid it holds; NaN when it holds none. */
  pid: number;
  mtimeMs: number;
}

/** Takes `file` for this process; returns the identity of the lock file it made. */
async function acquire(root: string, file: string): Promise<{ ino: number; dev: number }> {
  const mine = `${file}.${process.pid}.${randomBytes(6).toString("hex")}`;
  const fh = await fs.open(mine, "wx");
  let me: { ino: number; dev: number };
  try {
    await fh.writeFile(`${process.pid}\n`);
    await fh.sync();
    const st = await fh.stat();
    me = { ino: st.ino, dev: st.dev };
  } finally {
    await fh.close();
  }
  try {
    let taker: number | undefined;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      try {
        await fs.link(mine, file);
        await sweep(file);
        return me;
      } catch (e) {
        if ((e as { code?: string }).code !== "EEXIST") throw e;
      }
      const holder = await inspect(file);
      if (!holder) continue; // released meanwhile
      if (!stale(holder)) {
        const pid = Number.isNaN(holder.pid) ? undefined : holder.pid;
        throw storeError("EBUSY", "lock", root, pid === undefined
          ? "the pool is in use by another process; wait for it to finish"
          : `the pool is in use by process ${pid}; wait for it to finish or close the pool there (if no such process runs, remove '${file}')`);
      }
      const result = await takeOver(file, mine, holder, 0);
      if (result === true) {
        await sweep(file);
        return me;
      }
      // Another live process is taking the stale lock over: it will hold it in a moment.
      taker = result;
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 10));
    }
    throw storeError("EBUSY", "lock", root, taker === undefined
      ? "the pool's lock keeps changing hands; retry"
      : `process ${taker} is taking over the pool's stale lock and has not finished; retry (if no such process runs, remove '${file}' and the '${LOCK_FILE}.claim.*' files beside it)`);
  } finally {
    await fs.rm(mine, { force: true });
  }
}

/**
 * Replaces `target`, found holding the stale `found`, by this process's file `mine`.
 * True when it did; otherwise the pid of the live process that holds the claim on it,
 * or undefined when `target` changed meanwhile (look again).
 */
async function takeOver(target: string, mine: string, found: Holder, depth: number): Promise<true | number | undefined> {
  const claim = `${target}.claim.${found.ino}`;
  for (;;) {
    try {
      await fs.link(mine, claim);
      break;
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
    }
    const other = await inspect(claim);
    if (!other) continue; // its taker let go: claim it again
    if (!stale(other)) return other.pid;
    // Its taker died mid-takeover: take the claim over first.
    if (depth + 1 >= MAX_DEPTH) return other.pid;
    const result = await takeOver(claim, mine, other, depth + 1);
    if (result !== true) return result;
    break;
  }
  try {
    // Only a claimant of this very file replaces it, and we are the one: if it is still
    // the stale file now, nobody else can change it before the rename.
    const now = await inspect(target);
    if (!now || now.ino !== found.ino || now.dev !== found.dev || !Object.is(now.pid, found.pid) || !stale(now)) return undefined;
    const fresh = `${mine}.new`;
    await fs.link(mine, fresh);
    await fs.rename(fresh, target);
    return true;
  } finally {
    await fs.rm(claim, { force: true });
  }
}

/**
 * Removes the own files (`lock.PID.RANDOM`, and `.new`) of takers that died before they
 * removed them. Only their owner ever uses such a file, so one whose pid is dead is nobody's.
 * Claims are left alone: one may still be a live taker's.
 */
async function sweep(file: string): Promise<void> {
  const dir = path.dirname(file);
  const own = new RegExp(`^${path.basename(file)}\\.(\\d+)\\.[0-9a-f]{12}(\\.new)?$`);
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    const pid = Number(own.exec(name)?.[1]);
    if (pid > 0 && pid !== process.pid && !alive(pid)) await fs.rm(path.join(dir, name), { force: true }).catch(() => {});
  }
}

/** The lock file `file` as it is now, or undefined when there is none. */
async function inspect(file: string): Promise<Holder | undefined> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, "r");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return undefined;
    throw e;
  }
  try {
    // The identity and the content of one open file: they belong together.
    const st = await fh.stat();
    const text = await fh.readFile("utf8");
    const n = Number(text.trim());
    return { ino: st.ino, dev: st.dev, pid: text.trim() !== "" && Number.isSafeInteger(n) && n > 0 ? n : NaN, mtimeMs: st.mtimeMs };
  } finally {
    await fh.close();
  }
}

/** True when the process that made `h` is gone. */
function stale(h: Holder): boolean {
  if (Number.isNaN(h.pid)) return Date.now() - h.mtimeMs >= FRESH_MS;
  return !alive(h.pid);
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
