/**
 * thinstack: an embeddable snapshot store for layered container images. It recreates
 * in user space what Docker's devicemapper driver does with dm-thin: a thin pool over a
 * sparse data file, thin devices that take blocks only when written, O(1) snapshots,
 * block-level copy-on-write, and atomic CBOR metadata.
 *
 * @example
 * ```ts
 * import { Pool } from "thinstack";
 *
 * const pool = await Pool.create("/tmp/thin", { dataSize: 1 << 30 });
 * await pool.createThin(1, 256 << 20);
 * await pool.device(1).write(0, new TextEncoder().encode("base image"));
 * await pool.createSnapshot(2, 1);
 * await pool.device(2).write(0, new TextEncoder().encode("container "));
 * console.log(new TextDecoder().decode(await pool.device(1).read(0, 10))); // "base image"
 * await pool.close();
 * ```
 *
 * @module
 */
export { DATA_FILE, METADATA_DIR, Pool } from "./src/pool/pool.ts";
export type { TrimResult } from "./src/pool/pool.ts";
export type { PunchMethod } from "./src/pool/punch.ts";
export type { DiscardMethod } from "./src/pool/discard.ts";
export type { DeltaKind, DeltaOptions, DeltaRange } from "./src/pool/delta.ts";
export { EVENT_LOG, EVENT_LOG_LIMIT, readEventLog } from "./src/pool/events.ts";
export type { LoggedEvent, PoolEventMap, PoolEventName, ReadEventLogOptions } from "./src/pool/events.ts";
export type {
  AutoextendEvent, BlockNo, CommitParticipant, DeferredDeleteError, DeviceId, DeviceInfo, DeviceUsage, LowWaterEvent, MetadataTransaction, PoolCreateOptions,
  PoolOpenOptions, PoolSettings, PoolStatus, ReadLease, ThinDevice, VBlock,
} from "./src/pool/types.ts";
export { MAX_BLOCK_SIZE, MAX_DEVICE_ID, MIN_BLOCK_SIZE } from "./src/pool/types.ts";
export { hasCode, storeError } from "./src/common/errors.ts";
export type { ErrorCode, StoreError } from "./src/common/errors.ts";
export { formatBytes, formatIec, parseSize } from "./src/common/units.ts";
export * from "./src/layers/mod.ts";
export * from "./src/images/mod.ts";
/** Mounting layers over FUSE: `store.mount()`, a served root of many layers, a daemon's mounter. */
export * from "./src/mount/mod.ts";
export type { LayerPath } from "./src/layers/path.ts";
export type { Typed } from "./src/layers/stats.ts";
/** Shapes the layer store's image and changeset methods take and return. */
export type {
  ApplyOptions, ApplyResult, ByteSource, ByteTaps, Change, CheckoutOptions, CheckoutReport, CreateImageOptions, Digest, ExportOptions, ExportResult,
  History, ImageConfig, ImageRecord, ImportOptions, ImportResult, LayerBlobRecord, Platform,
} from "./src/interchange/mod.ts";
/** Shapes the image store's pull and push take and return. */
export type {
  ClientOptions, Credentials, PullOptions, PullResult, PushedLayer, PushOptions, PushResult, RetryPolicy, TransferEvent, TransferState,
} from "./src/registry/mod.ts";
/** Registries on their own: references, credentials, platforms, and pull/push for any `LayerHost` and `ImageCatalog`. */
export * as registry from "./src/registry/mod.ts";
/**
 * The interchange layer on its own: tar reading and writing, OCI apply rules, changesets,
 * OCI layouts and docker-save archives, ChainIDs, for stores other than `LayerStore`.
 */
export * as interchange from "./src/interchange/mod.ts";
