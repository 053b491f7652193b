/**
 * Fetching manifests: a tag or digest resolved to one image manifest (OCI or Docker
 * schema 2), through an index or manifest list when the reference names one, choosing
 * the entry for the wanted platform. Every manifest is checked against the digest that
 * named it, or that the registry announces.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { Hasher, parseDigest } from "../interchange/digest.ts";
import { type Descriptor, type ImageIndex, type ImageManifest, MediaType, type Platform } from "../interchange/spec.ts";
import type { RegistryClient } from "./client.ts";
import { errorDetails, responseError } from "./errors.ts";
import { formatPlatform, platformMatches } from "./platform.ts";
import { formatReference, type Reference } from "./reference.ts";

/** Docker schema 2 types besides those spec.ts lists. */
export const DockerType = {
  layerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  layerForeign: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  schema1: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

const INDEXES = new Set<string>([MediaType.ociIndex, MediaType.dockerList]);
const MANIFESTS = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);
const CONFIGS = new Set<string>([MediaType.ociConfig, MediaType.dockerConfig]);
/** What a manifest GET accepts. */
export const MANIFEST_ACCEPT = [MediaType.ociManifest, MediaType.dockerManifest, MediaType.ociIndex, MediaType.dockerList].join(", ");
/** The spec's advice: registries need not take manifests larger than 4 MiB, nor clients read them. */
const MAX_MANIFEST = 4 * 2 ** 20;
const MAX_DEPTH = 4;

/** A manifest as fetched. */
export interface FetchedManifest {
  /** Its bytes exactly as served: what its digest covers. */
  bytes: Uint8Array;
  digest: string;
  mediaType: string;
}

/** An image manifest a reference resolved to. */
export interface ResolvedImage extends FetchedManifest {
  manifest: ImageManifest;
  /** The platform the index listed it under, if it came from an index. */
  platform?: Platform;
  /** The index (or manifest list) the reference named, if any. */
  index?: FetchedManifest;
}

/** Fetches the manifest `reference` (a tag or digest) names in `ref`'s repository. */
export async function fetchManifest(client: RegistryClient, ref: Reference, reference: string, scopes: string[]): Promise<FetchedManifest> {
  const what = formatReference(ref);
  const res = await client.request("GET", `/v2/${ref.repository}/manifests/${reference}`, {
    scopes, op: "pull", what, headers: { accept: MANIFEST_ACCEPT },
  });
  if (res.status === 404) {
    const details = await errorDetails(res);
    const repo = `${ref.registry}/${ref.repository}`;
    if (/NAME_UNKNOWN/.test(details)) throw storeError("ENOENT", "pull", what, `the registry has no repository '${ref.repository}' (${details})`);
    throw storeError("ENOENT", "pull", what, `${reference.includes(":") ? `no manifest ${reference}` : `no tag '${reference}'`} in '${repo}'${details ? ` (${details})` : ""}`);
  }
  if (!res.ok) throw await responseError(res, "pull", what);
  const announced = Number(res.headers.get("content-length") ?? NaN);
  if (announced > MAX_MANIFEST) {
    await res.body?.cancel();
    throw storeError("EINVAL", "pull", what, `the manifest is ${announced} bytes, over the ${MAX_MANIFEST} a manifest may have`);
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes.length > MAX_MANIFEST) throw storeError("EINVAL", "pull", what, `the manifest is over ${MAX_MANIFEST} bytes`);
  const expected = reference.includes(":") ? reference : res.headers.get("docker-content-digest") ?? undefined;
  const h = new Hasher(expected ? parseDigest(expected, what).algorithm : "sha256");
  h.update(bytes);
  const digest = h.digest();
  if (expected && digest !== expected) {
    throw storeError("EINVAL", "verify", what, `digest mismatch: the manifest should be ${expected} but is ${digest}; it was altered on the way`);
  }
  let mediaType = (res.headers.get("content-type") ?? "").split(";")[0].trim();
  try {
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as { mediaType?: string; schemaVersion?: number };
    if (parsed.mediaType) mediaType = parsed.mediaType;
    if (parsed.schemaVersion === 1) mediaType = DockerType.schema1;
  } catch {
    throw storeError("EINVAL", "pull", what, "the manifest is not valid JSON");
  }
  return { bytes, digest: expected ?? digest, mediaType };
}

