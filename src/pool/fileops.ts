/**
 * Every change the pool makes to its files on the main thread goes through here (the
 * I/O workers record their own, see `workers/blockio.ts`), so that a test can record
 * them with {@linkcode startRecording} and replay only what a disk would have kept after
 * losing power: `kill -9` keeps the page cache, so a missing or misordered fsync shows
 * only in such a replay.
 *
 * With no recording running, each call is the `node:fs/promises` call it names and
 * nothing more; a recording covers only paths under its directory.
 *
 * @module
 */
import fsSync from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as later } from "node:timers/promises";
import { appendOp, type OpRecord, recordedSyncDelay, ticket } from "./oplog.ts";

/** The part of a `FileHandle` the pool writes through. */
export interface WritableFile {
  /** Writes all of `data` at the file's current position (0 for a file just opened). */
  writeFile(data: Uint8Array): Promise<void>;
  datasync(): Promise<void>;
  sync(): Promise<void>;
  truncate(len?: number): Promise<void>;
  close(): Promise<void>;
}

interface Recording { root: string; logDir: string }
const recordings: Recording[] = [];

/** A recording in progress; {@linkcode Recorder.stop} ends it. */
export interface Recorder {
  /** Logs a point of the test's own (a commit starting or returning) in the same order as the operations. */
  mark(name: string, value: number): void;
  stop(): void;
}

/**
 * Records every mutating operation on files under `root` (the main thread's, and the
 * workers' for tasks on those files) into `logDir`, until stopped. For tests.
 */
export function startRecording(root: string, logDir: string): Recorder {
  const r: Recording = { root: path.resolve(root), logDir };
  recordings.push(r);
  return {
    mark: (name, value) => appendOp(logDir, { op: "mark", t: ticket(), name, value }),
    stop: () => {
      const i = recordings.indexOf(r);
      if (i >= 0) recordings.splice(i, 1);
    },
  };
}

/** The log directory recording operations on `file`, if any (the workers' tasks carry it). */
export function recordingOf(file: string): string | undefined {
  if (recordings.length === 0) return undefined;
  const p = path.resolve(file);
  for (const r of recordings) if (p === r.root || p.startsWith(r.root + path.sep)) return r.logDir;
  return undefined;
}

function log(logDir: string, rec: OpRecord, data?: Uint8Array): void {
  appendOp(logDir, rec, data);
}

/** Opens `file` for writing: `"w"` creates or empties it, `"wx"` creates it (EEXIST if there). */
export async function openFile(file: string, flags: "w" | "wx"): Promise<WritableFile> {
  const fh = await fs.open(file, flags);
  const logDir = recordingOf(file);
  if (logDir === undefined) return fh;
  const h = ticket();
  log(logDir, { op: "open", t: h, path: path.resolve(file), flags });
  return new RecordedFile(fh, logDir, h);
}

class RecordedFile implements WritableFile {
  #pos = 0;
  constructor(readonly fh: fs.FileHandle, readonly logDir: string, readonly h: number) {}

  async writeFile(data: Uint8Array): Promise<void> {
    const pos = this.#pos;
    for (let done = 0; done < data.byteLength;) {
      done += (await this.fh.write(data, done, data.byteLength - done, pos + done)).bytesWritten;
    }
    this.#pos += data.byteLength;
    log(this.logDir, { op: "pwrite", t: ticket(), h: this.h, pos }, data);
  }

  datasync(): Promise<void> {
    return this.#sync(() => this.fh.datasync());
  }

  sync(): Promise<void> {
    return this.#sync(() => this.fh.sync());
  }

