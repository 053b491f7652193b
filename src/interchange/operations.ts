/**
 * The layer operations the store offers on top of its lifecycle: applying a changeset
 * to an active layer, diffing a layer, checking one out to a directory.
 *
 * @module
 */
import { applyTar, type ApplyOptions, type ApplyResult } from "./apply.ts";
import { changeset } from "./changeset.ts";
import { checkout, type CheckoutOptions, type CheckoutReport } from "./checkout.ts";
import type { LayerHost } from "./host.ts";
import type { ByteSource } from "./source.ts";

/**
 * Applies a layer tarball to active layer `key`, all or nothing: on any failure (a
 * malformed archive, an invalid whiteout, a full pool) the layer is left as it was.
 */
export function applyToLayer(host: LayerHost, key: string, source: ByteSource, options: ApplyOptions = {}): Promise<ApplyResult> {
  return host.transaction(key, (target) => applyTar(target, source, options));
}

/** The changeset tar of layer `name` against its parent. */
export function diffLayer(host: LayerHost, name: string): AsyncGenerator<Uint8Array> {
  return changeset(host.source(name));
}

/** Writes layer `name`'s merged tree to `dir`. */
export function checkoutLayer(host: LayerHost, name: string, dir: string, options: CheckoutOptions = {}): Promise<CheckoutReport> {
  return checkout(host.view(name), dir, options);
}
