/**
 * Crash-safe metadata files. Every file is written once under a fresh name, fsynced,
 * and never changed; the only file ever replaced is the root record, and that by one
 * atomic rename. A crash at any point leaves either the old root (and its files) or the
 * new one; files the live root does not name are leftovers and are removed at open.
 *
 * Every file carries a CRC-32C of its bytes (`metafile.ts`) and a damaged one is never
 * decoded. The root a commit replaces stays as `pool.prev.cbor` (a hard link made before
 * the switch), and the pool keeps the files it names until the next commit, so `repair`
 * can go back one commit when a file only the current root names is damaged.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { Buffer } from "node:buffer";
import { decodeMetaFile, encodeMetaFile } from "./metafile.ts";
import * as fileops from "./fileops.ts";
import type { WritableFile, WrittenFile } from "./fileops.ts";

/** Name of the root record inside the metadata directory. */
export const ROOT_FILE = "pool.cbor";
/** The root record the last commit replaced. */
export const PREVIOUS_ROOT_FILE = "pool.prev.cbor";

/** How {@linkcode MetaStore.switchRoot} switches. */
export interface SwitchOptions {
  /** False: no previous root stays (repair and restore, which rewrite everything). Default true. */
  keepPrevious?: boolean;
  /** Syncs the new root needs too (the data file's), awaited together with its own. */
  alongside?: Promise<void>[];
}

/** The metadata directory of a pool. */
export class MetaStore {
  /** Bytes of every file written or found, by name; its sum is the metadata in use. */
  readonly sizes = new Map<string, number>();
  #seq = 0;
  readonly #staged: WrittenFile[] = [];

  constructor(readonly dir: string) {}

  /** Writes `value` to a new file named after `prefix` and the transaction, synced; returns the name. */
  async write(prefix: string, transactionId: number, value: unknown): Promise<string> {
    const { name, fh } = await this.#create(prefix, transactionId);
    try {
      await this.#fill(name, fh, value);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    return name;
  }

  /**
   * Writes `value` to a new file like {@linkcode write}, but leaves it open and unsynced
   * until {@linkcode syncStaged} (or the {@linkcode switchRoot} that follows): a commit
   * fsyncs all its files at once, which a journaling file system folds into one journal
   * commit instead of one per file. The bytes are written synchronously (see
   * `fileops.writeFileNow`): only the syncs wait for the disk.
   */
  stage(prefix: string, transactionId: number, value: unknown): Promise<string> {
    const bytes = encodeMetaFile(value);
    for (;;) {
      const name = `${prefix}.${transactionId}.${(this.#seq++).toString(36)}.cbor`;
      try {
        this.#staged.push(fileops.writeFileNow(path.join(this.dir, name), "wx", bytes));
      } catch (e) {
        // Taken (see #create): the next name is as fresh.
        if ((e as { code?: string }).code === "EEXIST") continue;
        return Promise.reject(e);
      }
      this.sizes.set(name, bytes.byteLength);
      return Promise.resolve(name);
    }
  }

  /** Opens a file under a name no file has yet. */
  async #create(prefix: string, transactionId: number): Promise<{ name: string; fh: WritableFile }> {
    for (;;) {
      const name = `${prefix}.${transactionId}.${(this.#seq++).toString(36)}.cbor`;
      try {
        return { name, fh: await fileops.openFile(path.join(this.dir, name), "wx") };
      } catch (e) {
        // Taken by a file of the same transaction (restore and repair write at a transaction
        // id the directory may already hold files of): the next name is as fresh.
        if ((e as { code?: string }).code !== "EEXIST") throw e;
      }
    }
  }

