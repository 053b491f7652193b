/**
 * Layer compression: detection by magic bytes and gzip decompression (node:zlib), so a
 * layer may be given plain or gzipped whatever its file name or media type says.
 *
 * @module
 */
import zlib from "node:zlib";
import { storeError } from "../common/errors.ts";
import { pump } from "./pump.ts";

/** The compressions a layer may come in. Only `none` and `gzip` can be read. */
export type Compression = "none" | "gzip" | "zstd" | "bzip2" | "xz";

/** Bytes needed to tell the compressions apart. */
const SNIFF = 6;

/** The compression `head` (the first bytes of a stream) starts with. */
export function sniffCompression(head: Uint8Array): Compression {
  const at = (i: number, ...bytes: number[]) => bytes.every((b, j) => head[i + j] === b);
  if (at(0, 0x1f, 0x8b)) return "gzip";
  if (at(0, 0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  if (at(0, 0x42, 0x5a, 0x68)) return "bzip2";
  if (at(0, 0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "xz";
  return "none";
}

/** Hooks that see the bytes on their way: for digests of the blob and of the tar. */
export interface ByteTaps {
  /** Every byte as it came (the compressed blob). */
  raw?(chunk: Uint8Array): void;
  /** Every byte after decompression (the tar: what a DiffID covers). */
  plain?(chunk: Uint8Array): void;
}

/**
 * The decompressed bytes of `chunks`, whatever compression they turn out to have.
 *
 * @example
 * ```ts
 * import { gzipSync } from "node:zlib";
 * import { decompressed } from "./compression.ts";
 * async function* one() { yield new Uint8Array(gzipSync("hi")); }
 * for await (const c of decompressed(one())) console.log(new TextDecoder().decode(c)); // hi
 * ```
 */
export async function* decompressed(chunks: AsyncIterable<Uint8Array>, taps: ByteTaps = {}, what = "layer"): AsyncGenerator<Uint8Array> {
  const it = chunks[Symbol.asyncIterator]();
  // Gather enough of the start to recognise a magic number.
  const head: Uint8Array[] = [];
  let headLength = 0;
  let ended = false;
  while (headLength < SNIFF) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    head.push(r.value);
    headLength += r.value.length;
  }
  const first = concat(head, headLength);
  const kind = sniffCompression(first);
  async function* rest(): AsyncGenerator<Uint8Array> {
    if (first.length) {
      taps.raw?.(first);
      yield first;
    }
    if (ended) return;
    for (let r = await it.next(); !r.done; r = await it.next()) {
      taps.raw?.(r.value);
      yield r.value;
    }
  }
  if (kind === "none") {
    for await (const c of rest()) {
      taps.plain?.(c);
      yield c;
    }
    return;
  }
  if (kind !== "gzip") {
    throw storeError("EINVAL", "decompress", what, `${kind}-compressed data is not supported; give the ${what} plain or gzip-compressed`);
  }
  const gunzip = zlib.createGunzip({ chunkSize: 256 * 1024 });
  try {
    for await (const c of pump(rest(), gunzip)) {
      taps.plain?.(c);
      yield c;
    }
  } catch (e) {
    throw gzipError(e, what);
  }
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function gzipError(e: unknown, what: string): unknown {
  const code = (e as { code?: string })?.code;
  if (typeof code === "string" && code.startsWith("Z_")) {
    return storeError("EINVAL", "gunzip", what, `malformed gzip data (${(e as Error).message}); the ${what} is corrupt or truncated`);
  }
  return e;
}
