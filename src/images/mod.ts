/**
 * The image store: the layer store plus images and layer changesets (apply, diff,
 * checkout, import, export). The store that applications and the CLI open.
 *
 * @example
 * ```ts ignore
 * import { ImageStore } from "./mod.ts";
 * const store = await ImageStore.open("/tmp/images", { create: true, dataSize: 2 ** 30 });
 * await store.importImage("busybox.tar", { name: "busybox" });
 * console.log((await store.images()).map((i) => i.name));
 * await store.close();
 * ```
 *
 * @module
 */
export { ImageStore } from "./store.ts";