  async #fill(name: string, fh: WritableFile, value: unknown): Promise<void> {
    const bytes = encodeMetaFile(value);
    await fh.writeFile(bytes);
    this.sizes.set(name, bytes.byteLength);
  }

  /** Makes every staged file durable (in parallel) and closes it. */
  async syncStaged(): Promise<void> {
    const staged = this.#staged.splice(0);
    // Settled, not raced: a descriptor is closed only once its own sync is over.
    const done = await Promise.allSettled(staged.map((f) => f.datasync()));
    for (const f of staged) f.close();
    for (const d of done) if (d.status === "rejected") throw d.reason;
  }

  /** Closes staged files without syncing them (the commit failed; they are garbage). */
  dropStaged(): Promise<void> {
    for (const f of this.#staged.splice(0)) {
      try {
        f.close();
      } catch {
        // closed already
      }
    }
    return Promise.resolve();
  }

  /**
   * Writes `value` under `name` when no file has that name, or finds it there already with
   * these very bytes; otherwise writes it under a fresh name. Never changes an existing
   * file (a restore's names may be the names of live files). Returns the name it is under,
   * synced.
   */
  async place(name: string, transactionId: number, value: unknown): Promise<string> {
    if (!/^[^/\\.][^/\\]*$/.test(name) || name === ROOT_FILE || name === PREVIOUS_ROOT_FILE || name.startsWith(`${ROOT_FILE}.`) || name.startsWith(`${PREVIOUS_ROOT_FILE}.`)) {
      throw new Error(`Metadata file name '${name}' is not a plain file name`);
    }
    const file = path.join(this.dir, name);
    const bytes = encodeMetaFile(value);
    let fh: WritableFile;
    try {
      fh = await fileops.openFile(file, "wx");
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
      const there = await fs.open(file, "r");
      try {
        if (Buffer.from(bytes).equals(await there.readFile())) {
          await there.datasync(); // a leftover of a restore cut short may not be durable yet
          this.sizes.set(name, bytes.byteLength);
          return name;
        }
      } finally {
        await there.close();
      }
      return await this.write(/^([^.]+)\.\d+\.[0-9a-z]+\.cbor$/.exec(name)?.[1] ?? "restored", transactionId, value);
    }
    try {
      await fh.writeFile(bytes);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    this.sizes.set(name, bytes.byteLength);
    return name;
  }

  /** Reads and decodes one file; EIO naming it when it is damaged (its checksum does not match). */
  async read(name: string): Promise<unknown> {
    const file = path.join(this.dir, name);
    const bytes = await fs.readFile(file);
    this.sizes.set(name, bytes.byteLength);
    return decodeMetaFile(bytes, file);
  }

  /**
   * Replaces the root record atomically: write a temporary file; make it, the staged
   * files (see {@linkcode stage}) and the directory (the new files' names) durable, all
   * at once together with `alongside` (the data file's sync), while the current root is
   * linked as the previous one; rename; fsync the directory (the rename). Two waits for
   * the disk, one after the other, where one after each step would be four. With
   * `keepPrevious: false` (repair and restore, which rewrite everything) no previous root
   * stays.
   */
  async switchRoot(value: unknown, options: SwitchOptions = {}): Promise<number> {
    const bytes = encodeMetaFile(value);
    const tmp = path.join(this.dir, `${ROOT_FILE}.tmp`);
    const root = fileops.writeFileNow(tmp, "w", bytes);
    // The names of the files the new root names (each created under a fresh name, before
    // this directory sync starts) must be on disk before the rename can be: a file system
    // may persist the rename first. Settled, not raced: nothing is closed under a sync.
    // The previous root is set aside meanwhile: it is the current one until the rename.
    const done = await Promise.allSettled([root.datasync(), this.syncStaged(), this.syncDir(), this.#keepPrevious(options.keepPrevious !== false), ...(options.alongside ?? [])]);
    root.close();
    for (const d of done) if (d.status === "rejected") throw d.reason;
    await fileops.rename(tmp, path.join(this.dir, ROOT_FILE));
    await this.syncDir();
    this.sizes.set(ROOT_FILE, bytes.byteLength);
    return bytes.byteLength;
  }

  /**
   * Makes `pool.prev.cbor` a second name of the current root (before a switch replaces
   * it), or with `keep` false removes it. A link, then a rename over the old previous
   * root, so some previous root is there at every moment.
   */
  async #keepPrevious(keep: boolean): Promise<void> {
    const prev = path.join(this.dir, PREVIOUS_ROOT_FILE);
    if (!keep) return fileops.removeFileNow(prev);
    const prevTmp = `${prev}.tmp`;
    fileops.removeFileNow(prevTmp);
    try {
      await fileops.link(path.join(this.dir, ROOT_FILE), prevTmp);
      await fileops.rename(prevTmp, prev);
    } catch (e) {
      if ((e as { code?: string }).code !== "ENOENT") throw e; // no root yet: the pool's first
    }
  }

  /** Reads the root record, or undefined when there is none. */
  readRoot(): Promise<unknown | undefined> {
    return this.#readIfThere(ROOT_FILE);
  }

  /** Reads the root record the last commit replaced, or undefined when there is none. */
  readPreviousRoot(): Promise<unknown | undefined> {
    return this.#readIfThere(PREVIOUS_ROOT_FILE);
  }

  async #readIfThere(name: string): Promise<unknown | undefined> {
    try {
      return await this.read(name);
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") return undefined;
      throw e;
    }
  }

  /** Removes every file not in `live` (and not the roots). */
  async collect(live: Set<string>): Promise<void> {
    for (const name of await fs.readdir(this.dir)) {
      if (name === ROOT_FILE || name === PREVIOUS_ROOT_FILE || live.has(name)) continue;
      await fileops.removeFile(path.join(this.dir, name));
      this.sizes.delete(name);
    }
  }

  /** Bytes used by the root and the named files. */
  bytesOf(live: Iterable<string>): number {
    let n = this.sizes.get(ROOT_FILE) ?? 0;
    for (const name of live) n += this.sizes.get(name) ?? 0;
    return n;
  }

  /** fsyncs the directory: creations, renames and removals of its files become durable. */
  syncDir(): Promise<void> {
    return fileops.syncDir(this.dir);
  }
}
