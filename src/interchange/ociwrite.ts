/**
 * Writing an OCI image layout: layers gzipped into `blobs/sha256/`, then config,
 * manifest, and an `index.json` entry carrying the image's ref name. Blobs are written
 * under a temporary name and renamed once their digest is known.
 *
 * Gzip is what an export waits for (a diff runs ten times faster than deflate at level
 * 6), so it runs off the main thread (gzip.ts) and several layers are compressed at
 * once, each with room to run ahead of the file writes and behind the diff, so it does
 * not stop for either.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import fsp from "node:fs/promises";
import os from "node:os";
import nodePath from "node:path";
import { hasCode } from "../common/errors.ts";
import { Hasher, type Digest } from "./digest.ts";
import { gzip as gzipped } from "./gzip.ts";
import { writeChunks } from "./hostio.ts";
import { type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest, MediaType, REF_NAME } from "./spec.ts";
import { tap } from "./tap.ts";

/** An image to write: a config and its layers' uncompressed tars, bottom first. */
export interface ExportInput {
  /** Ref name (OCI) or repository tag (docker-save). */
  name?: string;
  /** The config; its rootfs.diff_ids are replaced by the layers written. */
  config: ImageConfig;
  /** Each layer's tar, made when written. */
  layers: Array<() => AsyncIterable<Uint8Array>>;
}

/** What was written. */
export interface ExportResult {
  /** Digest of the config written (the image ID). */
  configDigest: Digest;
  /** Digest of the manifest written; absent for a docker-save archive, which has none. */
  manifestDigest?: Digest;
  /**
   * Each layer as written, bottom first: blob digest and size in bytes (of the gzipped blob
   * when compressed), and DiffID (digest of the uncompressed tar).
   */
  layers: { digest: Digest; size: number; diffId: Digest }[];
}

async function exists(path: string): Promise<boolean> {
  return await fsp.stat(path).then(() => true, (e) => (hasCode(e, "ENOENT") ? false : Promise.reject(e)));
}

/** Layers compressed at once, at most: one per core, up to 4. */
export const PARALLEL = Math.max(1, Math.min(4, os.availableParallelism?.() ?? os.cpus().length));

/** `fn` of each item, at most `limit` running at once, results in order; the first failure is thrown once all have ended. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  const failures: unknown[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length && failures.length === 0) {
      const i = next++;
      try {
        out[i] = await fn(items[i]);
      } catch (e) {
        failures.push(e);
      }
    }
  }));
  if (failures.length) throw failures[0];
  return out;
}

/** Writes `chunks` as a blob of layout `dir`; returns digest and size. */
async function writeBlob(dir: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<{ digest: Digest; size: number }> {
  const tmp = nodePath.join(dir, "blobs", "sha256", `.tmp-${randomBytes(8).toString("hex")}`);
  const h = new Hasher();
  try {
    await writeChunks(tmp, tap((async function* () { yield* chunks; })(), (c) => h.update(c)));
    const digest = h.digest();
    await fsp.rename(tmp, nodePath.join(dir, "blobs", "sha256", digest.slice(7)));
    return { digest, size: h.bytes };
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

/** Writes a JSON document as a blob. */
async function writeJsonBlob(dir: string, value: unknown, mediaType: string): Promise<Descriptor & { bytes: Uint8Array }> {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  const { digest, size } = await writeBlob(dir, [bytes]);
  return { mediaType, digest, size, bytes };
}

/** The config with the DiffIDs of the layers as written. */
export function withDiffIds(config: ImageConfig, diffIds: Digest[]): ImageConfig {
  return { ...config, rootfs: { type: "layers", diff_ids: diffIds } };
}

/**
 * Writes `image` into the OCI layout at `dir` (created if missing; an existing layout
 * gains the image, replacing one of the same ref name).
 *
 * @example
 * ```ts ignore
 * await writeOciLayout("out/", { name: "latest", config, layers: [() => changeset(src)] });
 * ```
 */
export async function writeOciLayout(dir: string, image: ExportInput, options: { gzip?: boolean } = {}): Promise<ExportResult> {
  const gzip = options.gzip ?? true;
  await fsp.mkdir(nodePath.join(dir, "blobs", "sha256"), { recursive: true });
  if (!await exists(nodePath.join(dir, "oci-layout"))) {
    await fsp.writeFile(nodePath.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  }
  const layers: ExportResult["layers"] = await mapLimited(image.layers, gzip ? PARALLEL : 1, async (make) => {
    const diff = new Hasher();
    const plain = tap(make(), (c) => diff.update(c));
    const blob = await writeBlob(dir, gzip ? gzipped(plain) : plain);
    return { ...blob, diffId: diff.digest() };
  });
  const config = await writeJsonBlob(dir, withDiffIds(image.config, layers.map((l) => l.diffId)), MediaType.ociConfig);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: gzip ? MediaType.ociLayerGzip : MediaType.ociLayer, digest: l.digest, size: l.size })),
  };
  const m = await writeJsonBlob(dir, manifest, MediaType.ociManifest);
  const entry: Descriptor = { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
  if (image.config.os && image.config.architecture) {
    entry.platform = { os: image.config.os, architecture: image.config.architecture, ...(image.config.variant ? { variant: image.config.variant } : {}) };
  }
  if (image.name) entry.annotations = { [REF_NAME]: image.name };
  const indexPath = nodePath.join(dir, "index.json");
  let index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };
  if (await exists(indexPath)) index = JSON.parse(await fsp.readFile(indexPath, "utf8")) as ImageIndex;
  index.manifests = (index.manifests ?? []).filter((d) => !image.name || d.annotations?.[REF_NAME] !== image.name);
  index.manifests.push(entry);
  const tmp = `${indexPath}.tmp-${randomBytes(4).toString("hex")}`;
  await fsp.writeFile(tmp, JSON.stringify(index));
  await fsp.rename(tmp, indexPath);
  return { configDigest: config.digest, manifestDigest: m.digest, layers };
}