function parse<T>(m: FetchedManifest): T {
  return JSON.parse(new TextDecoder().decode(m.bytes)) as T;
}

/** Entries of an index that are images, not attestations or other artifacts. */
function images(index: ImageIndex): Descriptor[] {
  return (index.manifests ?? []).filter((d) =>
    (MANIFESTS.has(d.mediaType) || INDEXES.has(d.mediaType)) &&
    d.annotations?.["vnd.docker.reference.type"] !== "attestation-manifest" &&
    !(d.platform?.os === "unknown" && d.platform?.architecture === "unknown"));
}

/**
 * Resolves `ref` to an image manifest for `want`: through its index when it names one
 * (ENOENT listing the platforms there are when none fits).
 */
export async function resolveImage(client: RegistryClient, ref: Reference, want: Platform, scopes: string[]): Promise<ResolvedImage> {
  const what = formatReference(ref);
  let fetched = await fetchManifest(client, ref, ref.digest ?? ref.tag ?? "latest", scopes);
  let index: FetchedManifest | undefined;
  let platform: Platform | undefined;
  for (let depth = 0; INDEXES.has(fetched.mediaType); depth++) {
    if (depth >= MAX_DEPTH) throw storeError("EINVAL", "pull", what, "indexes nest too deeply");
    index ??= fetched;
    const entries = images(parse<ImageIndex>(fetched));
    const chosen = entries.find((d) => platformMatches(d.platform, want));
    if (!chosen) {
      const have = entries.map((d) => formatPlatform(d.platform));
      throw storeError("ENOENT", "pull", what,
        `no image for ${formatPlatform(want)}; ${have.length ? `the index has ${[...new Set(have)].join(", ")}` : "the index lists no images"}` +
        `${have.length ? "; pick one with --platform" : ""}`);
    }
    platform = chosen.platform;
    fetched = await fetchManifest(client, ref, chosen.digest, scopes);
    if (fetched.bytes.length !== chosen.size) {
      throw storeError("EINVAL", "verify", what, `size mismatch: the index says ${chosen.size} bytes for ${chosen.digest}, the registry gave ${fetched.bytes.length}`);
    }
  }
  if (fetched.mediaType === DockerType.schema1) {
    throw storeError("EINVAL", "pull", what, "the image has a Docker schema 1 manifest, which thinstack does not read; push it again with a current tool");
  }
  if (!MANIFESTS.has(fetched.mediaType)) throw storeError("EINVAL", "pull", what, `not an image manifest (media type '${fetched.mediaType || "none"}')`);
  const manifest = parse<ImageManifest>(fetched);
  if (!manifest?.config?.digest || !Array.isArray(manifest.layers)) throw storeError("EINVAL", "pull", what, "the manifest lacks a config or layers");
  if (manifest.config.mediaType && !CONFIGS.has(manifest.config.mediaType)) {
    throw storeError("EINVAL", "pull", what, `not a container image: its config is '${manifest.config.mediaType}'`);
  }
  parseDigest(manifest.config.digest, `${what} config`);
  for (const [i, l] of manifest.layers.entries()) {
    parseDigest(l?.digest, `${what} layer ${i}`);
    if (!Number.isSafeInteger(l.size) || l.size < 0) throw storeError("EINVAL", "pull", what, `layer ${i} has no valid size`);
    if (/zstd|bzip2|xz/.test(l.mediaType ?? "")) {
      throw storeError("EINVAL", "pull", what, `layer ${i} is '${l.mediaType}'; thinstack reads plain and gzip-compressed layers`);
    }
  }
  return { ...fetched, manifest, platform, index };
}
