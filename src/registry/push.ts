/**
 * `push`: an image of the store to a registry. Each layer goes the cheapest way there is
 * (bounded parallel): skipped when the repository has a blob known to hold it (`HEAD`),
 * mounted when another repository of the registry holds one (recorded by pulls and
 * pushes), sent as it is when an earlier push kept its gzipped blob (keptblobs.ts), else
 * made from the store as it is sent: the layer's changeset, gzipped (level 6, as
 * `exportImage` writes it), uploaded in chunks and kept. Then the config (its
 * DiffIDs those of the blobs pushed) and the manifest. The image's record learns which
 * blobs hold its layers and that the repository has them.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { changeset } from "../interchange/changeset.ts";
import { Hasher, sha256 } from "../interchange/digest.ts";
import { gzip } from "../interchange/gzip.ts";
import type { ImageCatalog, ImageRecord, LayerBlobRecord, LayerHost } from "../interchange/host.ts";
import { withDiffIds } from "../interchange/ociwrite.ts";
import { type ImageManifest, MediaType } from "../interchange/spec.ts";
import { tap } from "../interchange/tap.ts";
import { type ClientOptions, RegistryClient } from "./client.ts";
import { errorDetails } from "./errors.ts";
import { KeptBlobDamaged, type KeptBlobs, type KeptBlobWriter } from "./keptblobs.ts";
import { heldBy, knownBlobs } from "./known.ts";
import { DockerType } from "./manifest.ts";
import type { TransferEvent } from "./progress.ts";
import { formatReference, parseReference, repositoryOf, splitRepository } from "./reference.ts";
import { cancelUpload, hasBlob, mountBlob, type UploadTarget } from "./repoblobs.ts";
import { uploadBlob } from "./upload.ts";

/** Options of {@linkcode push}. */
export interface PushOptions extends ClientOptions {
  /**
   * Gzip the layers, or send plain tars. Left out, a layer a blob is known to hold (pulled
   * or pushed before) goes as that blob, gzipped or not, and the others are gzipped; given,
   * every layer goes in that form (known blobs of the other form are not reused).
   */
  gzip?: boolean;
  /** The gzip level, 1 (fastest) to 9 (smallest); default 6, as `exportImage` writes them (the same digests). */
  gzipLevel?: number;
  /**
   * Keep the gzipped blobs this push makes in the store (default true), so that the next
   * push of these layers sends them as they are instead of gzipping again. They take the
   * compressed size of the layers on disk, and go with the last image naming them.
   */
  keepBlobs?: boolean;
  /** Layers moving at once (default 3). */
  concurrency?: number;
  /** Bytes per upload chunk (default 8 MiB); a layer no larger goes in one request. */
  chunkSize?: number;
  /** Progress, per layer. */
  onProgress?: (event: TransferEvent) => void;
}

/** How one layer got there. */
export interface PushedLayer {
  /** Digest of the blob the manifest names. */
  digest: string;
  /** Its size in bytes. */
  size: number;
  /** Digest of its uncompressed tar (the config's DiffID). */
  diffId: string;
  /** Its media type in the manifest. */
  mediaType: string;
  /**
   * `exists`: the repository had it; `mounted`: linked from another repository; `kept`:
   * sent as an earlier push kept it; `uploaded`: made from the layer and sent.
   */
  how: "exists" | "mounted" | "kept" | "uploaded";
  /** The repository it was mounted from. */
  from?: string;
}

/** What a push did. */
export interface PushResult {
  /** The repository pushed to, `host/name`. */
  repository: string;
  /** The tag pushed. */
  tag: string;
  /** Digest of the manifest pushed. */
  manifestDigest: string;
  /** Its media type (OCI, or Docker schema 2 for an image pulled as one). */
  mediaType: string;
  /** Its size in bytes. */
  size: number;
  /** Digest of the config pushed (the image ID there). */
  configDigest: string;
  /** How each layer got there, bottom first. */
  layers: PushedLayer[];
}

