/**
 * Reading layer tarballs: a streaming reader over tar-stream that takes any byte source,
 * plain or gzipped, and yields entries with their metadata normalised (PAX uid, gid,
 * times and binary-exact xattrs applied; devices, links and FIFOs typed).
 *
 * @module
 */
import tarStream from "tar-stream";
import { hasCode, storeError } from "../common/errors.ts";
import { type ByteTaps, decompressed } from "./compression.ts";
import { type EntryType, PERM_MASK, type TarEntry } from "./entry.ts";
import { METADATA_LIMIT, tooBig } from "./limits.ts";
import { paxText, paxXattrs, parsePax, type PaxRecords } from "./pax.ts";
import { feed, type WritableLike } from "./pump.ts";
import { byteChunks, type ByteSource, describeSource } from "./source.ts";

/** Options of {@linkcode readTar}. */
export interface ReadTarOptions {
  /** Taps on the raw and the decompressed bytes (digests). */
  taps?: ByteTaps;
  /** How errors name the archive; the path or "<stream>" by default. */
  name?: string;
}

/** A header as tar-stream decodes it, plus the exact PAX records added here. */
interface RawHeader {
  name: string;
  type: string | null;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  linkname: string | null;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  byteOffset: number;
  records?: PaxRecords;
}

/** The parts of tar-stream's Extract this module hooks into (see `hookExtract`). */
interface ExtractInternals {
  _header: RawHeader | null;
  _consumeHeader(this: ExtractInternals): boolean;
  _continueWrite(this: ExtractInternals, err: Error | null): void;
  _applyLongHeaders(this: ExtractInternals): void;
  _decodeLongHeader(this: ExtractInternals, buf: Uint8Array): void;
}

/** What the hooks found wrong: an error to report instead of tar-stream's own. */
interface HookState {
  refused?: Error;
}

/** Headers whose data tar-stream buffers whole before the entry they describe. */
const LONG_HEADERS: Record<string, string> = {
  "pax-header": "this PAX extended header",
  "pax-global-header": "this PAX global header",
  "gnu-long-path": "this GNU long name",
  "gnu-long-link-path": "this GNU long link name",
};

/** Types whose size field describes no data that follows (Go's `isHeaderOnlyType`). */
const HEADER_ONLY = new Set(["link", "symlink", "character-device", "block-device", "directory", "fifo"]);

const TYPES: Record<string, EntryType> = {
  "file": "file",
  "contiguous-file": "file",
  "directory": "dir",
  "symlink": "symlink",
  "link": "link",
  "character-device": "char",
  "block-device": "block",
  "fifo": "fifo",
};

/**
 * Two fixes to tar-stream's parser, applied to one instance through its internal hooks
 * (pinned by tests that fail if tar-stream changes them):
 *
 * - Header-only types (links, devices, FIFOs, directories) carry no data whatever their
 *   size field says, as Go's archive/tar (and so Docker) reads them. tar-stream would
 *   take the next blocks as their data and lose its place (gotar-hdr-only.tar).
 * - PAX records are kept as bytes, and global records apply to every later entry.
 *   tar-stream decodes values as UTF-8, which corrupts binary xattrs.
 * - An extended header over {@linkcode METADATA_LIMIT}, or global headers adding up to
 *   more, is refused as soon as its header block is read, before its data is buffered
 *   (tar-stream buffers each whole, and global records are kept for the whole archive).
 */
function hookExtract(ex: unknown, what: string): HookState {
  const self = ex as ExtractInternals;
  const consume = self._consumeHeader;
  const applyLong = self._applyLongHeaders;
  const decodeLong = self._decodeLongHeader;
  if (typeof consume !== "function" || typeof self._continueWrite !== "function" || typeof applyLong !== "function" || typeof decodeLong !== "function") {
    throw storeError("EIO", "untar", what, "the installed tar-stream lacks the parser hooks thinstack relies on; install tar-stream 3.x");
  }
  const state: HookState = {};
  let checked: RawHeader | null = null;
  let globalBytes = 0;
  self._consumeHeader = function () {
    const ok = consume.call(this);
    const h = this._header;
    // Only a header block this call decoded: a locked or failed call leaves the last one.
    if (!h || h === checked || h.type === null || !(h.type in LONG_HEADERS)) return ok;
    checked = h;
    const global = h.type === "pax-global-header";
    if (global) globalBytes += h.size;
    if ((global ? globalBytes : h.size) <= METADATA_LIMIT) return ok;
    const name = `${what}: '${h.name}' at byte ${h.byteOffset - 512}`;
    state.refused = global && h.size <= METADATA_LIMIT
      ? tooBig("untar", name, "the global PAX headers up to this one", globalBytes)
      : tooBig("untar", name, LONG_HEADERS[h.type], h.size);
    // Over tar-stream's own cap it has failed the write already (`ok` false): the error is replaced in readTar.
    if (ok) this._continueWrite(state.refused);
    return false;
  };
  let local: PaxRecords | undefined;
  let global: PaxRecords | undefined;
  self._decodeLongHeader = function (buf) {
    const type = this._header?.type;
    if (type === "pax-header") local = parsePax(buf, what);
    else if (type === "pax-global-header") global = new Map([...(global ?? []), ...parsePax(buf, what)]);
    decodeLong.call(this, buf);
  };
  self._applyLongHeaders = function () {
    applyLong.call(this);
    const h = this._header!;
    // Entries share the global records unless they have their own to add.
    if (local) h.records = global ? new Map([...global, ...local]) : local;
    else if (global) h.records = global;
    local = undefined;
    if (h.type !== null && HEADER_ONLY.has(h.type)) h.size = 0;
  };
  return state;
}

