/**
 * The one CBOR configuration thinstack writes and reads. `useRecords: false` keeps the
 * bytes portable (plain maps, no cbor-x record extension); `copyBuffers` keeps decoded
 * byte arrays from pinning the whole file they came from.
 *
 * @module
 */
import "./cbor-native.ts";
import { Encoder } from "cbor-x";

const codec = new Encoder({ useRecords: false, copyBuffers: true, mapsAsObjects: true, tagUint8Array: false });

/** Encodes a value as CBOR. */
export function encodeCbor(value: unknown): Uint8Array {
  return codec.encode(value);
}

/** Decodes CBOR bytes. */
export function decodeCbor(bytes: Uint8Array): unknown {
  return codec.decode(bytes);
}
