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
  architecture: string;
  os: string;
  variant?: string;
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
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** An image configuration; `rootfs.diff_ids` lists the layers' DiffIDs, bottom first. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  config?: Record<string, unknown>;
  rootfs: { type: string; diff_ids: string[] };
  history?: History[];
  [field: string]: unknown;
}

/** An entry of a `docker save` archive's manifest.json. */
export interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
  LayerSources?: Record<string, Descriptor>;
}
