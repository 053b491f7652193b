/**
 * Mounting layers: a FUSE file system in TypeScript over /dev/fuse (no libfuse, no
 * native addon), so that real programs run on thinstack layers with the block
 * copy-on-write underneath. `mount()` serves one layer at a directory; `LayerServer`
 * serves many layers from one connection (a daemon's served root) and bind-mounts
 * them where a container runtime wants them. Needs Linux, root and /dev/fuse.
 *
 * @example
 * ```ts ignore
 * import { LayerStore } from "thinstack";
 * import { mount } from "./src/mount/mod.ts";
 * const store = await LayerStore.open("/var/lib/thinstack");
 * const m = await mount(store, "ctr-1", "/mnt/ctr-1");
 * // ... programs use /mnt/ctr-1 ...
 * await m.unmount();
 * await store.close();
 * ```
 *
 * @module
 */
export { mount, type MountedLayer, type MountOptions } from "./mount.ts";
export { LayerServer, type LayerMount, MAX_WRITE, type ServeLayerOptions, type ServeOptions } from "./server.ts";
export { clearDeadMounts, FS_TYPE, fuseUnsupported, isDead, kernelUnmount, type MountEntry, mountTable } from "./kernel.ts";
export { keyOfName, servedName } from "./names.ts";
