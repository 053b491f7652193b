/**
 * `pull`: an image from a registry into the store. The manifest (through its index, for
 * the wanted platform) and config are fetched and checked; layers the store has (by
 * ChainID) are skipped; the others stream from the registry through digest and DiffID
 * checks straight into their layers, with the next layers downloading meanwhile. The
 * image is recorded with its repository, tag, manifest and the blobs it came in (so a
 * push can mount them). Any failure leaves no layer or image of this pull behind.
 *
 * @module
 */
import { hasCode, storeError } from "../common/errors.ts";
import { chainIds } from "../interchange/chain.ts";
import { Hasher, parseDigest } from "../interchange/digest.ts";
import type { ImageCatalog, LayerHost } from "../interchange/host.ts";
import { type ImportResult, importSource } from "../interchange/images.ts";
import { blobPath, checkDiffIds, type ImageSource } from "../interchange/imagesource.ts";
import { type ImageConfig, MediaType, type Platform } from "../interchange/spec.ts";
import { RegistryFiles } from "./blobfiles.ts";
import { type ClientOptions, RegistryClient } from "./client.ts";
import { BlobDownload } from "./download.ts";
import { KeepingFiles, type KeptBlobs } from "./keptblobs.ts";
import { manifestBlobs } from "./known.ts";
import { resolveImage } from "./manifest.ts";
import { formatPlatform, hostPlatform, platformMatches } from "./platform.ts";
import type { TransferEvent } from "./progress.ts";
import { formatReference, parseReference, type Reference, repositoryOf } from "./reference.ts";

/** Options of {@linkcode pull}. */
export interface PullOptions extends ClientOptions {
  /** Name of the image in the store; default the reference as docker shows it (`busybox:latest`). */
  name?: string;
  /** Platform to pick from an index; default this host's (linux on its CPU). */
  platform?: Platform;
  /** Layer downloads at once (the one being applied and those fetched ahead; default 3). */
  concurrency?: number;
  /** Bytes a layer fetched ahead may buffer in memory (default 16 MiB). */
  prefetchBytes?: number;
  /**
   * Keep the layer blobs as the registry sent them (default true, as containerd's content
   * store does), so that a push of the image sends those bytes at rest instead of
   * gzipping its layers again, and keeps its manifest digest where it cannot mount them
   * (another registry). They take the compressed size of the layers on disk; `false`
   * keeps none.
   */
  keepBlobs?: boolean;
  /** Progress, per layer. */
  onProgress?: (event: TransferEvent) => void;
}

/** What a pull did. */
export interface PullResult extends ImportResult {
  /** The repository pulled from, `host/name`. */
  repository: string;
  /** The tag pulled, if the reference named one. */
  tag?: string;
  /** Digest of the image manifest (the platform's, when the reference names an index). */
  manifestDigest: string;
  /** Digest of the index the reference named, if it named one. */
  indexDigest?: string;
  /** Digest of the config: the image ID. */
  configDigest: string;
  /** The platform of the image pulled. */
  platform: Platform;
  /** Layers downloaded. */
  downloaded: number;
  /** Layers the store had already (by ChainID), not downloaded. */
  skipped: number;
  /** Layer bytes received (more than the blobs' sizes when a download resumed from scratch). */
  bytes: number;
}

/** The text of JSON bytes, when it gives the same bytes back (so it can be kept as text). */
function asText(bytes: Uint8Array): string | undefined {
  const text = new TextDecoder().decode(bytes);
  const back = new TextEncoder().encode(text);
  return back.length === bytes.length && back.every((b, i) => b === bytes[i]) ? text : undefined;
}

/** A small blob (the config), whole, checked against its digest and size. */
async function fetchSmallBlob(client: RegistryClient, ref: Reference, digest: string, size: number, scopes: string[]): Promise<Uint8Array> {
  const what = `${repositoryOf(ref)}@${digest}`;
  if (size > 64 * 2 ** 20) throw storeError("EINVAL", "pull", what, `the config claims ${size} bytes; configs are small JSON documents`);
  const h = new Hasher(parseDigest(digest, what).algorithm);
  const out = new Uint8Array(size);
  let at = 0;
  for await (const c of new BlobDownload(client, { repository: ref.repository, digest, size, scopes, what }, size + 1).chunks()) {
    out.set(c, at);
    at += c.length;
    h.update(c);
  }
  const got = h.digest();
  if (got !== digest) throw storeError("EINVAL", "verify", what, `digest mismatch: expected ${digest}, got ${got}; the registry or something on the way sent corrupt bytes`);
  return out;
}

/**
 * Pulls `reference` into the store.
 *
 * @example
 * ```ts ignore
 * const { name, layers } = await pull(host, catalog, "127.0.0.1:5000/app:1", { plainHttp: true });
 * await host.prepare("ctr-1", layers.at(-1));
 * ```
 */
