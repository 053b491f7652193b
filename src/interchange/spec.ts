/**
 * The OCI image-spec and Docker image documents this module reads and writes: media
 * types, descriptors, indexes, manifests and configs (only the fields used here are
 * typed; the rest is kept as it comes).
 *
 * @module
 */

/** Media types of OCI and Docker image documents and layers. */
export const MediaType = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
} as const;

/** Annotation holding a manifest's name in an OCI layout's index. */
export const REF_NAME = "org.opencontainers.image.ref.name";

/** Where an image runs. */
export interface Platform {
  /** CPU architecture, as Go's GOARCH: `amd64`, `arm64`. */
  architecture: string;
  /** Operating system, as Go's GOOS: `linux`. */
  os: string;
  /** CPU variant, such as `v8` for arm64. */
  variant?: string;
  /** Operating system version (Windows images). */
  "os.version"?: string;
}

/** A reference to a blob. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

/** An image index (or Docker manifest list). Docker 25 writes `manifests: null`. */
export interface ImageIndex {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[] | null;
  annotations?: Record<string, string>;
}

/** An image manifest. */
export interface ImageManifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** One step of an image's history. */
export interface History {
  /** When the step ran, as an RFC 3339 date-time. */
  created?: string;
  /** The command that ran, such as a Dockerfile instruction. */
  created_by?: string;
  /** A free-form comment. */
  comment?: string;
  /** True when the step made no layer (it changed only the config). */
  empty_layer?: boolean;
}

/** An image configuration; `rootfs.diff_ids` lists the layers' DiffIDs, bottom first. */
export interface ImageConfig {
  /** CPU architecture the image runs on, as in {@linkcode Platform}. */
  architecture?: string;
  /** Operating system the image runs on. */
  os?: string;
  /** CPU variant, as in {@linkcode Platform}. */
  variant?: string;
  /** When the image was made, as an RFC 3339 date-time. */
  created?: string;
  /** How to run a container of it (`Env`, `Cmd`, `WorkingDir`...), kept as it comes. */
  config?: Record<string, unknown>;
  /** The layers: `type` is `"layers"`; `diff_ids` are the digests of their uncompressed tars. */
  rootfs: { type: string; diff_ids: string[] };
  /** The steps that built the image, oldest first. */
  history?: History[];
  /** Any other field, kept as it comes. */
  [field: string]: unknown;
}

/** An entry of a `docker save` archive's manifest.json. */
export interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
  LayerSources?: Record<string, Descriptor>;
}
