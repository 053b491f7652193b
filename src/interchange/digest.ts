/**
 * Content digests (OCI image-spec descriptor.md): `algorithm:hex`, computed as data
 * streams through, and checked against what a manifest or config promises.
 *
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { storeError } from "../common/errors.ts";

/** A digest string such as `sha256:0f89…`. */
export type Digest = string;

const PATTERNS: Record<string, RegExp> = {
  sha256: /^sha256:[a-f0-9]{64}$/,
  sha512: /^sha512:[a-f0-9]{128}$/,
};

/** Splits and validates a digest; only sha256 and sha512 are accepted, as OCI registers. */
export function parseDigest(digest: string, what = "digest"): { algorithm: string; hex: string } {
  const algorithm = digest.slice(0, digest.indexOf(":"));
  if (!PATTERNS[algorithm]?.test(digest)) {
    throw storeError("EINVAL", "digest", what, `'${digest}' is not a valid sha256 or sha512 digest`);
  }
  return { algorithm, hex: digest.slice(algorithm.length + 1) };
}

/** A running digest and byte count. */
export class Hasher {
  readonly algorithm: string;
  readonly #hash: Hash;
  /** Bytes seen so far. */
  bytes = 0;

  constructor(algorithm = "sha256") {
    this.algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  /** Adds bytes. */
  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
    this.bytes += chunk.length;
  }

  /** The digest of everything seen (call once). */
  digest(): Digest {
    return `${this.algorithm}:${this.#hash.digest("hex")}`;
  }
}

/** The sha256 digest of `bytes`. */
export function sha256(bytes: Uint8Array | string): Digest {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Fails with EINVAL when `actual` is not `expected`. */
export function checkDigest(actual: Digest, expected: Digest, what: string): void {
  if (actual !== expected) {
    throw storeError("EINVAL", "verify", what, `digest mismatch: expected ${expected}, got ${actual}; the image is corrupt or was altered`);
  }
}

/** Fails with EINVAL when a blob's length is not what its descriptor says. */
export function checkSize(actual: number, expected: number | undefined, what: string): void {
  if (expected !== undefined && actual !== expected) {
    throw storeError("EINVAL", "verify", what, `size mismatch: expected ${expected} bytes, got ${actual}`);
  }
}
