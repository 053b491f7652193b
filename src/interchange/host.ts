/**
 * What the image and layer operations need from the layer store, as two small
 * interfaces the store implements: layer lifecycle with access to layers' trees, and
 * a catalog of images.
 *
 * @module
 */
import type { Digest } from "./digest.ts";
import type { ImageConfig } from "./spec.ts";
import type { LayerTarget } from "./target.ts";
import type { LayerSource, MergedView } from "./view.ts";

/** The layer store, as seen from here. */
export interface LayerHost {
  /** Whether a committed layer of this name exists. */
  exists(name: string): Promise<boolean>;
  /**
   * Makes active layer `key` on committed layer `parent` (or empty). A `scratch` layer is
   * one the store removes at its next open if it is still there (a crash cut its work short).
   */
  prepare(key: string, parent?: string, options?: { scratch?: boolean }): Promise<void>;
  /** Commits active layer `key` as `name` (EEXIST when `name` is taken). */
  commit(name: string, key: string): Promise<void>;
  /** Removes a layer (active or committed, without children). */
  remove(name: string): Promise<void>;
  /** The writable tree of active layer `key`. */
  target(key: string): LayerTarget;
  /** The merged tree of any layer. */
  view(name: string): MergedView;
  /** A layer with its own changes against its parent. */
  source(name: string): LayerSource;
  /**
   * Runs `fn` on a scratch copy of active layer `key` (an O(1) snapshot of it, own
   * changes included) and makes that copy the layer only if `fn` succeeds; otherwise
   * the layer stays exactly as it was.
   */
  transaction<T>(key: string, fn: (target: LayerTarget) => Promise<T>): Promise<T>;
}

/** A registry blob known to hold one layer's changes (see src/registry): pull and push record them. */
export interface LayerBlobRecord {
  /** Digest of the blob as the registry keeps it (compressed or not). */
  digest: Digest;
  /** Its size in bytes. */
  size: number;
  /** Its media type (`application/vnd.oci.image.layer.v1.tar+gzip`...). */
  mediaType: string;
  /** Digest of its uncompressed tar: the DiffID a config lists for it. */
  diffId: Digest;
  /** Repositories known to hold it (`host/name`): where it was pulled from and pushed to. */
  repositories: string[];
}

/** An image in the store. */
export interface ImageRecord {
  /** The image's name in the store (unique). */
  name: string;
  /** Committed layer names (ChainIDs), bottom first. */
  layers: string[];
  /** The top layer's name: what a container is prepared on. */
  top: string;
  /** The image config, as imported or created. */
  config: ImageConfig;
  /** Digest of the config as imported (the image ID). */
  configDigest: Digest;
  /** Digest of the manifest imported, when the image came with one. */
  manifestDigest?: Digest;
  /** The repository (`host/name`) the image was pulled from. */
  repository?: string;
  /** The tag it was pulled by. */
  tag?: string;
  /** Per layer, bottom first, the registry blobs known to hold it (pulled, pushed). */
  blobs?: LayerBlobRecord[][];
  /** The manifest exactly as pulled (JSON text), so a push can send the same bytes. */
  manifestJson?: string;
  /** The config exactly as pulled (JSON text), so a push keeps the image ID. */
  configJson?: string;
}

/** Where the store keeps image records. */
export interface ImageCatalog {
  getImage(name: string): Promise<ImageRecord | undefined>;
  /** Adds or replaces the record of `record.name`. */
  putImage(record: ImageRecord): Promise<void>;
  listImages(): Promise<ImageRecord[]>;
}
