/**
 * Importing and exporting images. Layers are committed under their ChainIDs, so images
 * sharing a base share its layers and an import skips layers already present; every
 * layer's blob digest and DiffID are checked as its bytes stream in, and an import that
 * fails removes the layers it committed, leaving nothing half-imported.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { hasCode, storeError } from "../common/errors.ts";
import { applyTar } from "./apply.ts";
import { chainIds } from "./chain.ts";
import { changeset } from "./changeset.ts";
import { checkDigest, checkSize, Hasher, parseDigest, sha256 } from "./digest.ts";
import { writeDockerArchive } from "./dockerwrite.ts";
import type { ImageCatalog, ImageRecord, LayerHost } from "./host.ts";
import { readImage } from "./imageread.ts";
import type { ImageSource, LayerBlob } from "./imagesource.ts";
import type { ImageSelector } from "./ocilayout.ts";
import { type ExportResult, writeOciLayout } from "./ociwrite.ts";
import type { ImageConfig, Platform } from "./spec.ts";
import { tap } from "./tap.ts";

/** Options of {@linkcode importImage}. */
export interface ImportOptions {
  /** Name of the image in the store. Default: the name the archive gives it, else its config digest. */
  name?: string;
  /** Which image of the archive (ref name or RepoTag). Default: `name` if the archive has it, else the only one. */
  ref?: string;
  /** Platform to pick from a multi-platform index. Default linux/amd64. */
  platform?: Platform;
  /**
   * Called as layer bytes stream in: bytes read so far and the total the manifest
   * announces (0 when it gives no sizes). Layers already in the store count as done.
   */
  onProgress?: (done: number, total: number) => void;
}

/** What an import made. */
export interface ImportResult {
  /** Name of the image in the store: `options.name`, else the archive's name for it, else its config digest. */
  name: string;
  /** Committed layer names (ChainIDs), bottom first: the top is last. */
  layers: string[];
}

async function open(path: string, opts: ImportOptions): Promise<ImageSource> {
  const sel: ImageSelector = { name: opts.ref ?? opts.name, platform: opts.platform };
  try {
    return await readImage(path, sel);
  } catch (e) {
    // `name` only names the image in the store if the archive does not know it.
    if (opts.ref === undefined && opts.name !== undefined && hasCode(e, "ENOENT")) return await readImage(path, { platform: opts.platform });
    throw e;
  }
}

/** Applies one layer blob to active layer `key`, checking its digests. */
async function applyLayer(host: LayerHost, key: string, image: ImageSource, layer: LayerBlob, progress: (n: number) => void): Promise<void> {
  const what = `${image.files.where}:${layer.path}`;
  const blob = new Hasher(layer.digest ? parseDigest(layer.digest, what).algorithm : "sha256");
  const diff = new Hasher(parseDigest(layer.diffId, what).algorithm);
  await applyTar(host.target(key), image.files.open(layer.path), {
    name: what,
    taps: { raw: (c) => (blob.update(c), progress(c.byteLength)), plain: (c) => diff.update(c) },
  });
  if (layer.digest) checkDigest(blob.digest(), layer.digest, what);
  checkSize(blob.bytes, layer.size, what);
  checkDigest(diff.digest(), layer.diffId, `${what} (uncompressed)`);
}

/**
 * Imports the image at `path` (an OCI layout directory or tarball, or a docker-save
 * archive) into the store.
 *
 * @example
 * ```ts ignore
 * const { name, layers } = await importImage(host, catalog, "busybox.tar", { name: "busybox" });
 * await host.prepare("ctr-1", layers.at(-1));
 * ```
 */
export async function importImage(host: LayerHost, catalog: ImageCatalog, path: string, opts: ImportOptions = {}): Promise<ImportResult> {
  return await importSource(host, catalog, await open(path, opts), opts);
}

/** Options of {@linkcode importSource}. */
export interface ImportSourceOptions {
  /** Name of the image in the store. Default: the name the source gives it, else its config digest. */
  name?: string;
  /** As {@linkcode ImportOptions.onProgress}. */
  onProgress?: (done: number, total: number) => void;
  /** More fields for the image's record (where it came from). */
  record?: Partial<ImageRecord>;
}

/**
 * Imports an image already opened: a file's (see {@linkcode importImage}) or a
 * registry's, whose `files` stream each layer blob as it is applied. Closes `image.files`.
 */
