/**
 * The bytes of one metadata file: a header of 8 bytes, then the CBOR value.
 *
 * | bytes | what |
 * |---|---|
 * | 0..3 | magic `TSMF` (thinstack metadata file) |
 * | 4..7 | CRC-32C of the bytes after the header, little-endian |
 * | 8.. | the value, CBOR (`cbor.ts`) |
 *
 * A file whose magic or checksum does not match is damaged and is never decoded: reading
 * it fails with EIO naming the file. One wrong byte anywhere is always caught (the magic
 * compares exactly; CRC-32C catches every burst of up to 32 bits in the rest).
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { crc32c } from "../common/crc32c.ts";
import { decodeCbor, encodeCbor } from "./cbor.ts";

const MAGIC = [0x54, 0x53, 0x4d, 0x46]; // "TSMF"
/** Bytes before the value. */
export const HEADER_SIZE = 8;

/** The file's bytes for `value`. */
export function encodeMetaFile(value: unknown): Uint8Array {
  const body = encodeCbor(value);
  const out = new Uint8Array(HEADER_SIZE + body.byteLength);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(4, crc32c(body), true);
  out.set(body, HEADER_SIZE);
  return out;
}

/** Why `bytes` are not a sound metadata file, or undefined when they are. */
export function damageOf(bytes: Uint8Array): string | undefined {
  if (bytes.byteLength < HEADER_SIZE) return `it has ${bytes.byteLength} bytes, fewer than a header`;
  if (MAGIC.some((b, i) => bytes[i] !== b)) {
    // An earlier format wrote bare CBOR: say so rather than only "damaged".
    return bytes[0] >= 0xa0 && bytes[0] <= 0xbf
      ? "it has no header: an earlier format (before checksums) wrote it, which this build does not read"
      : "its header is not a thinstack metadata file's";
  }
  const stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  const actual = crc32c(bytes.subarray(HEADER_SIZE));
  if (stored !== actual) return `its checksum is 0x${actual.toString(16).padStart(8, "0")}, the header says 0x${stored.toString(16).padStart(8, "0")}`;
  return undefined;
}

/** Decodes a metadata file's bytes; EIO naming `file` (its path) when they are damaged. */
export function decodeMetaFile(bytes: Uint8Array, file: string): unknown {
  const damage = damageOf(bytes);
  if (damage !== undefined) {
    throw storeError("EIO", "read", file, `metadata file '${file}' is damaged (${damage}); run 'thinstack check', then 'thinstack repair'`);
  }
  try {
    return decodeCbor(bytes.subarray(HEADER_SIZE));
  } catch (e) {
    // The checksum matched, so this is what was written: a bug, not damage, but still unreadable.
    throw storeError("EIO", "read", file, `metadata file '${file}' does not decode (${(e as Error).message}); run 'thinstack check'`);
  }
}
