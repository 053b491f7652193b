/**
 * `thinstack serve`: the store served to containerd (a proxy snapshotter plugin) and to
 * the CLI on a unix socket, until SIGTERM or SIGINT. See daemon/daemon.ts.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { ImageStore } from "../images/mod.ts";
import { Daemon } from "../daemon/daemon.ts";
import type { LayerMounter } from "../daemon/mounter.ts";
import { UnpackStaging } from "../daemon/staging.ts";
import { FuseMounter, fuseUnsupported } from "../mount/mod.ts";
import { hasStore, note, openStore, withStoreLock } from "./context.ts";
import { infoFields } from "./info.ts";

/** Makes the mounter of a daemon's store (the FUSE mount), or none. */
export type MounterFactory = (store: ImageStore, root: string) => Promise<LayerMounter | undefined>;

/**
 * Where the daemon's served root goes in the store's directory unless told otherwise (as
 * Docker's devicemapper kept /var/lib/docker/devicemapper/mnt).
 */
export const MOUNT_DIR = "mnt";
/** Where the daemon stages image layers containerd unpacks, under the store's directory. */
export const STAGING_DIR = "staging";

/**
 * The CLI's mounter: the FUSE mount (src/mount's FuseMounter, one connection for every
 * layer), its served root at `mountRoot` (default `DIR/mnt`).
 * Where FUSE cannot mount (not root, no /dev/fuse) the daemon serves without one, saying why.
 */
export function fuseMounter(mountRoot?: string): MounterFactory {
  return async (store, root) => {
    const why = fuseUnsupported();
    if (why) {
      note(`layers cannot be mounted here: ${why}`);
      return undefined;
    }
    return await FuseMounter.start(store, mountRoot ?? path.join(root, MOUNT_DIR));
  };
}

/** What {@linkcode runServe} takes besides the store and the socket. */
export interface ServeOptions {
  /** The layer mounter. None: Prepare, View and Mounts answer Unimplemented to containerd. */
  mounter?: MounterFactory;
  /**
   * Have containerd's unpacker write image layers through the FUSE mount, as containers
   * do, instead of into a staging directory applied at Commit (see daemon/staging.ts).
   */
  unpackThroughMount?: boolean;
  /** Called once the socket listens and the CLI's record is written. */
  onReady?: (daemon: Daemon) => void;
}

/**
 * Serves the store in `root` (made with the defaults when there is none) on `address`
 * until SIGTERM or SIGINT, holding the store's lock throughout; then stops in order
 * (calls in flight finish, mounts go, the store commits and closes).
 */
export async function runServe(root: string, address: string, options: ServeOptions = {}): Promise<void> {
  await fs.mkdir(root, { recursive: true });
  await withStoreLock(root, async () => {
    let store: ImageStore;
    if (hasStore(root)) store = await openStore(root);
    else {
      store = await ImageStore.open(root, { create: true });
      note(`created a store in ${root} with the default sizes (see 'thinstack init' for others)`);
    }
    let mounter: LayerMounter | undefined;
    try {
      mounter = await options.mounter?.(store, root);
    } catch (e) {
      await store.close().catch(() => {});
      throw e;
    }
    const staging = mounter && !options.unpackThroughMount
      ? new UnpackStaging(path.join(root, STAGING_DIR), (key, tar) => store.apply(key, tar, { whiteouts: "overlay" }))
      : undefined;
    const daemon = await Daemon.start({ store, root, address: path.resolve(address), mounter, staging, info: () => infoFields(store.pool, root, store.baseSize) });
    const signalled = new Promise<string>((resolve) => {
      for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => resolve(signal));
    });
    note(`serving ${root} on ${daemon.address}${mounter ? "" : "; no layer mounter: containerd's Prepare, View and Mounts are refused (Unimplemented)"}`);
    options.onReady?.(daemon);
    const signal = await signalled;
    note(`${signal}: finishing the calls in flight, then closing the store`);
    await daemon.stop();
  });
}
