/**
 * Store errors as gRPC statuses, the way containerd's snapshotters report them
 * (errdefs/grpc.go `ToGRPC`; snapshots/storage/bolt.go says which class each failure is),
 * and back again on thinstack's own client.
 *
 * The message is the store's, so `ctr` and the CLI print the same sentence. The store's
 * code travels in the `thinstack-code` metadata entry, so thinstack's client rebuilds the
 * error as the store raised it (containerd ignores the entry).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";

/** The metadata entry that carries the store error's code (`ENOENT`, `EBUSY`, ...). */
export const CODE_METADATA = "thinstack-code";

/**
 * gRPC code per store error code, as containerd's classes: ENOENT is ErrNotFound, EEXIST
 * ErrAlreadyExists, EINVAL ErrInvalidArgument (an immutable field in Update, a parent that
 * is not committed); EBUSY is ErrFailedPrecondition (containerd: "cannot remove snapshot
 * with child"), as are EROFS and ENOTEMPTY. A closed store is Unavailable (the daemon is
 * stopping). ENOSPC has no class in containerd; ResourceExhausted says it best.
 */
const CODES: Record<string, grpc.status> = {
  ENOENT: grpc.status.NOT_FOUND,
  EEXIST: grpc.status.ALREADY_EXISTS,
  EINVAL: grpc.status.INVALID_ARGUMENT,
  EBUSY: grpc.status.FAILED_PRECONDITION,
  EROFS: grpc.status.FAILED_PRECONDITION,
  ENOTEMPTY: grpc.status.FAILED_PRECONDITION,
  ENOSPC: grpc.status.RESOURCE_EXHAUSTED,
  EBADF: grpc.status.UNAVAILABLE,
  EPERM: grpc.status.PERMISSION_DENIED,
  EACCES: grpc.status.PERMISSION_DENIED,
  ENOSYS: grpc.status.UNIMPLEMENTED,
};

/** The store codes a gRPC code stands for when a status carries none of its own (a server not ours). */
const ERRNOS: Partial<Record<grpc.status, string>> = {
  [grpc.status.NOT_FOUND]: "ENOENT",
  [grpc.status.ALREADY_EXISTS]: "EEXIST",
  [grpc.status.INVALID_ARGUMENT]: "EINVAL",
  [grpc.status.FAILED_PRECONDITION]: "EBUSY",
  [grpc.status.RESOURCE_EXHAUSTED]: "ENOSPC",
  [grpc.status.PERMISSION_DENIED]: "EPERM",
  [grpc.status.UNIMPLEMENTED]: "ENOSYS",
};

/** A status to send: what grpc-js takes as a handler's error. */
export type StatusError = Partial<grpc.StatusObject> & { code: grpc.status; details: string; metadata: grpc.Metadata };

/**
 * The status for error `e` of a call. `override` reclassifies codes where containerd's
 * class for that call differs from the default (Commit of a view: the store says EINVAL,
 * containerd FailedPrecondition, "snapshot is not active").
 */
export function toStatus(e: unknown, override: Record<string, grpc.status> = {}): StatusError {
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === "string" ? err.code : undefined;
  const details = typeof err?.message === "string" && err.message ? err.message : String(e);
  const metadata = new grpc.Metadata();
  if (code) metadata.set(CODE_METADATA, code);
  const status = code ? override[code] ?? CODES[code] ?? grpc.status.UNKNOWN : grpc.status.UNKNOWN;
  return { code: status, details, metadata };
}

/** The status of an operation the server cannot do (no mounter): Unimplemented, with why. */
export function unimplemented(details: string): StatusError {
  const metadata = new grpc.Metadata();
  metadata.set(CODE_METADATA, "ENOSYS");
  return { code: grpc.status.UNIMPLEMENTED, details, metadata };
}

/** An error from a call, shaped as the store's errors are (`code`, message), for the CLI. */
export function fromStatus(e: unknown, address: string): Error & { code: string } {
  const se = e as Partial<grpc.ServiceError>;
  if (typeof se?.code !== "number") return Object.assign(e instanceof Error ? e : new Error(String(e)), { code: "EIO" });
  const carried = se.metadata?.get(CODE_METADATA)[0];
  if (typeof carried === "string") return Object.assign(new Error(se.details || se.message || carried), { code: carried });
  if (se.code === grpc.status.UNAVAILABLE || se.code === grpc.status.CANCELLED || se.code === grpc.status.DEADLINE_EXCEEDED) {
    return Object.assign(
      new Error(`the daemon at '${address}' did not answer (${se.details || grpc.status[se.code]}); is 'thinstack serve' still running?`),
      { code: "ECONNREFUSED" },
    );
  }
  return Object.assign(new Error(se.details || se.message || grpc.status[se.code]), { code: ERRNOS[se.code] ?? "EIO" });
}