const GZIP_TYPES = new Set<string>([MediaType.ociLayerGzip, DockerType.layerGzip]);

/** Runs `fn` on every item, `limit` at a time; the first failure stops new ones and is thrown once all running have ended. */
async function eachLimited<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let failed: { e: unknown } | undefined;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i], i);
      } catch (e) {
        failed ??= { e };
      }
    }
  }));
  if (failed) throw failed.e;
  return out;
}

/**
 * The layer's changeset as the store exports it, gzipped at `level` when there is one and
 * then `diff` sees the tar; a plain tar is its own DiffID, which the upload hashes anyway
 * (hashing it twice cost a tenth of a plain push's main thread).
 */
function layerBlob(host: LayerHost, layer: string, level: number | undefined, diff: Hasher): AsyncIterable<Uint8Array> {
  if (level === undefined) return changeset(host.source(layer));
  // Gzipped as exportImage gzips (gzip.ts, off the main thread under both runtimes): the same tar gives the same blob.
  return gzip(tap(changeset(host.source(layer)), (c) => diff.update(c)), { level });
}

/** `blob`, written to `writer` as it passes (when there is one). */
function keepAs(blob: AsyncIterable<Uint8Array>, writer: KeptBlobWriter | undefined): AsyncIterable<Uint8Array> {
  return writer ? tap(blob, (c) => writer.write(c)) : blob;
}

/**
 * Pushes image `name` of the store to `reference` (which must name a tag).
 *
 * @example
 * ```ts ignore
 * const r = await push(host, catalog, "app:1", "127.0.0.1:5000/team/app:1", { plainHttp: true });
 * console.log(r.manifestDigest);
 * ```
 */
