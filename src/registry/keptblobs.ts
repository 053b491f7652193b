/**
 * Blobs kept at rest: the gzipped layers a push made, in the store's directory
 * (`blobs/sha256/<hex>`), so that the next push of those layers (to another registry, or
 * to one that lost them) sends them as they are instead of making and gzipping them
 * again. BuildKit and containerd keep compressed layers in their content stores for the
 * same reason; skopeo's `oci:` source is blobs at rest too. A layer's gzip costs ~40 MiB/s
 * of a core, sending a kept blob costs what the network does.
 *
 * A pull keeps the blobs it downloads when asked (`keepBlobs`): a pushed copy of a pulled
 * image then sends the registry's own bytes and keeps its manifest digest, which a
 * signature or a digest pin names, even where no cross-repository mount can be made.
 *
 * A kept blob is a cache, never the only copy of anything: it is written without fsync
 * and read back through its digest, so one that a crash tore or the disk damaged fails
 * the check, is deleted, and the layer is made again (the same bytes: gzip.ts is
 * deterministic). A blob stays while an image record names its digest; removing an image
 * and opening the store delete the others, and the open deletes what a push left
 * half-written in `blobs/tmp/`.
 *
 * @module
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { Hasher, parseDigest } from "../interchange/digest.ts";
import type { ImageRecord } from "../interchange/host.ts";
import type { ImageFiles } from "../interchange/imagefiles.ts";
import type { ByteSource } from "../interchange/source.ts";

/** Bytes per read of a kept blob (a fresh buffer each: the uploader may keep them). */
const READ_CHUNK = 1 << 20;

/** A kept blob whose bytes are not the ones its name promises (torn by a crash, damaged, gone). */
export class KeptBlobDamaged extends Error {}

/**
 * The kept blobs of one store.
 *
 * @example
 * ```ts ignore
 * const kept = new KeptBlobs("/var/lib/thinstack");
 * const w = kept.writer();
 * w.write(bytes);
 * await w.keep("sha256:…");
 * for await (const chunk of kept.read("sha256:…", bytes.length)) send(chunk);
 * ```
 */
export class KeptBlobs {
  /** `blobs/` of the store's directory. */
  readonly dir: string;

  constructor(storeDir: string) {
    this.dir = path.join(storeDir, "blobs");
  }

  /** Where the blob of `digest` is kept. */
  path(digest: string): string {
    const { algorithm, hex } = parseDigest(digest, "kept blob");
    return path.join(this.dir, algorithm, hex);
  }

  /** Whether a blob of `digest` and `size` bytes is kept (by its size; its bytes are checked as it is read). */
  async has(digest: string, size: number): Promise<boolean> {
    const st = await fsp.stat(this.path(digest)).catch(() => undefined);
    return st?.isFile() === true && st.size === size;
  }

  /**
   * The kept blob's bytes; the end throws {@linkcode KeptBlobDamaged} (after deleting the
   * file) when they are not `size` bytes of digest `digest`, so an upload fed from here
   * never finishes with other bytes than the manifest names.
   */
  async *read(digest: string, size: number): AsyncGenerator<Uint8Array> {
    const file = this.path(digest);
    const h = new Hasher(parseDigest(digest).algorithm);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, "r");
    } catch (e) {
      throw new KeptBlobDamaged(`kept blob '${file}' cannot be opened: ${(e as Error).message}`);
    }
    try {
      for (;;) {
        const buf = Buffer.allocUnsafe(READ_CHUNK);
        const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, null);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        h.update(chunk);
        if (h.bytes > size) break;
        yield chunk;
      }
    } finally {
      await fh.close();
    }
    if (h.bytes !== size || h.digest() !== digest) {
      await fsp.rm(file, { force: true });
      throw new KeptBlobDamaged(`kept blob '${file}' is not the ${size} bytes of ${digest}; it was deleted`);
    }
  }

  /** A blob being written, to keep under its digest once it is known. */
  writer(): KeptBlobWriter {
    return new KeptBlobWriter(this);
  }

  /**
   * Deletes the kept blobs no image record names, and what writers left behind (a
   * crash, a push that failed). Never throws: a blob it cannot delete is only space.
   */
  async sweep(records: readonly ImageRecord[]): Promise<void> {
    const named = new Set<string>();
    for (const r of records) for (const layer of r.blobs ?? []) for (const b of layer) named.add(b.digest);
    await fsp.rm(path.join(this.dir, "tmp"), { recursive: true, force: true }).catch(() => {});
    for (const algorithm of await fsp.readdir(this.dir).catch(() => [] as string[])) {
      if (algorithm === "tmp") continue;
      for (const hex of await fsp.readdir(path.join(this.dir, algorithm)).catch(() => [] as string[])) {
        if (!named.has(`${algorithm}:${hex}`)) await fsp.rm(path.join(this.dir, algorithm, hex), { force: true }).catch(() => {});
      }
    }
  }
}

