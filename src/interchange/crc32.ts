/**
 * CRC-32 (gzip's) of pieces computed apart and joined afterwards: the parallel gzip
 * (gzip.ts) deflates a layer's blocks on several threads, each block's CRC with it, and
 * the trailer needs the CRC of the whole. {@linkcode crc32Combine} is zlib's
 * `crc32_combine` (multiplication modulo the CRC polynomial by x^(8·length)), so no
 * thread has to read all the bytes again in order.
 *
 * @module
 */
import zlib from "node:zlib";

/** The reflected CRC-32 polynomial. */
const POLY = 0xedb88320;

/** a·b modulo the polynomial (both reflected, x^0 in the top bit). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) modulo the polynomial, for k = 0..31. */
const X2N: number[] = (() => {
  const t: number[] = [];
  let p = 0x40000000; // x^1
  t.push(p);
  for (let k = 1; k < 32; k++) t.push(p = multModP(p, p));
  return t;
})();

/** x^(n·2^k) modulo the polynomial. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n) {
    if (n & 1) p = multModP(X2N[k & 31], p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/**
 * The CRC-32 of A followed by B, from A's CRC `crcA`, B's CRC `crcB` and B's length.
 *
 * @example
 * ```ts
 * import { crc32, crc32Combine } from "./crc32.ts";
 * const a = new TextEncoder().encode("hello, "), b = new TextEncoder().encode("world");
 * console.log(crc32Combine(crc32(a), crc32(b), b.length) === crc32(new TextEncoder().encode("hello, world"))); // true
 * ```
 */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(x2nModP(lengthB, 3), crcA >>> 0) ^ crcB) >>> 0;
}

let table: Uint32Array | undefined;

/** CRC-32 in plain JavaScript, for a runtime whose node:zlib lacks `crc32`. */
function slowCrc32(bytes: Uint8Array): number {
  table ??= Uint32Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    return c >>> 0;
  });
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/** CRC-32 of `bytes` (node:zlib's where the runtime has it: Node ≥ 20.15 and Deno 2 do). */
export function crc32(bytes: Uint8Array): number {
  return native ? native(bytes) >>> 0 : slowCrc32(bytes);
}