export async function pull(
  host: LayerHost, catalog: ImageCatalog, reference: string, options: PullOptions = {}, kept?: KeptBlobs,
): Promise<PullResult> {
  const ref = parseReference(reference);
  const what = formatReference(ref);
  const repository = repositoryOf(ref);
  const scopes = [`repository:${ref.repository}:pull`];
  const client = await RegistryClient.create(ref.registry, options);
  await client.ping();
  const want = options.platform ?? hostPlatform();
  const resolved = await resolveImage(client, ref, want, scopes);
  const m = resolved.manifest;
  const configBytes = await fetchSmallBlob(client, ref, m.config.digest, m.config.size, scopes);
  let config: ImageConfig;
  try {
    config = JSON.parse(new TextDecoder().decode(configBytes)) as ImageConfig;
  } catch {
    throw storeError("EINVAL", "pull", what, "the image config is not valid JSON");
  }
  const platform: Platform = resolved.platform ?? { os: config.os ?? "", architecture: config.architecture ?? "", ...(config.variant ? { variant: config.variant } : {}) };
  if (!resolved.index && options.platform && config.architecture && !platformMatches(platform, options.platform)) {
    throw storeError("ENOENT", "pull", what, `no image for ${formatPlatform(options.platform)}; '${what}' is for ${formatPlatform(platform)} only`);
  }
  const diffIds = checkDiffIds(config, m.layers.length, `${what} config`);
  const chain = chainIds(diffIds);
  const have = await Promise.all(chain.map((c) => host.exists(c)));
  const layers = m.layers.map((d, i) => ({ path: blobPath(d.digest), digest: d.digest, size: d.size, diffId: diffIds[i], mediaType: d.mediaType }));

  const count = m.layers.length;
  const report = (index: number, state: TransferEvent["state"], done: number, total: number) =>
    options.onProgress?.({ kind: "layer", index, layers: count, digest: m.layers[index].digest, state, done, total });
  const received = new Map<number, number>();
  const files = new RegistryFiles(
    client, repository,
    m.layers.map((d, index) => ({ repository: ref.repository, digest: d.digest, size: d.size, scopes, what: `${repository}@${d.digest}`, index })),
    layers.filter((_, i) => !have[i]).map((l) => l.path),
    {
      concurrency: Math.max(1, options.concurrency ?? 3),
      highWater: options.prefetchBytes ?? 16 * 2 ** 20,
      onLayer: (index, t) => {
        if (t.state !== "done") received.set(index, t.done);
        report(index, t.state === "resuming" ? "retrying" : t.state, t.done, t.total);
      },
    },
  );
  m.layers.forEach((d, i) => report(i, have[i] ? "exists" : "waiting", have[i] ? d.size : 0, d.size));
  const keeping = (options.keepBlobs ?? true) && kept ? new KeepingFiles(files, kept, new Map(layers.map((l) => [l.path, l.digest]))) : undefined;
  const image: ImageSource = {
    format: resolved.mediaType === MediaType.dockerManifest ? "docker" : "oci",
    name: what,
    config,
    configBytes,
    configDigest: m.config.digest,
    manifestDigest: resolved.digest,
    layers,
    files: keeping ?? files,
  };
  const manifestJson = asText(resolved.bytes);
  const configJson = asText(configBytes);
  let result: ImportResult;
  try {
    result = await importSource(host, catalog, image, {
      name: options.name ?? what,
      record: {
        repository,
        ...(ref.tag ? { tag: ref.tag } : {}),
        blobs: manifestBlobs(m, diffIds, repository),
        ...(manifestJson ? { manifestJson } : {}),
        ...(configJson ? { configJson } : {}),
      },
    });
    // The import checked every blob's digest: keep what came.
    await keeping?.keep();
  } catch (e) {
    keeping?.abort();
    throw await explain(e, files, layers);
  }
  const downloaded = have.filter((h) => !h).length;
  return {
    ...result,
    repository,
    ...(ref.tag ? { tag: ref.tag } : {}),
    manifestDigest: resolved.digest,
    ...(resolved.index ? { indexDigest: resolved.index.digest } : {}),
    configDigest: m.config.digest,
    platform,
    downloaded,
    skipped: count - downloaded,
    bytes: [...received.values()].reduce((a, b) => a + b, 0),
  };
}

/**
 * A layer that failed to decode (gzip, tar) may be a corrupt blob: its digest says which.
 * The blob is fetched again and hashed; a wrong digest is the error to report.
 */
async function explain(e: unknown, files: RegistryFiles, layers: { path: string; digest: string }[]): Promise<unknown> {
  const message = (e as Error)?.message ?? "";
  if (!hasCode(e, "EINVAL") || /digest mismatch|size mismatch/.test(message) || !files.lastOpened) return e;
  const layer = layers.find((l) => l.path === files.lastOpened);
  if (!layer) return e;
  let actual: string;
  try {
    actual = await files.rehash(layer.path);
  } catch {
    return e;
  }
  if (actual === layer.digest) return e;
  const err = storeError("EINVAL", "verify", `${files.where}@${layer.digest}`,
    `digest mismatch: expected ${layer.digest}, got ${actual}; the registry or something on the way sent corrupt bytes (${message.split("\n")[0]})`);
  return Object.assign(err, { cause: e });
}
