/**
 * What pull and push report as they go: one event stream per layer (and the config and
 * manifest), so a display can keep a bar per layer.
 *
 * @module
 */

/** Where one transfer stands. */
export type TransferState =
  /** Not started: waiting for a free transfer slot (or, on pull, for the layer below). */
  | "waiting"
  /** Looking at what the registry has. */
  | "checking"
  /** Nothing to move: the store (pull) or the repository (push) has it. */
  | "exists"
  /** Push: the registry linked it from another repository (cross-repository mount). */
  | "mounted"
  /** Bytes moving. */
  | "downloading"
  | "uploading"
  /** A connection broke and the transfer picks up again (or starts over). */
  | "retrying"
  /** Finished. */
  | "done";

/** One step of a transfer. */
export interface TransferEvent {
  /** `layer` (with its index, bottom first), `config` or `manifest`. */
  kind: "layer" | "config" | "manifest";
  /** The layer's index in the image (0 for config and manifest). */
  index: number;
  /** How many layers the image has. */
  layers: number;
  /** The blob's digest when known (a push knows it once the layer is made). */
  digest?: string;
  /** Where it stands. */
  state: TransferState;
  /** Bytes moved so far. */
  done: number;
  /** The total, 0 when not known ahead (a push makes each layer as it sends it). */
  total: number;
}