export async function importSource(host: LayerHost, catalog: ImageCatalog, image: ImageSource, opts: ImportSourceOptions = {}): Promise<ImportResult> {
  const committed: string[] = [];
  try {
    const chain = chainIds(image.config.rootfs.diff_ids);
    const total = image.layers.reduce((n, l) => n + (l.size ?? 0), 0);
    let done = 0;
    const progress = (n: number) => {
      done += n;
      opts.onProgress?.(done, total);
    };
    for (const [i, layer] of image.layers.entries()) {
      if (await host.exists(chain[i])) {
        progress(layer.size ?? 0);
        continue;
      }
      const key = `import-${randomBytes(8).toString("hex")}`;
      await host.prepare(key, i ? chain[i - 1] : undefined, { scratch: true });
      try {
        await applyLayer(host, key, image, layer, progress);
        await host.commit(chain[i], key);
        committed.push(chain[i]);
      } catch (e) {
        await host.remove(key).catch(() => {});
        // Another import committed the same layer meanwhile: it is the same content.
        if (!(hasCode(e, "EEXIST") && await host.exists(chain[i]))) throw e;
      }
    }
    const name = opts.name ?? image.name ?? image.configDigest;
    const record: ImageRecord = {
      ...opts.record,
      name,
      layers: chain,
      top: chain[chain.length - 1] ?? "",
      config: image.config,
      configDigest: image.configDigest,
      ...(image.manifestDigest ? { manifestDigest: image.manifestDigest } : {}),
    };
    await catalog.putImage(record);
    return { name, layers: chain };
  } catch (e) {
    // Leave nothing half-imported: drop what this import committed, top first.
    for (const name of committed.reverse()) await host.remove(name).catch(() => {});
    throw e;
  } finally {
    await image.files.close();
  }
}

/** Options of {@linkcode createImage}. */
export interface CreateImageOptions {
  /**
   * The image config; its `rootfs` is made from the layers. Default linux/amd64 and
   * nothing else: no `created` unless given, so the same layers give the same image ID.
   */
  config?: Partial<ImageConfig>;
}

/**
 * Records committed layers `layers` (bottom first, each the parent of the next) as image
 * `name`, replacing an image of that name: what `docker commit` makes of a container.
 * The config's DiffIDs are the digests of the layers' changesets, so the record's
 * config digest is the one {@linkcode exportImage} writes.
 *
 * @example
 * ```ts ignore
 * await createImage(host, catalog, "app:1", ["base", "app"], { config: { created: "2026-01-01T00:00:00Z" } });
 * await exportImage(host, catalog, "app:1", "out/app");
 * ```
 */
export async function createImage(
  host: LayerHost, catalog: ImageCatalog, name: string, layers: string[], opts: CreateImageOptions = {},
): Promise<ImageRecord> {
  const diffIds: string[] = [];
  for (const layer of layers) {
    if (!await host.exists(layer)) throw storeError("ENOENT", "image", layer, "no such committed layer; commit it first");
    const h = new Hasher();
    for await (const chunk of changeset(host.source(layer))) h.update(chunk);
    diffIds.push(h.digest());
  }
  // Key order as the export writes it (rootfs last), so the digest is the exported config's.
  const config: ImageConfig = { architecture: "amd64", os: "linux", ...opts.config, rootfs: { type: "layers", diff_ids: diffIds } };
  const record: ImageRecord = {
    name,
    layers: [...layers],
    top: layers[layers.length - 1] ?? "",
    config,
    configDigest: sha256(JSON.stringify(config)),
  };
  await catalog.putImage(record);
  return record;
}

/** Options of {@linkcode exportImage}. */
export interface ExportOptions {
  /** `oci` (a layout directory, gzipped layers; the default) or `docker` (a docker-save tar). */
  format?: "oci" | "docker";
  /** Ref name (OCI) or tag (docker) to write; default the image's name. */
  ref?: string;
  /**
   * Called as the layers' tars are made: uncompressed bytes so far, and the total, which
   * is not known ahead (always 0: each layer's tar is made from its tables as it is written).
   */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Writes image `name` to `path`. Layers are the store's diffs of each layer against
 * its parent, so DiffIDs (and so the config digest) are those of these diffs.
 */
export async function exportImage(host: LayerHost, catalog: ImageCatalog, name: string, path: string, opts: ExportOptions = {}): Promise<ExportResult> {
  const record = await catalog.getImage(name);
  if (!record) throw storeError("ENOENT", "export", name, "no such image; importImage it first");
  let done = 0;
  const made = (l: string) => {
    const tar = changeset(host.source(l));
    const report = opts.onProgress;
    return report ? tap(tar, (c) => report(done += c.byteLength, 0)) : tar;
  };
  const input = { name: opts.ref ?? record.name, config: record.config, layers: record.layers.map((l) => () => made(l)) };
  return (opts.format ?? "oci") === "docker" ? await writeDockerArchive(path, input) : await writeOciLayout(path, input);
}
