/**
 * Mounting layers: a FUSE file system in TypeScript over /dev/fuse (no libfuse, no
 * native addon), so that real programs run on thinstack layers with the block
 * copy-on-write underneath. `store.mount()` (or `mount(store, ...)`) serves one layer at
 * a directory; `LayerServer` serves many layers from one connection (a served root) and
 * bind-mounts them where a container runtime wants them; `FuseMounter` is what a daemon
 * keeps: a served root at a fixed directory, layers served on demand, dead mounts of a
 * killed predecessor cleared at start. Needs Linux, root and /dev/fuse; the process that
 * serves a mount must never use it itself (spawn child processes for that).
 *
 * @example
 * ```ts ignore
 * import { spawnSync } from "node:child_process";
 * import { ImageStore } from "thinstack";
 * const store = await ImageStore.open("/var/lib/thinstack");
 * await store.prepare("ctr-1", "sha256:…");
 * const m = await store.mount("ctr-1", "/mnt/ctr-1");
 * spawnSync("sh", ["-c", "echo hi > /mnt/ctr-1/hello"]);
 * await m.unmount();
 * await store.close();
 * ```
 *
 * @module
 */
export { mount, type MountedLayer, type MountOptions } from "./mount.ts";
export { LayerServer, type LayerMount, MAX_WRITE, type ServeLayerOptions, type ServeOptions } from "./server.ts";
export { FuseMounter, type MountKind, type MountTarget } from "./mounter.ts";
export { clearDeadMounts, FS_TYPE, fuseUnsupported, isDead, kernelUnmount, type MountEntry, mountSource, mountTable } from "./kernel.ts";
export { keyOfName, servedName } from "./names.ts";
