/**
 * Writing tar archives with tar-stream: entries go in one at a time with their data
 * streamed through (memory stays flat whatever the sizes), and the output has only
 * what the entries say, so the same entries always give the same bytes.
 *
 * @module
 */
import tarStream from "tar-stream";
import { storeError } from "../common/errors.ts";
import type { EntryAttrs, EntryType } from "./entry.ts";
import { encodePax, SCHILY_XATTR } from "./pax.ts";
import { writable, type WritableLike } from "./pump.ts";

/** An entry to write. Names are written as given (relative, `/`-separated). */
export interface WriteEntry extends EntryAttrs {
  name: string;
  type: EntryType;
  /** Data bytes of a file; the body must supply exactly this many. */
  size?: number;
  /** Symlink target or hard-link target name. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  uname?: string;
  gname?: string;
}

const TYPES: Record<EntryType, string> = {
  file: "file",
  dir: "directory",
  symlink: "symlink",
  link: "link",
  char: "character-device",
  block: "block-device",
  fifo: "fifo",
};

/** Largest uid/gid tar-stream writes in a ustar field (six octal digits). */
const MAX_ID = 0o777777;
/** Largest mtime (seconds) tar-stream writes correctly: it converts through int32. */
const MAX_TIME = 2 ** 31 - 1;

/** What the `_encode` hook needs beyond tar-stream's header. */
interface Extra {
  mode: number;
  records: [string, string | Uint8Array][];
}

interface PackInternals {
  _encode(this: PackInternals, header: Record<string, unknown>): void;
  push(chunk: Uint8Array): boolean;
}

/**
 * tar-stream's pack replaces a mode of 0 by a default (whiteouts have mode 0) and writes
 * PAX values as UTF-8 text (binary xattrs would be corrupted): this hook on one instance
 * writes the exact mode and, when an entry needs PAX records, a binary-exact extended
 * header ahead of it (pinned by tests that fail if tar-stream changes its internals).
 */
function hookPack(pack: unknown): void {
  const self = pack as PackInternals;
  const encode = self._encode;
  if (typeof encode !== "function") {
    throw storeError("EIO", "tar", undefined, "the installed tar-stream lacks the pack hook thinstack relies on; install tar-stream 3.x");
  }
  self._encode = function (header) {
    const extra = header.extra as Extra | undefined;
    if (!extra) return encode.call(this, header);
    header.mode = extra.mode;
    if (extra.records.length === 0) return encode.call(this, header);
    const linkname = header.linkname as string | undefined;
    const data = encodePax([
      ["path", header.name as string],
      ...(linkname ? [["linkpath", linkname] as [string, string]] : []),
      ...extra.records,
    ]);
    const base = { ...header, name: "PaxHeader", linkname: linkname ? "PaxHeader" : null, pax: null, extra: undefined };
    encode.call(this, { ...base, type: "pax-header", size: data.length, linkname: null });
    this.push(data);
    if (data.length % 512) this.push(new Uint8Array(512 - (data.length % 512)));
    encode.call(this, base);
  };
}

function toHeader(e: WriteEntry): Record<string, unknown> {
  const records: [string, string | Uint8Array][] = [];
  const seconds = Math.floor(e.mtimeMs / 1000);
  const mtime = Math.min(Math.max(seconds, 0), MAX_TIME);
  if (mtime !== seconds) records.push(["mtime", String(seconds)]);
  if (e.uid > MAX_ID) records.push(["uid", String(e.uid)]);
  if (e.gid > MAX_ID) records.push(["gid", String(e.gid)]);
  // Sorted, so that equal attribute sets give equal bytes.
  for (const [k, v] of [...(e.xattrs ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) records.push([SCHILY_XATTR + k, v]);
  return {
    // Directories end in "/", as GNU tar and Go write them.
    name: e.type === "dir" && !e.name.endsWith("/") ? `${e.name}/` : e.name,
    type: TYPES[e.type],
    mode: e.mode,
    uid: Math.min(e.uid, MAX_ID),
    gid: Math.min(e.gid, MAX_ID),
    size: e.type === "file" ? e.size ?? 0 : 0,
    mtime: new Date(mtime * 1000),
    linkname: e.linkname ?? null,
    uname: e.uname ?? "",
    gname: e.gname ?? "",
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
    extra: { mode: e.mode, records } satisfies Extra,
  };
}

/** Adds entries to an archive being written; see {@linkcode writeTar}. */
export class TarWriter {
  readonly #pack: tarStream.Pack;

  constructor(pack: tarStream.Pack) {
    this.#pack = pack;
  }

  /** Appends one entry; a file's `body` must yield exactly `size` bytes. */
  async add(entry: WriteEntry, body?: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    const header = toHeader(entry);
    let finish!: (err?: Error | null) => void;
    const done = new Promise<void>((resolve, reject) => {
      finish = (err) => (err ? reject(err) : resolve());
    });
    const sink = this.#pack.entry(header as unknown as tarStream.Header, finish);
    // When the body fails, the error thrown below is the one reported; the entry's own
    // callback then fails too, and must not count as an unhandled rejection.
    done.catch(() => {});
    if (entry.type === "file") {
      const size = entry.size ?? 0;
      let written = 0;
      try {
        for await (const chunk of body ?? []) {
          written += chunk.length;
          if (written > size) break;
          if (!sink.write(chunk)) await writable(sink as unknown as WritableLike);
          if (sink.destroyed) break;
        }
        if (written !== size) {
          throw storeError("EIO", "tar", entry.name, `the file gave ${written > size ? "more" : "fewer"} bytes than its size (${size}); did it change while being read?`);
        }
        (sink as unknown as WritableLike).end();
      } catch (e) {
        sink.destroy(e as Error);
        throw e;
      }
    }
    await done;
  }
}

/**
 * A tar archive as a stream of chunks: `produce` adds the entries, the end-of-archive
 * blocks follow. An error thrown by `produce` fails the stream; a reader that stops
 * early stops `produce` at its next entry.
 *
 * @example
 * ```ts
 * import { writeTar } from "./tarwrite.ts";
 * const data = new TextEncoder().encode("hello\n");
 * let n = 0;
 * for await (const chunk of writeTar(async (w) => {
 *   await w.add({ name: "hi.txt", type: "file", size: data.length, mode: 0o644, uid: 0, gid: 0, mtimeMs: 0 }, [data]);
 * })) n += chunk.length;
 * console.log(n); // 2048: header, data block, two end blocks
 * ```
 */
export async function* writeTar(produce: (w: TarWriter) => Promise<void>): AsyncGenerator<Uint8Array> {
  const pack = tarStream.pack();
  hookPack(pack);
  const producing = (async () => {
    try {
      await produce(new TarWriter(pack));
      pack.finalize();
    } catch (e) {
      pack.destroy(e as Error);
    }
  })();
  try {
    for await (const chunk of pack as AsyncIterable<Uint8Array>) yield chunk;
  } finally {
    (pack as unknown as WritableLike).destroy();
    await producing;
  }
}