export async function push(
  host: LayerHost, catalog: ImageCatalog, name: string, reference: string, options: PushOptions = {}, kept?: KeptBlobs,
): Promise<PushResult> {
  const record = await catalog.getImage(name);
  if (!record) throw storeError("ENOENT", "push", name, "no such image; see images() for the ones there are");
  const gzip = options.gzip ?? true;
  const level = options.gzipLevel ?? 6;
  if (!Number.isInteger(level) || level < 1 || level > 9) throw storeError("EINVAL", "push", name, `gzip level '${level}' is not a whole number from 1 to 9`);
  const ref = parseReference(reference);
  if (!ref.tag || ref.digest) throw storeError("EINVAL", "push", reference, "push to a tag (host/name:tag); the digest is known only once the manifest is pushed");
  const what = formatReference(ref);
  const repository = repositoryOf(ref);
  const target: UploadTarget = { repository: ref.repository, scopes: [`repository:${ref.repository}:pull,push`], what };
  const client = await RegistryClient.create(ref.registry, options);
  await client.ping();
  const chunkSize = options.chunkSize ?? 8 * 2 ** 20;
  const records = await catalog.listImages();
  const diffIds = record.config.rootfs.diff_ids;
  const count = record.layers.length;
  const report = (kind: TransferEvent["kind"], index: number, state: TransferEvent["state"], done = 0, total = 0, digest?: string) =>
    options.onProgress?.({ kind, index, layers: count, state, done, total, ...(digest ? { digest } : {}) });
  record.layers.forEach((_, i) => report("layer", i, "waiting"));

  const pushLayer = async (layer: string, i: number): Promise<PushedLayer> => {
    report("layer", i, "checking");
    // Blobs known to hold the layer (in the form asked for, if one was): the one the config
    // names first, then gzipped ones.
    const known = knownBlobs(records, layer).filter((b) => options.gzip === undefined || inForm(b.mediaType, gzip)).sort((a, b) =>
      Number(b.diffId === diffIds[i]) - Number(a.diffId === diffIds[i]) || Number(GZIP_TYPES.has(b.mediaType) === gzip) - Number(GZIP_TYPES.has(a.mediaType) === gzip));
    for (const b of known) {
      if (await hasBlob(client, target, b.digest)) {
        report("layer", i, "exists", b.size, b.size, b.digest);
        return { ...pick(b), how: "exists" };
      }
    }
    let session: URL | undefined;
    for (const b of known) {
      for (const holder of b.repositories) {
        const from = splitRepository(holder);
        if (from.registry !== ref.registry || from.repository === ref.repository) continue;
        const r = await mountBlob(client, target, b.digest, from.repository).catch(() => ({ mounted: false, session: undefined }));
        if (r.mounted) {
          if (session) await cancelUpload(client, target, session);
          report("layer", i, "mounted", b.size, b.size, b.digest);
          return { ...pick(b), how: "mounted", from: holder };
        }
        if (r.session && !session) session = r.session;
        else if (r.session) await cancelUpload(client, target, r.session);
      }
    }
    let sent = 0;
    const progress = {
      onBytes: (n: number) => report("layer", i, "uploading", sent += n, 0),
      onRestart: () => report("layer", i, "retrying", sent = 0, 0),
    };
    for (const b of known) {
      if (!kept || !await kept.has(b.digest, b.size)) continue;
      try {
        const blob = await uploadBlob(client, { ...target, what: `${what} layer ${i}` }, () => {
          sent = 0;
          return kept.read(b.digest, b.size);
        }, { chunkSize, session, known: { digest: b.digest, size: b.size }, ...progress });
        // read() checked every byte against the digest before the upload could finish.
        report("layer", i, "done", blob.size, blob.size, blob.digest);
        return { ...pick(b), how: "kept" };
      } catch (e) {
        if (!(e instanceof KeptBlobDamaged)) throw e;
        // Deleted: the layer is made again below (the same bytes), in a fresh upload.
        session = undefined;
      }
    }
    let diff = new Hasher();
    const keeping = gzip && kept && (options.keepBlobs ?? true) ? kept.writer() : undefined;
    try {
      const blob = await uploadBlob(client, { ...target, what: `${what} layer ${i}` }, () => {
        diff = new Hasher();
        sent = 0;
        keeping?.reset();
        return keepAs(layerBlob(host, layer, gzip ? level : undefined, diff), keeping);
      }, { chunkSize, session, ...progress });
      await keeping?.keep(blob.digest);
      report("layer", i, "done", blob.size, blob.size, blob.digest);
      return { ...blob, diffId: gzip ? diff.digest() : blob.digest, mediaType: gzip ? MediaType.ociLayerGzip : MediaType.ociLayer, how: "uploaded" };
    } finally {
      keeping?.abort();
    }
  };
  const pushed = await eachLimited(record.layers, Math.max(1, options.concurrency ?? 3), pushLayer);

  // The config: the record's own bytes when the DiffIDs stay (the image ID stays), else with those pushed.
  const ids = pushed.map((l) => l.diffId);
  const same = ids.length === diffIds.length && ids.every((d, i) => d === diffIds[i]);
  const configText = same && record.configJson && sha256(record.configJson) === record.configDigest
    ? record.configJson
    : JSON.stringify(same ? record.config : withDiffIds(record.config, ids));
  const configBytes = new TextEncoder().encode(configText);
  const configDigest = sha256(configBytes);
  report("config", 0, "checking", 0, configBytes.length, configDigest);
  if (!await hasBlob(client, target, configDigest)) {
    await uploadBlob(client, { ...target, what: `${what} config` }, async function* () {
      yield configBytes;
    }, { chunkSize });
  }
  report("config", 0, "done", configBytes.length, configBytes.length, configDigest);

  const { bytes, mediaType } = manifestFor(record, pushed, configDigest, configBytes.length);
  const digest = sha256(bytes);
  report("manifest", 0, "uploading", 0, bytes.length, digest);
  const res = await client.request("PUT", `/v2/${ref.repository}/manifests/${ref.tag}`, {
    scopes: target.scopes, op: "push", what, body: bytes, headers: { "content-type": mediaType },
  });
  if (res.status !== 201 && res.status !== 200 && res.status !== 204) {
    const details = await errorDetails(res);
    throw storeError(res.status === 401 || res.status === 403 ? "EACCES" : res.status === 400 ? "EINVAL" : "EIO", "push", what,
      `the registry refused the manifest: HTTP ${res.status}${details ? ` (${details})` : ""}`);
  }
  await res.body?.cancel().catch(() => {});
  const said = res.headers.get("docker-content-digest");
  if (said && said !== digest) throw storeError("EIO", "push", what, `the registry stored the manifest as ${said}, not ${digest}`);
  report("manifest", 0, "done", bytes.length, bytes.length, digest);

  await remember(catalog, name, pushed, repository);
  return { repository, tag: ref.tag, manifestDigest: digest, mediaType, size: bytes.length, configDigest, layers: pushed };
}