  async #sync(fn: () => Promise<void>): Promise<void> {
    await later(recordedSyncDelay());
    const t0 = ticket();
    await fn();
    log(this.logDir, { op: "fsync", t0, t: ticket(), h: this.h });
  }

  async truncate(len = 0): Promise<void> {
    await this.fh.truncate(len);
    log(this.logDir, { op: "truncate", t: ticket(), h: this.h, len });
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** A file written whole at creation, to be synced later (what a commit stages). */
export interface WrittenFile {
  /** fdatasync in the background (the runtime's thread pool); the bytes are durable when it resolves. */
  datasync(): Promise<void>;
  /** Closes the descriptor. */
  close(): void;
}

/**
 * Opens `file` (`"wx"` creates it, EEXIST if there; `"w"` creates or empties it) and
 * writes all of `data`, synchronously: a commit's metadata files are small and land in
 * the page cache in microseconds, where each asynchronous call would cost a round trip
 * through the thread pool (several per file, on the path of every fsync a mount serves).
 * Only the sync, which waits for the disk, runs in the background.
 */
export function writeFileNow(file: string, flags: "w" | "wx", data: Uint8Array): WrittenFile {
  const fd = fsSync.openSync(file, flags);
  try {
    for (let done = 0; done < data.byteLength;) done += fsSync.writeSync(fd, data, done, data.byteLength - done, done);
  } catch (e) {
    fsSync.closeSync(fd);
    throw e;
  }
  const logDir = recordingOf(file);
  let h = 0;
  if (logDir !== undefined) {
    h = ticket();
    log(logDir, { op: "open", t: h, path: path.resolve(file), flags });
    log(logDir, { op: "pwrite", t: ticket(), h, pos: 0 }, data);
  }
  return {
    datasync: () => new Promise<void>((resolve, reject) => {
      const start = () => {
        const t0 = logDir === undefined ? 0 : ticket();
        fsSync.fdatasync(fd, (err) => {
          if (err) return reject(err);
          if (logDir !== undefined) log(logDir, { op: "fsync", t0, t: ticket(), h });
          resolve();
        });
      };
      if (logDir === undefined) start();
      else setTimeout(start, recordedSyncDelay());
    }),
    close: () => fsSync.closeSync(fd),
  };
}

let renameHook: ((from: string, to: string) => Promise<void> | void) | undefined;

/**
 * For crash tests: `fn` runs (and is awaited) before every rename made through here, such
 * as a commit's root switch, after everything the new root names is synced: a test's
 * process can signal there and be killed inside a commit's window. `undefined` removes it.
 */
export function beforeRename(fn: ((from: string, to: string) => Promise<void> | void) | undefined): void {
  renameHook = fn;
}

/** Renames `from` to `to`, replacing `to`. */
export async function rename(from: string, to: string): Promise<void> {
  if (renameHook !== undefined) await renameHook(from, to);
  // Asynchronous: a rename waits for the file system's journal, which a busy disk can
  // hold for milliseconds, and the event loop (a mount's server) must not wait with it.
  await fs.rename(from, to);
  const logDir = recordingOf(to);
  if (logDir !== undefined) log(logDir, { op: "rename", t: ticket(), from: path.resolve(from), to: path.resolve(to) });
}

/** Makes `to` a second name of `from` (a hard link). */
export async function link(from: string, to: string): Promise<void> {
  await fs.link(from, to);
  const logDir = recordingOf(to);
  if (logDir !== undefined) log(logDir, { op: "link", t: ticket(), from: path.resolve(from), to: path.resolve(to) });
}

/** Removes a file; one that is not there is no error. */
export async function removeFile(file: string): Promise<void> {
  const logDir = recordingOf(file);
  if (logDir === undefined) return fs.rm(file, { force: true });
  try {
    await fs.unlink(file);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return;
    throw e;
  }
  log(logDir, { op: "unlink", t: ticket(), path: path.resolve(file) });
}

/** {@linkcode removeFile} synchronously, for a small file (a metadata file): an unlink changes the directory in the page cache. */
export function removeFileNow(file: string): void {
  try {
    fsSync.unlinkSync(file);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return;
    throw e;
  }
  const logDir = recordingOf(file);
  if (logDir !== undefined) log(logDir, { op: "unlink", t: ticket(), path: path.resolve(file) });
}

/** Cuts or grows the file at `file` to `len` bytes. */
export async function truncateFile(file: string, len: number): Promise<void> {
  await fs.truncate(file, len);
  const logDir = recordingOf(file);
  if (logDir !== undefined) log(logDir, { op: "truncate", t: ticket(), path: path.resolve(file), len });
}

/** Makes directory `dir` and its missing parents; returns the first one it made, as `fs.mkdir` does. */
export async function makeDir(dir: string): Promise<string | undefined> {
  const logDir = recordingOf(dir);
  if (logDir === undefined) return fs.mkdir(dir, { recursive: true });
  const missing: string[] = [];
  for (let d = path.resolve(dir); !(await fs.stat(d).catch(() => undefined)); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) {
    await fs.mkdir(d);
    if (recordingOf(d) !== undefined) log(logDir, { op: "mkdir", t: ticket(), path: d });
  }
  return missing[0];
}

/**
 * fsyncs directory `dir`, which makes the creations, renames and removals of names in it
 * durable. Some platforms refuse a directory fsync; there the rename is still atomic, only
 * its durability is up to the OS.
 */
export async function syncDir(dir: string): Promise<void> {
  const logDir = recordingOf(dir);
  let fd: number;
  try {
    // Opening is a lookup the kernel answers from its caches: no thread-pool round trip for it.
    fd = fsSync.openSync(dir, "r");
  } catch {
    return; /* not supported on this platform */
  }
  let t0 = 0;
  try {
    if (logDir !== undefined) {
      await later(recordedSyncDelay());
      t0 = ticket();
    }
    await new Promise<void>((resolve, reject) => fsSync.fsync(fd, (err) => (err ? reject(err) : resolve())));
  } catch {
    /* not supported on this platform */
    return;
  } finally {
    fsSync.closeSync(fd);
  }
  if (logDir !== undefined) log(logDir, { op: "dirsync", t0, t: ticket(), path: path.resolve(dir) });
}

/**
 * Makes the names in `dir` durable, and those of the directories {@linkcode makeDir} made
 * on the way to it (`made`, the first one, as it returned): each parent is synced.
 */
export async function syncCreated(dir: string, made: string | undefined): Promise<void> {
  const dirs = [path.resolve(dir)];
  if (made !== undefined) {
    const top = path.resolve(made);
    // Each directory from `dir` up to `made` was made here: its parent holds its new name.
    for (let d = dirs[0]; (d + path.sep).startsWith(top + path.sep) && d !== path.dirname(d); d = path.dirname(d)) dirs.push(path.dirname(d));
  }
  for (const d of dirs) await syncDir(d);
}
