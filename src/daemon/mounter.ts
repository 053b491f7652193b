/**
 * What the daemon needs from the FUSE mount (src/mount's FuseMounter, which `thinstack
 * serve` uses; tests use a recording stand-in): a host directory serving a layer, which the
 * Snapshots API hands to containerd as a bind mount (read-write for an active layer,
 * read-only for a view). containerd mounts it as a container's rootfs, and its unpacker
 * applies each image layer through it before `Commit`.
 *
 * The daemon calls a mounter only from one call at a time per key, and never touches a
 * served directory itself (a process that serves a FUSE mount must not use it).
 *
 * @module
 */
import type { MountKind, MountTarget } from "../mount/mod.ts";
import type { MountMessage } from "./definition.ts";

// The kinds and targets are the FUSE mount's (its FuseMounter is the daemon's mounter).
export type { MountKind, MountTarget };

/**
 * Serves layers of the daemon's store as host directories.
 *
 * The directory of a key must be the same on every call, across restarts of the daemon:
 * containerd keeps the mounts it was given (a running container's rootfs is a bind mount
 * of it) and asks again for them after a restart.
 */
export interface LayerMounter {
  /**
   * Serves layer `key` and returns its host directory; a key already served returns its
   * directory again. Read-only for views.
   */
  ensure(key: string, kind: MountKind): Promise<string>;
  /**
   * Stops serving `key` (before Commit and Remove: the store refuses either for a mounted
   * layer). EBUSY while the directory is still mounted elsewhere or in use; nothing
   * happens for a key not served.
   */
  release(key: string): Promise<void>;
  /**
   * Called once at start, before the socket listens, with every active layer and view in
   * the store. A daemon that died (SIGKILL) leaves its FUSE connections dead and the
   * directories containerd was given unusable ("Transport endpoint is not connected"):
   * clear those and serve the layers again at the same directories, for the containers
   * and mounts containerd still has. What the mounter served that is no longer in `layers`
   * it clears.
   */
  restore(layers: MountTarget[]): Promise<void>;
  /** The keys served now. */
  served(): string[];
  /** Stops serving everything (at shutdown, after the last call). */
  close(): Promise<void>;
}

/** What Prepare, View and Mounts return for a served directory: a bind mount of it. */
export function bindMount(dir: string, kind: MountKind): MountMessage {
  return { type: "bind", source: dir, target: "", options: ["rbind", kind === "active" ? "rw" : "ro"] };
}