/** Whether a blob of `mediaType` is a gzipped tar (`gzip`) or a plain one. */
function inForm(mediaType: string, gzip: boolean): boolean {
  return gzip ? GZIP_TYPES.has(mediaType) : mediaType === MediaType.ociLayer;
}

function pick(b: LayerBlobRecord): Omit<PushedLayer, "how"> {
  return { digest: b.digest, size: b.size, diffId: b.diffId, mediaType: b.mediaType };
}

/**
 * The manifest to push: the one pulled, byte for byte, when config and layers are the
 * ones it names (so the digest stays); else a new one, Docker schema 2 if the image came
 * as one, OCI otherwise.
 */
function manifestFor(record: ImageRecord, layers: PushedLayer[], configDigest: string, configSize: number): { bytes: Uint8Array; mediaType: string } {
  let pulled: ImageManifest | undefined;
  try {
    pulled = record.manifestJson ? JSON.parse(record.manifestJson) as ImageManifest : undefined;
  } catch {
    pulled = undefined;
  }
  if (
    pulled && record.manifestJson && pulled.config?.digest === configDigest && pulled.layers?.length === layers.length &&
    pulled.layers.every((d, i) => d.digest === layers[i].digest)
  ) {
    return { bytes: new TextEncoder().encode(record.manifestJson), mediaType: pulled.mediaType ?? MediaType.ociManifest };
  }
  const docker = pulled?.mediaType === MediaType.dockerManifest && layers.every((l) => GZIP_TYPES.has(l.mediaType));
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: docker ? MediaType.dockerManifest : MediaType.ociManifest,
    config: { mediaType: docker ? MediaType.dockerConfig : MediaType.ociConfig, digest: configDigest, size: configSize },
    layers: layers.map((l) => ({
      // The media type says the compression; the family follows the manifest's.
      mediaType: GZIP_TYPES.has(l.mediaType) ? (docker ? DockerType.layerGzip : MediaType.ociLayerGzip) : l.mediaType,
      digest: l.digest,
      size: l.size,
    })),
  };
  return { bytes: new TextEncoder().encode(JSON.stringify(manifest)), mediaType: manifest.mediaType! };
}

/** Records in image `name`'s record which blobs hold its layers, and that `repository` has them. */
async function remember(catalog: ImageCatalog, name: string, layers: PushedLayer[], repository: string): Promise<void> {
  const record = await catalog.getImage(name);
  if (!record) return; // removed meanwhile: nothing to note it in
  const blobs = record.layers.map((_, i) => {
    const l = layers[i];
    const known = [...(record.blobs?.[i] ?? [])];
    const at = known.findIndex((b) => b.digest === l.digest);
    const base: LayerBlobRecord = at >= 0 ? known[at] : { digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: l.diffId, repositories: [] };
    if (at >= 0) known[at] = heldBy(base, repository);
    else known.push(heldBy(base, repository));
    return known;
  });
  await catalog.putImage({ ...record, blobs });
}
