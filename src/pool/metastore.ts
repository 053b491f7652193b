/**
 * Crash-safe metadata files. Every file is written once under a fresh name, fsynced,
 * and never changed; the only file ever replaced is the root record, and that by one
 * atomic rename. A crash at any point leaves either the old root (and its files) or the
 * new one; files the live root does not name are leftovers and are removed at open.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { Buffer } from "node:buffer";
import { decodeCbor, encodeCbor } from "./cbor.ts";

/** Name of the root record inside the metadata directory. */
export const ROOT_FILE = "pool.cbor";

/** The metadata directory of a pool. */
export class MetaStore {
  /** Bytes of every file written or found, by name; its sum is the metadata in use. */
  readonly sizes = new Map<string, number>();
  #seq = 0;
  readonly #staged: fs.FileHandle[] = [];

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
   * until {@linkcode syncStaged}: a commit fsyncs all its files at once, which a journaling
   * file system folds into one journal commit instead of one per file.
   */
  async stage(prefix: string, transactionId: number, value: unknown): Promise<string> {
    const { name, fh } = await this.#create(prefix, transactionId);
    this.#staged.push(fh);
    await this.#fill(name, fh, value);
    return name;
  }

  /** Opens a file under a name no file has yet. */
  async #create(prefix: string, transactionId: number): Promise<{ name: string; fh: fs.FileHandle }> {
    for (;;) {
      const name = `${prefix}.${transactionId}.${(this.#seq++).toString(36)}.cbor`;
      try {
        return { name, fh: await fs.open(path.join(this.dir, name), "wx") };
      } catch (e) {
        // Taken by a file of the same transaction (restore and repair write at a transaction
        // id the directory may already hold files of): the next name is as fresh.
        if ((e as { code?: string }).code !== "EEXIST") throw e;
      }
    }
  }

  async #fill(name: string, fh: fs.FileHandle, value: unknown): Promise<void> {
    const bytes = encodeCbor(value);
    await fh.writeFile(bytes);
    this.sizes.set(name, bytes.byteLength);
  }

  /** Makes every staged file durable (in parallel) and closes it. */
  async syncStaged(): Promise<void> {
    const staged = this.#staged.splice(0);
    try {
      await Promise.all(staged.map((fh) => fh.datasync()));
    } finally {
      await Promise.all(staged.map((fh) => fh.close()));
    }
  }

  /** Closes staged files without syncing them (the commit failed; they are garbage). */
  async dropStaged(): Promise<void> {
    await Promise.all(this.#staged.splice(0).map((fh) => fh.close().catch(() => {})));
  }

  /**
   * Writes `value` under `name` when no file has that name, or finds it there already with
   * these very bytes; otherwise writes it under a fresh name. Never changes an existing
   * file (a restore's names may be the names of live files). Returns the name it is under,
   * synced.
   */
  async place(name: string, transactionId: number, value: unknown): Promise<string> {
    if (!/^[^/\\.][^/\\]*$/.test(name) || name === ROOT_FILE || name === `${ROOT_FILE}.tmp`) {
      throw new Error(`Metadata file name '${name}' is not a plain file name`);
    }
    const file = path.join(this.dir, name);
    const bytes = encodeCbor(value);
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(file, "wx");
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

  /** Reads and decodes one file. */
  async read(name: string): Promise<unknown> {
    const bytes = await fs.readFile(path.join(this.dir, name));
    this.sizes.set(name, bytes.byteLength);
    return decodeCbor(bytes);
  }

  /** Replaces the root record atomically: write a temporary file, fsync, rename, fsync the directory. */
  async switchRoot(value: unknown): Promise<number> {
    const bytes = encodeCbor(value);
    const tmp = path.join(this.dir, `${ROOT_FILE}.tmp`);
    const fh = await fs.open(tmp, "w");
    try {
      await fh.writeFile(bytes);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, path.join(this.dir, ROOT_FILE));
    await this.syncDir();
    this.sizes.set(ROOT_FILE, bytes.byteLength);
    return bytes.byteLength;
  }

  /** Reads the root record, or undefined when there is none. */
  async readRoot(): Promise<unknown | undefined> {
    try {
      return await this.read(ROOT_FILE);
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") return undefined;
      throw e;
    }
  }

  /** Removes every file not in `live` (and not the root). */
  async collect(live: Set<string>): Promise<void> {
    for (const name of await fs.readdir(this.dir)) {
      if (name === ROOT_FILE || live.has(name)) continue;
      await fs.rm(path.join(this.dir, name), { force: true });
      this.sizes.delete(name);
    }
  }

  /** Bytes used by the root and the named files. */
  bytesOf(live: Iterable<string>): number {
    let n = this.sizes.get(ROOT_FILE) ?? 0;
    for (const name of live) n += this.sizes.get(name) ?? 0;
    return n;
  }

  async syncDir(): Promise<void> {
    // Directory fsync makes the rename itself durable. Some platforms refuse it; the
    // rename is still atomic there, only its durability is up to the OS.
    let fh: fs.FileHandle | undefined;
    try {
      fh = await fs.open(this.dir, "r");
      await fh.sync();
    } catch {
      /* not supported on this platform */
    } finally {
      await fh?.close();
    }
  }
}
