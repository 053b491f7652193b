/**
 * How the CLI finds a running daemon: `thinstack serve` writes `DIR/daemon.json` (its pid
 * and socket) into the store's directory once it listens, and removes it when it stops.
 * A record whose process is gone (the daemon was killed) is ignored; the next `serve`
 * writes its own. The store's pid lock (common/pidlock.ts) stays the one owner: the record
 * only says where that owner answers.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";

/** Name of the record in a store's directory. */
export const RECORD_FILE = "daemon.json";

/** What the record holds. */
export interface DaemonRecord {
  /** The daemon's process id. */
  pid: number;
  /** The unix socket it serves on. */
  address: string;
}

/** Writes the record of this process serving on `address` (atomically: a reader sees all of it or none). */
export async function writeRecord(root: string, address: string): Promise<void> {
  const file = path.join(root, RECORD_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify({ pid: process.pid, address } satisfies DaemonRecord) + "\n", { mode: 0o644 });
  await fs.rename(tmp, file);
}

/** Removes the record, if it is this process's. */
export async function removeRecord(root: string): Promise<void> {
  const record = await readRaw(root);
  if (record?.pid === process.pid) await fs.rm(path.join(root, RECORD_FILE), { force: true });
}

/**
 * The daemon serving the store in `root`, if one runs: its record, when its process lives
 * and its socket is there (a killed daemon's pid may since belong to another process).
 */
export async function findDaemon(root: string): Promise<DaemonRecord | undefined> {
  const record = await readRaw(root);
  if (!record || record.pid === process.pid || !alive(record.pid)) return undefined;
  const socket = await fs.lstat(record.address).catch(() => undefined);
  return socket?.isSocket() ? record : undefined;
}

async function readRaw(root: string): Promise<DaemonRecord | undefined> {
  const text = await fs.readFile(path.join(root, RECORD_FILE), "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as Partial<DaemonRecord>;
    if (Number.isSafeInteger(r.pid) && (r.pid as number) > 0 && typeof r.address === "string" && r.address) return r as DaemonRecord;
  } catch {
    // A torn or foreign file: no daemon to talk to.
  }
  return undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}
