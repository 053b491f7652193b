/**
 * An image read from disk, whatever its format: its config and its layers bottom first,
 * each with the digests to verify as its bytes stream in.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { checkDigest, checkSize, Hasher, parseDigest, type Digest } from "./digest.ts";
import type { ImageFiles } from "./imagefiles.ts";
import type { ImageConfig } from "./spec.ts";

/** One layer of an image. */
export interface LayerBlob {
  /** Path of the blob among the image's files. */
  path: string;
  /** Digest of the blob as stored (compressed or not), when the format records it. */
  digest?: Digest;
  /** Size of the blob as stored, when recorded. */
  size?: number;
  /** Digest of the uncompressed tar (config.rootfs.diff_ids). */
  diffId: Digest;
  mediaType?: string;
}

/** An image ready to import. */
export interface ImageSource {
  format: "oci" | "docker" | "docker-legacy";
  /** The name the image carries (tag, ref name), if any. */
  name?: string;
  config: ImageConfig;
  /** The config exactly as stored, and its digest (the image ID). */
  configBytes: Uint8Array;
  configDigest: Digest;
  /** The manifest's digest (OCI layouts). */
  manifestDigest?: Digest;
  layers: LayerBlob[];
  files: ImageFiles;
}

/** Reads a JSON document (a blob or a named file), checking digest and size when given. */
export async function readJson<T>(files: ImageFiles, path: string, expect?: { digest?: string; size?: number }): Promise<{ value: T; bytes: Uint8Array }> {
  const bytes = await files.read(path);
  const what = `${files.where}:${path}`;
  if (!bytes) throw storeError("EINVAL", "import", what, "the image lacks this file");
  if (expect?.size !== undefined) checkSize(bytes.length, expect.size, what);
  if (expect?.digest) {
    const h = new Hasher(parseDigest(expect.digest, what).algorithm);
    h.update(bytes);
    checkDigest(h.digest(), expect.digest, what);
  }
  try {
    return { value: JSON.parse(new TextDecoder().decode(bytes)) as T, bytes };
  } catch {
    throw storeError("EINVAL", "import", what, "not valid JSON");
  }
}

/** Path of a blob in an OCI layout. */
export function blobPath(digest: string, what = "descriptor"): string {
  const { algorithm, hex } = parseDigest(digest, what);
  return `blobs/${algorithm}/${hex}`;
}

/** Checks that a config lists as many DiffIDs as there are layers, each a valid digest. */
export function checkDiffIds(config: ImageConfig, layers: number, what: string): string[] {
  const ids = config?.rootfs?.diff_ids;
  if (!Array.isArray(ids)) throw storeError("EINVAL", "import", what, "the image config has no rootfs.diff_ids");
  if (ids.length !== layers) {
    throw storeError("EINVAL", "import", what, `the config lists ${ids.length} diff_ids for ${layers} layers`);
  }
  ids.forEach((d, i) => parseDigest(d, `${what} diff_ids[${i}]`));
  return ids;
}
