/** Where the CLI's store lives and how commands open it. @module */
import fs from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { formatBytes } from "../common/units.ts";
import { ImageStore } from "../images/mod.ts";
import { METADATA_DIR } from "../pool/pool.ts";
import { ROOT_FILE } from "../pool/metastore.ts";
import type { AutoextendEvent, DeferredDeleteError, LowWaterEvent } from "../pool/types.ts";
import { withLock } from "../common/pidlock.ts";
import { storeError } from "../common/errors.ts";
import { findDaemon } from "../daemon/record.ts";
import { cliOutput, printOut } from "./stdout.ts";

/** The store directory: --root, else $THINSTACK_ROOT, else ./.thinstack. */
export function rootOf(cmd: Command): string {
  const opts = cmd.optsWithGlobals() as { root?: string };
  return path.resolve(opts.root || process.env.THINSTACK_ROOT || ".thinstack");
}

/** True when `root` holds a pool's root record (a store, or what is left of one). */
export function hasStore(root: string): boolean {
  return fs.existsSync(path.join(root, METADATA_DIR, ROOT_FILE));
}

/** The error for a directory that holds no store. */
export function noStore(root: string): Error {
  return Object.assign(
    new Error(`ENOENT: no store at '${root}'; create one with 'thinstack init' (or pass --root, or set THINSTACK_ROOT)`),
    { code: "ENOENT" },
  );
}

/** Opens the store in `root` for a command; errors say what to do next. */
export async function openStore(root: string, options: StoreUse = {}): Promise<ImageStore> {
  if (!hasStore(root)) throw noStore(root);
  let store: ImageStore;
  try {
    store = await ImageStore.open(root, { resumeDeletions: !options.reportOnly });
  } catch (e) {
    const err = e as { message?: string; code?: string };
    const first = String(err.message ?? e).split("\n")[0];
    // Damaged metadata shows up as a decoding error (no code), EIO, EINVAL or a missing file.
    const damaged = !err.code || ["EIO", "EINVAL", "ENOENT"].includes(err.code);
    const hint = damaged ? " (run 'thinstack check'; 'thinstack repair' fixes what it can)" : "";
    throw Object.assign(
      new Error(`cannot open the store at '${root}': ${first}${hint}`),
      { code: err.code ?? "EIO", cause: e },
    );
  }
  store.pool.onAutoextend = (event) => note(autoextendLine(event, store));
  store.pool.onDeferredDeleteError = (e) => note(`warning: ${deleteErrorLine(e)}`);
  // Logged by the pool in any case (`thinstack events`); said on a terminal too, where a
  // person reads it, not in the output a script reads.
  if (cliOutput().stderr.isTTY) store.pool.on("lowWater", (event) => note(lowWaterLine(event)));
  return store;
}

/** What the CLI says when free space crossed its low water mark. */
export function lowWaterLine(e: LowWaterEvent): string {
  const amount = e.unit === "blocks" ? `${e.free} of ${e.total} blocks` : `${formatBytes(e.free)} of ${formatBytes(e.total)}`;
  return e.crossed === "below"
    ? `free ${e.space} space is under its low water mark of ${e.markPercent}%: ${amount} free (${e.freePercent}%); remove layers, trim, or grow the pool`
    : `free ${e.space} space is back over its low water mark of ${e.markPercent}%: ${amount} free (${e.freePercent}%)`;
}

/**
 * Runs `fn` on the existing store in `root`, holding its lock (see common/pidlock.ts): for commands
 * that read or change the metadata without opening the store (check, repair, dump).
 */
export async function withExisting<T>(root: string, fn: () => Promise<T>): Promise<T> {
  if (!hasStore(root)) throw noStore(root);
  return await withStoreLock(root, () => {
    if (!hasStore(root)) throw noStore(root); // removed while we waited
    return fn();
  });
}

/**
 * Runs `fn` holding the lock of the store in `root` (a directory that must exist); when a
 * running `thinstack serve` holds it, the EBUSY says so.
 */
export async function withStoreLock<T>(root: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await withLock(root, fn);
  } catch (e) {
    throw await servedHint(root, e);
  }
}

/** A lock refused because `thinstack serve` owns the store: say so, and what works meanwhile. */
async function servedHint(root: string, e: unknown): Promise<unknown> {
  if ((e as { code?: string; syscall?: string })?.code !== "EBUSY" || (e as { syscall?: string }).syscall !== "lock") return e;
  const daemon = await findDaemon(root);
  if (!daemon) return e;
  return storeError("EBUSY", "lock", root,
    `'thinstack serve' (process ${daemon.pid}, socket '${daemon.address}') owns the store; ls, inspect, usage, info, prepare, view, commit and rm go through it, other commands need it stopped (SIGTERM)`);
}

/** Opens the store (holding its lock), runs `fn`, and closes it (committing) whatever happens. */
export async function withStore<T>(cmd: Command, fn: (store: ImageStore, root: string) => Promise<T>, options: StoreUse = {}): Promise<T> {
  const root = rootOf(cmd);
  return await withExisting(root, async () => {
    const store = await openStore(root, options);
    if (options.leavePending) store.pool.holdDeletions();
    try {
      return await fn(store, root);
    } finally {
      await store.close();
    }
  });
}

/** How a command uses the store, beyond opening and closing it. */
export interface StoreUse {
  /**
   * The command only reports (info, status): deferred removals an earlier command left
   * pending stay pending, so the report counts them (docker info's Deferred Deleted Device Count).
   */
  reportOnly?: boolean;
  /** Leave this command's deferred removals to finish at the next open (rm returns at once). */
  leavePending?: boolean;
}

/** What the CLI says when the pool grew by itself (LVM's thin-pool autoextend). */
export function autoextendLine(e: AutoextendEvent, store: ImageStore): string {
  const bs = store.pool.blockSize;
  const { autoextendThreshold, autoextendPercent } = store.pool.status().settings;
  return `data space passed ${autoextendThreshold}% (${e.usedBlocks} of ${e.fromBlocks} blocks used): ` +
    `grew the data file from ${formatBytes(e.fromBlocks * bs)} to ${formatBytes(e.toBlocks * bs)} (thin_pool_autoextend_percent ${autoextendPercent})`;
}

/** A failed deferred deletion, in one line. */
export function deleteErrorLine(e: DeferredDeleteError): string {
  return `the deferred deletion of device ${e.device} failed (${e.time}): ${e.message.split("\n")[0]}; it stays pending and is retried when the store is next opened`;
}

/** Writes to stdout (nothing once its reader has gone away: see stdout.ts). */
export function out(text: string): void {
  printOut(text);
}

/** Writes a `thinstack: ...` line to stderr: news that is not the command's output. */
export function note(text: string): void {
  cliOutput().stderr.write(`thinstack: ${text}\n`);
}