function paxNumber(records: PaxRecords | undefined, key: string): number | undefined {
  const v = paxText(records, key);
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function toEntry(h: RawHeader, body: AsyncIterable<Uint8Array>, what: string): TarEntry {
  const type = h.type === null ? undefined : TYPES[h.type];
  if (!type) {
    throw storeError("EINVAL", "untar", what, `entry '${h.name}' has an unsupported tar type (${h.type ?? "unknown type flag"})`);
  }
  const r = h.records;
  const mtimeS = paxNumber(r, "mtime");
  const entry: TarEntry = {
    name: h.name,
    type,
    size: type === "file" ? h.size : 0,
    mode: h.mode & PERM_MASK,
    uid: paxNumber(r, "uid") ?? h.uid,
    gid: paxNumber(r, "gid") ?? h.gid,
    mtimeMs: mtimeS !== undefined ? Math.round(mtimeS * 1e6) / 1e3 : h.mtime.getTime(),
    devmajor: h.devmajor,
    devminor: h.devminor,
    dataOffset: h.byteOffset,
    body,
  };
  if (h.linkname !== null) entry.linkname = h.linkname;
  const uname = paxText(r, "uname") ?? h.uname;
  const gname = paxText(r, "gname") ?? h.gname;
  if (uname) entry.uname = uname;
  if (gname) entry.gname = gname;
  const xattrs = paxXattrs(r);
  if (xattrs) entry.xattrs = xattrs;
  for (const n of [entry.mode, entry.uid, entry.gid, entry.mtimeMs, entry.size]) {
    if (!Number.isFinite(n) || n < 0 && n !== entry.mtimeMs) {
      throw storeError("EINVAL", "untar", what, `entry '${h.name}' has an invalid numeric field`);
    }
  }
  return entry;
}

/**
 * tar-stream's errors are plain Errors: give them a code and say what was being read. A
 * refusal by the hooks wins over whatever tar-stream made of the same header.
 */
function tarError(e: unknown, what: string, state: HookState): unknown {
  if (state.refused) return state.refused;
  if (hasCode(e, "EINVAL") || (e as { code?: unknown })?.code !== undefined) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return storeError("EINVAL", "untar", what, `malformed tar archive: ${msg}`);
}

/**
 * The entries of a tar archive (plain or gzip, detected from its first bytes). Data of
 * an entry must be read, if at all, before asking for the next entry. Malformed or
 * truncated archives fail with EINVAL; a zero-byte source is an empty archive, as is
 * one that ends cleanly after a header without end-of-archive blocks.
 *
 * @example
 * ```ts ignore
 * import { readTar } from "./tarread.ts";
 * for await (const e of readTar("layer.tar.gz")) console.log(e.type, e.name, e.size);
 * ```
 */
export async function* readTar(source: ByteSource, options: ReadTarOptions = {}): AsyncGenerator<TarEntry> {
  const what = options.name ?? describeSource(source);
  // V7 archives (no ustar magic) are valid tar; the header checksum still guards them.
  const ex = tarStream.extract({ allowUnknownFormat: true } as Parameters<typeof tarStream.extract>[0]);
  const state = hookExtract(ex, what);
  const feeding = feed(decompressed(byteChunks(source), options.taps, what), ex as unknown as WritableLike);
  try {
    for await (const stream of ex) {
      const it = stream[Symbol.asyncIterator]();
      let done = false;
      // The body reads through `it` so that a consumer that stops early does not destroy
      // the entry stream (which would destroy the whole parser): the rest is skipped below.
      const body = (async function* () {
        while (!done) {
          let r: IteratorResult<unknown>;
          try {
            r = await it.next();
          } catch (e) {
            throw tarError(e, what, state);
          }
          if (r.done) done = true;
          else yield r.value as Uint8Array;
        }
      })();
      yield toEntry(stream.header as unknown as RawHeader, body, what);
      while (!done) if ((await it.next()).done) done = true;
    }
  } catch (e) {
    throw tarError(e, what, state);
  } finally {
    ex.destroy();
    await feeding;
  }
}
