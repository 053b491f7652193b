/**
 * The files of an image on disk, whichever way it is stored: an OCI layout directory, a
 * tar archive (`docker save`, an OCI layout tarball), or such a tar gzipped. Members of
 * an uncompressed tar are read in place through an index of their offsets; a gzipped
 * one is spooled to a temporary directory once.
 *
 * @module
 */
import fs from "node:fs";
import fsp, { type FileHandle } from "node:fs/promises";
import os from "node:os";
import nodePath from "node:path";
import { hasCode, storeError } from "../common/errors.ts";
import { sniffCompression } from "./compression.ts";
import { writeChunks } from "./hostio.ts";
import { METADATA_LIMIT, readBounded, tooBig } from "./limits.ts";
import { cleanComponents } from "./names.ts";
import type { ByteSource } from "./source.ts";
import { readTar } from "./tarread.ts";

/** Read access to an image's files by relative path (`index.json`, `blobs/sha256/…`). */
export interface ImageFiles {
  /** The path the image was opened from. */
  readonly where: string;
  /**
   * The whole contents of a (small) file, or undefined when there is none. Over
   * {@linkcode METADATA_LIMIT} it fails with EFBIG before reading anything.
   */
  read(path: string): Promise<Uint8Array | undefined>;
  /** Whether the file exists. */
  has(path: string): Promise<boolean>;
  /** A file's bytes as a stream; fails with ENOENT when missing. */
  open(path: string): ByteSource;
  /** Releases temporary files. */
  close(): Promise<void>;
}

/** A relative path cleaned inside the image: `..` cannot leave it. */
function clean(path: string): string {
  return cleanComponents(path).join("/");
}

/** An image stored as a directory. */
class DirFiles implements ImageFiles {
  constructor(readonly where: string) {}

  #abs(path: string): string {
    return nodePath.join(this.where, clean(path));
  }

  async read(path: string): Promise<Uint8Array | undefined> {
    const abs = this.#abs(path);
    let fh: FileHandle;
    try {
      fh = await fsp.open(abs, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK); // a FIFO would block an open without
    } catch (e) {
      if (hasCode(e, "ENOENT")) return undefined;
      throw e;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return undefined;
      return await readBounded(fh, st.size, "import", `${this.where}:${clean(path)}`, "this metadata file");
    } finally {
      await fh.close();
    }
  }

  async has(path: string): Promise<boolean> {
    return (await fsp.stat(this.#abs(path)).catch(() => undefined))?.isFile() ?? false;
  }

  open(path: string): ByteSource {
    return this.#abs(path);
  }

  async close(): Promise<void> {}
}

/** Where a tar member's bytes are: in place in the archive, or spooled to a file. */
interface Member {
  file: string;
  offset: number;
  size: number;
  /** For hard links and symlinks: the member they lead to. */
  link?: string;
}

/** Hops through link members before giving up. */
const MAX_HOPS = 16;

/** An image stored as a tar archive. */
class TarFiles implements ImageFiles {
  readonly #members = new Map<string, Member>();
  #spool?: string;

  private constructor(readonly where: string) {}

  /** Indexes `file`; gzipped archives are spooled to a temporary directory. */
  static async open(file: string): Promise<TarFiles> {
    const files = new TarFiles(file);
    const head = new Uint8Array(6);
    const fh = await fsp.open(file, "r");
    try {
      await fh.read(head, 0, head.length, 0);
    } finally {
      await fh.close();
    }
    const inPlace = sniffCompression(head) === "none";
    if (!inPlace) files.#spool = await fsp.mkdtemp(nodePath.join(os.tmpdir(), "thinstack-image-"));
    try {
      let n = 0;
      for await (const e of readTar(file)) {
        const name = clean(e.name);
        if (e.type === "symlink" || e.type === "link") {
          // A symlink's target is relative to its directory; a hard link names a member.
          const target = e.type === "symlink" && !e.linkname?.startsWith("/")
            ? clean(`${nodePath.posix.dirname(name)}/${e.linkname}`)
            : clean(e.linkname ?? "");
          files.#members.set(name, { file, offset: 0, size: 0, link: target });
        } else if (e.type === "file") {
          if (inPlace) {
            files.#members.set(name, { file, offset: e.dataOffset, size: e.size });
          } else {
            const spooled = nodePath.join(files.#spool!, String(n++));
            await writeChunks(spooled, e.body);
            files.#members.set(name, { file: spooled, offset: 0, size: e.size });
          }
        }
      }
    } catch (e) {
      await files.close();
      throw e;
    }
    return files;
  }

  #member(path: string): Member | undefined {
    let m = this.#members.get(clean(path));
    for (let hops = 0; m?.link !== undefined; hops++) {
      if (hops > MAX_HOPS) throw storeError("ELOOP", "open", `${this.where}:${path}`, "too many links between archive members");
      m = this.#members.get(m.link);
    }
    return m;
  }

  async read(path: string): Promise<Uint8Array | undefined> {
    const m = this.#member(path);
    if (!m) return undefined;
    if (m.size > METADATA_LIMIT) throw tooBig("import", `${this.where}:${clean(path)}`, "this metadata member", m.size);
    const out = new Uint8Array(m.size);
    const fh = await fsp.open(m.file, "r");
    try {
      let at = 0;
      while (at < m.size) {
        const { bytesRead } = await fh.read(out, at, m.size - at, m.offset + at);
        if (bytesRead === 0) throw storeError("EIO", "read", `${this.where}:${path}`, "the archive is shorter than its index says; did it change?");
        at += bytesRead;
      }
    } finally {
      await fh.close();
    }
    return out;
  }

  has(path: string): Promise<boolean> {
    return Promise.resolve(this.#member(path) !== undefined);
  }

  open(path: string): ByteSource {
    const m = this.#member(path);
    if (!m) throw storeError("ENOENT", "open", `${this.where}:${path}`, "the archive has no such member");
    if (m.size === 0) return new Uint8Array(0);
    return fs.createReadStream(m.file, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: 1 << 20 }) as AsyncIterable<Uint8Array>;
  }

  async close(): Promise<void> {
    if (this.#spool) await fsp.rm(this.#spool, { recursive: true, force: true });
    this.#spool = undefined;
  }
}

/**
 * Opens the image at `path`: a directory, or a tar archive (plain or gzip).
 *
 * @example
 * ```ts ignore
 * const files = await openImageFiles("busybox.tar");
 * const manifest = await files.read("manifest.json");
 * await files.close();
 * ```
 */
export async function openImageFiles(path: string): Promise<ImageFiles> {
  const st = await fsp.stat(path);
  if (st.isDirectory()) return new DirFiles(path);
  if (!st.isFile()) throw storeError("EINVAL", "open", path, "an image is a directory (OCI layout) or a tar archive");
  return await TarFiles.open(path);
}
