/**
 * Interchange: layer changesets and images. Reading and writing layer tarballs
 * (tar-stream, plain or gzip), applying them to a layer by the OCI rules, diffing a
 * layer into a changeset, checking a layer out to a directory, and importing and
 * exporting images (OCI layouts, docker-save archives) with layers named by ChainID.
 *
 * The layer store plugs in through {@linkcode LayerHost}, {@linkcode LayerTarget},
 * {@linkcode LayerSource} and {@linkcode ImageCatalog}; {@linkcode fsTarget} adapts
 * its `store.fs(key)` to the target and view interfaces.
 *
 * @example
 * ```ts ignore
 * import { applyTar, fsTarget } from "./mod.ts";
 * await store.prepare("extract");
 * await applyTar(fsTarget(store.fs("extract")), "rootfs.tar.gz");
 * ```
 *
 * @module
 */
export { applyTar, type ApplyOptions, type ApplyResult } from "./apply.ts";
export { chainIds } from "./chain.ts";
export { changeset, comparePaths } from "./changeset.ts";
export { checkout, type CheckoutOptions, type CheckoutReport } from "./checkout.ts";
export { type ByteTaps, type Compression, decompressed, sniffCompression } from "./compression.ts";
export { makedev, major, minor } from "./devices.ts";
export { checkDigest, type Digest, Hasher, parseDigest, sha256 } from "./digest.ts";
export { writeDockerArchive } from "./dockerwrite.ts";
export type { EntryAttrs, EntryStat, EntryType, TarEntry, Xattrs } from "./entry.ts";
export { gzip, GZIP_LEVEL, type GzipMode, type GzipOptions } from "./gzip.ts";
export { type FsHandle, type FsLike, type FsStats, fsTarget } from "./fstarget.ts";
export type { ImageCatalog, ImageRecord, LayerBlobRecord, LayerHost } from "./host.ts";
export {
  createImage, type CreateImageOptions, exportImage, type ExportOptions, importImage, type ImportOptions, type ImportResult, importSource,
  type ImportSourceOptions,
} from "./images.ts";
export { type ImageFiles, openImageFiles } from "./imagefiles.ts";
export { readImage } from "./imageread.ts";
export type { ImageSource, LayerBlob } from "./imagesource.ts";
export { METADATA_LIMIT } from "./limits.ts";
export { cleanComponents, OPAQUE_WHITEOUT, parseWhiteout, WHITEOUT_PREFIX, type Whiteout } from "./names.ts";
export { DEFAULT_PLATFORM, type ImageSelector } from "./ocilayout.ts";
export { type ExportInput, type ExportResult, writeOciLayout } from "./ociwrite.ts";
export { type SnapshotterLike, storeHost, type StoreHostOptions } from "./storehost.ts";
export { applyToLayer, checkoutLayer, diffLayer } from "./operations.ts";
export { resolveInRoot } from "./resolve.ts";
export { byteChunks, type ByteSource } from "./source.ts";
export type { Descriptor, DockerManifestEntry, History, ImageConfig, ImageIndex, ImageManifest, Platform } from "./spec.ts";
export { MediaType, REF_NAME } from "./spec.ts";
export type { LayerTarget, NewEntry } from "./target.ts";
export { readTar, type ReadTarOptions } from "./tarread.ts";
export { TarWriter, type WriteEntry, writeTar } from "./tarwrite.ts";
export type { Change, LayerSource, MergedView, TreeReader } from "./view.ts";
export { walkChanges } from "./walkdiff.ts";
