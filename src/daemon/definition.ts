/**
 * The gRPC services `thinstack serve` speaks, loaded at run time from the `.proto` files in
 * `proto/`: containerd's `containerd.services.snapshots.v1.Snapshots` (containerd 1.6's
 * api/services/snapshots/v1/snapshots.proto, field for field) and thinstack's own
 * `thinstack.daemon.v1.Control` (what the CLI needs beyond it). Messages are plain
 * objects with the proto's field names (`created_at`, `update_mask`), 64-bit integers as
 * numbers and enums as their names, every field present (defaults filled in).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTO_DIR = fileURLToPath(new URL("./proto/", import.meta.url));
const SNAPSHOTS_PROTO = "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto";
const CONTROL_PROTO = "thinstack/daemon/v1/control.proto";

/** The Snapshots service's full name, as containerd dials it. */
export const SNAPSHOTS_SERVICE = "containerd.services.snapshots.v1.Snapshots";
/** thinstack's own service on the same socket. */
export const CONTROL_SERVICE = "thinstack.daemon.v1.Control";

/** How messages look in JavaScript (see the module doc). */
const LOAD_OPTIONS: protoLoader.Options = {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
};

let loaded: protoLoader.PackageDefinition | undefined;

function definitions(): protoLoader.PackageDefinition {
  return loaded ??= protoLoader.loadSync([SNAPSHOTS_PROTO, CONTROL_PROTO], LOAD_OPTIONS);
}

/** The service definition of `name` (one of the two above), for a server or a client. */
export function serviceDefinition(name: typeof SNAPSHOTS_SERVICE | typeof CONTROL_SERVICE): grpc.ServiceDefinition {
  return definitions()[name] as grpc.ServiceDefinition;
}

/** A client constructor for service `name`. */
export function clientConstructor(name: typeof SNAPSHOTS_SERVICE | typeof CONTROL_SERVICE): grpc.ServiceClientConstructor {
  return grpc.makeClientConstructor(serviceDefinition(name) as grpc.ServiceDefinition, name);
}

/**
 * The metadata entry by which a client that only manages layers (the CLI) asks Prepare
 * and View for no mounts: value `none` (see service.ts).
 */
export const MOUNTS_METADATA = "thinstack-mounts";

/** containerd's `Kind` enum, by name. */
export type KindName = "UNKNOWN" | "VIEW" | "ACTIVE" | "COMMITTED";

/** google.protobuf.Timestamp. */
export interface Timestamp {
  /** Seconds since the Unix epoch. */
  seconds: number;
  /** Nanoseconds within the second, 0..999,999,999. */
  nanos: number;
}

/** containerd.types.Mount: what containerd passes to mount(2) (or to a mount helper). */
export interface MountMessage {
  /** The file system type, such as `bind` or `overlay`. */
  type: string;
  /** What is mounted: a host directory for a bind mount. */
  source: string;
  /** Where, inside the container (unused by snapshotters). */
  target: string;
  /** fstab-style options: `rbind`, `ro`, `rw`. */
  options: string[];
}

/** containerd.services.snapshots.v1.Info. */
export interface InfoMessage {
  /** The key of an active snapshot or view, the name of a committed one. */
  name: string;
  /** The parent's name, `""` for none. */
  parent: string;
  /** Active, view or committed. */
  kind: KindName;
  /** When it was made. */
  created_at: Timestamp | null;
  /** When its record last changed. */
  updated_at: Timestamp | null;
  /** Its labels. */
  labels: Record<string, string>;
}

/**
 * A store time as a Timestamp. The store keeps milliseconds: its time `m` is an instant in
 * [m, m + 1 ms), and the Timestamp is the last nanosecond of that millisecond, so it is
 * never earlier than the instant (containerd checks that a snapshot's times fall within
 * the call that set them; the service replies to such calls only once that millisecond has
 * passed, see service.ts). {@linkcode fromTimestamp} gives `m` back.
 */
export function toTimestamp(date: Date): Timestamp {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 + 999_999 };
}

/** A Timestamp as a Date (the millisecond it falls in); the epoch for none. */
export function fromTimestamp(ts: Timestamp | null | undefined): Date {
  if (!ts) return new Date(0);
  return new Date(Number(ts.seconds) * 1000 + Math.floor(Number(ts.nanos) / 1_000_000));
}
