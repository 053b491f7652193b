/**
 * An open file of a layer, shaped after Node's `FileHandle`: positional and sequential
 * reads and writes, truncate, stat, close. It holds the inode, not the path, so it
 * keeps working after a rename, and an unlinked file lives until its last handle closes.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { hasCode, storeError } from "../common/errors.ts";
import { readData, readDataInto, truncateData, writeData } from "./fileio.ts";
import type { OpenFlags } from "./flags.ts";
import type { FsHost } from "./host.ts";
import { type Ino, isDir, isReg } from "./inode.ts";
import type { Layer } from "./layer.ts";
import { LayerStats } from "./stats.ts";
import type { LayerTree } from "./tree.ts";

let nextFd = 1000;

/**
 * Bytes of a string or byte array argument.
 *
 * @example
 * ```ts
 * import { toBytes } from "./filehandle.ts";
 * console.log(toBytes("hi").length); // 2
 * ```
 */
export function toBytes(data: string | ArrayBufferView, encoding: BufferEncoding = "utf8"): Uint8Array {
  if (typeof data === "string") return Buffer.from(data, encoding);
  // Any typed array or DataView, as Node's fs takes them: its bytes, not its elements.
  return data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * A handle from `LayerFs.open`.
 *
 * @example
 * ```ts ignore
 * const fh = await layerFs.open("/big", "r+");
 * await fh.write(new Uint8Array(32768), 0, 32768, 512 * 1024 * 1024);
 * await fh.close();
 * ```
 */
export class LayerFileHandle {
  /** A number for logs; not an OS descriptor. */
  readonly fd = nextFd++;
  #position = 0;
  #closed = false;

  /** For `LayerFs.open`, which opens files; counts the handle on the inode. */
  constructor(private readonly host: FsHost, private readonly layer: Layer, readonly ino: Ino, private readonly flags: OpenFlags) {
    layer.handles.set(ino, (layer.handles.get(ino) ?? 0) + 1);
  }

  /**
   * Reads into `buffer` at `offset`, `length` bytes from `position` (the handle's own
   * position, which then advances, when null or omitted).
   */
  async read<T extends Uint8Array>(buffer: T, offset = 0, length = buffer.byteLength - offset, position: number | null = null): Promise<{ bytesRead: number; buffer: T }> {
    this.#check("read", this.flags.read);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > buffer.byteLength) {
      throw storeError("EINVAL", "read", undefined, `offset ${offset} and length ${length} must lie inside the buffer's ${buffer.byteLength} bytes`);
    }
    const at = position ?? this.#position;
    const target = buffer.subarray(offset, offset + length);
    const bytesRead = await this.host.reading(this.layer, "read", () => readDataInto(this.host.data(this.layer), this.#regular("read"), at, target));
    if (position === null || position === undefined) this.#position += bytesRead;
    return { bytesRead, buffer };
  }

  /**
   * Writes `length` bytes of `data` from `offset` at `position` (the handle's position
   * when null; the end of the file in append mode). A string is written whole, the
   * second argument then being the position.
   */
  async write<T extends Uint8Array | string>(data: T, offset?: number | null, length?: number | BufferEncoding, position?: number | null): Promise<{ bytesWritten: number; buffer: T }> {
    this.#check("write", this.flags.write);
    let bytes: Uint8Array;
    let pos: number | null;
    if (typeof data === "string") {
      bytes = toBytes(data, typeof length === "string" ? length : "utf8");
      pos = offset ?? null;
    } else {
      const from = offset ?? 0;
      bytes = data.subarray(from, from + (typeof length === "number" ? length : data.byteLength - from));
      pos = position ?? null;
    }
    await this.#changing("write", async (tree) => {
      this.#regular("write");
      const inode = tree.own(this.ino);
      const at = this.flags.append ? inode.size : pos ?? this.#position;
      await writeData(this.host.data(this.layer), inode, at, bytes);
      inode.mtimeMs = inode.ctimeMs = tree.now;
      if (pos === null || this.flags.append) this.#position = at + bytes.byteLength;
    });
    return { bytesWritten: bytes.byteLength, buffer: data };
  }

  /** Reads from the handle's position to the end of the file. */
  async readFile(): Promise<Buffer> {
    this.#check("read", this.flags.read);
    const bytes = await this.host.reading(this.layer, "read", () => {
      const inode = this.#regular("read");
      return readData(this.host.data(this.layer), inode, this.#position, Math.max(0, inode.size - this.#position));
    });
    this.#position += bytes.byteLength;
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Cuts or extends the file to `length` bytes. */
  async truncate(length = 0): Promise<void> {
    this.#check("ftruncate", this.flags.write);
    if (!Number.isSafeInteger(length) || length < 0) throw storeError("EINVAL", "ftruncate", undefined, `length '${length}' must be a whole number of bytes`);
    await this.#changing("ftruncate", async (tree) => {
      this.#regular("ftruncate");
      const inode = tree.own(this.ino);
      await truncateData(this.host.data(this.layer), inode, length);
      inode.mtimeMs = inode.ctimeMs = tree.now;
    });
  }

  /** The file's current stats. */
  stat(): Promise<LayerStats> {
    this.#check("fstat", true);
    return this.host.reading(this.layer, "fstat", () => new LayerStats(this.layer.record.device, this.ino, this.#inode("fstat")));
  }

  /** Closes the handle; an unlinked file's data goes with its last handle. A second close does nothing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const left = (this.layer.handles.get(this.ino) ?? 1) - 1;
    if (left > 0) {
      this.layer.handles.set(this.ino, left);
      return;
    }
    this.layer.handles.delete(this.ino);
    const inode = this.layer.tables.inodes.get(this.ino);
    if (inode && inode.nlink <= 0 && this.layer.writable && !this.layer.removed) {
      try {
        await this.host.writing(this.layer, "close", undefined, (tree) => tree.release(this.ino));
      } catch (e) {
        // A closed store reaps the file when it opens again.
        if (!hasCode(e, "EBADF")) throw e;
      }
    }
  }

  /**
   * Changes the file under the store's lock; a holder of the layer that watches it (a
   * mount) hears of it once the lock is released (see holds.ts).
   */
  async #changing(syscall: string, fn: (tree: LayerTree) => Promise<void>): Promise<void> {
    if (!this.host.watched(this.layer)) return await this.host.writing(this.layer, syscall, undefined, fn);
    try {
      await this.host.writing(this.layer, syscall, undefined, fn);
    } finally {
      await this.host.changed(this.layer, { ino: this.ino });
    }
  }

  #check(syscall: string, allowed: boolean): void {
    if (this.#closed) throw storeError("EBADF", syscall, undefined, "the file handle is closed");
    if (!allowed) throw storeError("EBADF", syscall, undefined, `the file was not opened for ${syscall === "read" ? "reading" : "writing"}`);
  }

  #inode(syscall: string) {
    const inode = this.host.view.inode(this.layer, this.ino);
    if (!inode) throw storeError("EBADF", syscall, undefined, "the file is gone");
    return inode;
  }

  #regular(syscall: string) {
    const inode = this.#inode(syscall);
    if (isDir(inode.mode)) throw storeError("EISDIR", syscall);
    if (!isReg(inode.mode)) throw storeError("EINVAL", syscall, undefined, "only regular files hold data in a layer");
    return inode;
  }
}