/**
 * One blob on its way to being kept: bytes go to a file under `blobs/tmp/` as they are
 * made (synchronously: a write into the page cache is quicker than a trip through the
 * thread pool), and {@linkcode keep} names it by its digest. Keeping is never worth
 * failing the push or pull for: a write that fails (ENOSPC, a read-only directory) drops
 * the file and the writer keeps nothing.
 */
export class KeptBlobWriter {
  readonly #kept: KeptBlobs;
  #file: string | undefined;
  #fd: number | undefined;
  #failed = false;

  constructor(kept: KeptBlobs) {
    this.#kept = kept;
  }

  /** Starts the blob over (the upload restarted and makes it again). */
  reset(): void {
    this.abort();
    this.#failed = false;
    this.#try(() => {
      const tmp = path.join(this.#kept.dir, "tmp");
      fs.mkdirSync(tmp, { recursive: true });
      this.#file = path.join(tmp, randomBytes(8).toString("hex"));
      this.#fd = fs.openSync(this.#file, "wx");
    });
  }

  /** Appends `chunk`. */
  write(chunk: Uint8Array): void {
    if (this.#failed) return;
    if (this.#fd === undefined) this.reset();
    this.#try(() => {
      for (let at = 0; at < chunk.byteLength;) at += fs.writeSync(this.#fd!, chunk, at);
    });
  }

  /** Keeps what was written as the blob of `digest` (which the caller has checked or computed from the same bytes). */
  async keep(digest: string): Promise<void> {
    if (this.#fd === undefined && !this.#failed) this.reset();
    if (this.#failed) return;
    try {
      fs.closeSync(this.#fd!);
      this.#fd = undefined;
      const to = this.#kept.path(digest);
      await fsp.mkdir(path.dirname(to), { recursive: true });
      await fsp.rename(this.#file!, to);
      this.#file = undefined;
    } catch {
      this.abort();
    }
  }

  /** Drops what was written. */
  abort(): void {
    try {
      if (this.#fd !== undefined) fs.closeSync(this.#fd);
      if (this.#file !== undefined) fs.rmSync(this.#file, { force: true });
    } catch {
      // only space, swept at the next open
    }
    this.#fd = undefined;
    this.#file = undefined;
  }

  #try(fn: () => void): void {
    try {
      fn();
    } catch {
      this.abort();
      this.#failed = true;
    }
  }
}

/**
 * `files` with every blob streamed through it to its end written to a kept-blob writer
 * too (a pull that keeps its blobs); {@linkcode keep} names them by their digests once
 * the import has checked them, {@linkcode abort} drops them.
 */
export class KeepingFiles implements ImageFiles {
  readonly #files: ImageFiles;
  readonly #kept: KeptBlobs;
  readonly #digests: ReadonlyMap<string, string>;
  /** Writers of blobs streamed to their end, by digest. */
  readonly #whole = new Map<string, KeptBlobWriter>();
  readonly #open = new Set<KeptBlobWriter>();

  /** `digests`: the digest of each layer blob by its path in `files`. */
  constructor(files: ImageFiles, kept: KeptBlobs, digests: ReadonlyMap<string, string>) {
    this.#files = files;
    this.#kept = kept;
    this.#digests = digests;
  }

  get where(): string {
    return this.#files.where;
  }

  read(path: string): Promise<Uint8Array | undefined> {
    return this.#files.read(path);
  }

  has(path: string): Promise<boolean> {
    return this.#files.has(path);
  }

  open(path: string): ByteSource {
    const digest = this.#digests.get(path);
    if (!digest) return this.#files.open(path);
    const files = this.#files;
    const writer = this.#kept.writer();
    const open = this.#open;
    const whole = this.#whole;
    return (async function* () {
      open.add(writer);
      let ended = false;
      try {
        writer.reset();
        for await (const chunk of files.open(path) as AsyncIterable<Uint8Array>) {
          writer.write(chunk);
          yield chunk;
        }
        ended = true;
        whole.get(digest)?.abort();
        whole.set(digest, writer);
      } finally {
        open.delete(writer);
        if (!ended) writer.abort();
      }
    })();
  }

  /** Keeps the blobs streamed to their end (call once the import checked their digests). */
  async keep(): Promise<void> {
    for (const [digest, writer] of this.#whole) await writer.keep(digest);
    this.#whole.clear();
  }

  /** Drops every blob written. */
  abort(): void {
    for (const w of [...this.#whole.values(), ...this.#open]) w.abort();
    this.#whole.clear();
  }

  close(): Promise<void> {
    return this.#files.close();
  }
}
