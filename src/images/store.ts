/**
 * The image store: the layer store plus images and layer changesets — applying OCI layer
 * tarballs, diffing layers into them, checking a layer out to a directory, and importing,
 * recording and exporting whole images. It is the store applications and the CLI open.
 *
 * It sits above the layer store, the registry client and the interchange code and joins them: the interchange
 * sees the store only through its host interfaces (storeHost), image records live in the
 * layer store's named records, and changesets are read off the layers' own tables.
 *
 * @module
 */
import { hasCode, storeError } from "../common/errors.ts";
import type { ApplyOptions, ApplyResult } from "../interchange/apply.ts";
import type { CheckoutOptions, CheckoutReport } from "../interchange/checkout.ts";
import { fsTarget } from "../interchange/fstarget.ts";
import type { ImageCatalog, ImageRecord, LayerHost } from "../interchange/host.ts";
import { createImage, type CreateImageOptions, exportImage, type ExportOptions, importImage, type ImportOptions, type ImportResult } from "../interchange/images.ts";
import type { ExportResult } from "../interchange/ociwrite.ts";
import { applyToLayer, checkoutLayer, diffLayer } from "../interchange/operations.ts";
import type { ByteSource } from "../interchange/source.ts";
import { storeHost } from "../interchange/storehost.ts";
import { LayerStore, SCRATCH_LABEL } from "../layers/store.ts";
import { clearDeadMounts, mountSource } from "../mount/kernel.ts";
import { mount, type MountedLayer, type MountOptions } from "../mount/mount.ts";
import type { LayerInfo, LayerStoreOptions } from "../layers/types.ts";
import { pull, type PullOptions, type PullResult } from "../registry/pull.ts";
import { KeptBlobs } from "../registry/keptblobs.ts";
import { push, type PushOptions, type PushResult } from "../registry/push.ts";

/** Store records holding images are named this plus the image's name. */
const IMAGE_RECORD = "image/";

/**
 * A layer store with images.
 *
 * @example
 * ```ts ignore
 * import { ImageStore } from "thinstack";
 * const store = await ImageStore.open("/var/lib/thinstack", { create: true, dataSize: 20 * 2 ** 30 });
 * const { layers } = await store.importImage("busybox.tar", { name: "busybox" });
 * await store.prepare("ctr-1", layers.at(-1));
 * await store.checkout("ctr-1", "/run/ctr-1/rootfs");
 * await store.close();
 * ```
 */
export class ImageStore extends LayerStore {
  #layerHost: LayerHost | undefined;
  #kept: KeptBlobs | undefined;
  readonly #mounts = new Set<MountedLayer>();

  /**
   * Opens the store in `dir` at its last commit (see {@linkcode LayerStore.open}); with
   * `create`, makes it when there is none.
   */
  static override async open(dir: string, options: LayerStoreOptions = {}): Promise<ImageStore> {
    // Mounts of this store whose server died ("Transport endpoint is not connected") go first.
    await clearDeadMounts(mountSource(dir)).catch(() => []);
    const store = await super.open(dir, options) as ImageStore;
    // Kept blobs no image names any more, or that a push left half-written (a crash).
    await store.#keptBlobs().sweep(await store.#catalog().listImages());
    return store;
  }

  /**
   * Mounts layer `key` at directory `dir` (FUSE; Linux, root and /dev/fuse): active layers
   * read-write unless `readOnly`, views and committed layers read-only (EROFS). While it
   * is mounted, `commit` and `remove` of the layer fail with EBUSY saying to unmount
   * first; a `remove` with `deferred` unmounts lazily and removes the layer once the last
   * user of the mount has gone. This process serves the mount: touch it only from child
   * processes. `close()` unmounts what is still mounted (EBUSY while it is in use).
   *
   * @example
   * ```ts ignore
   * await store.prepare("ctr-1", "sha256:…");
   * const m = await store.mount("ctr-1", "/run/ctr-1/rootfs");
   * spawnSync("sh", ["-c", `echo hi > ${m.path}/hello`]);
   * await m.unmount();
   * ```
   */
  async mount(key: string, dir: string, options?: MountOptions): Promise<MountedLayer> {
    const m = await mount(this, key, dir, options);
    this.#mounts.add(m);
    void m.closed.then(() => this.#mounts.delete(m));
    return m;
  }

  /** Unmounts the store's mounts (EBUSY while one is in use: the store stays open), then closes it. */
  override async close(): Promise<void> {
    for (const m of [...this.#mounts]) {
      await m.unmount();
      this.#mounts.delete(m);
    }
    await super.close();
  }

  /**
   * Applies a layer tarball (plain or gzip: a path, bytes, a Node stream, an async
   * iterable or a web ReadableStream) to active layer `key` by the OCI rules, all or
   * nothing: on any failure the layer is left as it was.
   *
   * @example
   * ```ts ignore
   * await store.prepare("ctr-1", "sha256:…");
   * const { entries } = await store.apply("ctr-1", "changes.tar.gz");
   * ```
   */
  async apply(key: string, source: ByteSource, options?: ApplyOptions): Promise<ApplyResult> {
    await this.#need(key, "apply");
    return await applyToLayer(this.#host(), key, source, options);
  }

  /**
   * The changes of layer `key` against its parent as an OCI changeset tar, streamed in a
   * deterministic order (the same layer always gives the same bytes).
   *
   * @example
   * ```ts ignore
   * await pipeline(Readable.from(store.diff("ctr-1")), fs.createWriteStream("ctr-1.tar"));
   * ```
   */
  diff(key: string): AsyncGenerator<Uint8Array> {
    this.changes(key); // ENOENT now, not at the first chunk
    return diffLayer(this.#host(), key);
  }

  /**
   * Imports an OCI image layout (directory or tar) or a `docker save` tar. Layers are
   * named by ChainID, so layers already in the store are skipped; digests are checked as
   * bytes stream in, and a failed import leaves nothing behind.
   *
   * @example
   * ```ts ignore
   * const { name, layers } = await store.importImage("busybox.tar", { name: "busybox" });
   * await store.prepare("ctr-1", layers.at(-1));
   * ```
   */
  async importImage(path: string, options?: ImportOptions): Promise<ImportResult> {
    this.records(IMAGE_RECORD); // EBADF on a closed store before any work
    return await importImage(this.#host(), this.#catalog(), path, options);
  }

  /**
   * Pulls image `ref` (`host[:port]/name[:tag|@digest]`) from its registry: layers the
   * store has are skipped, the others stream into their layers with digests checked;
   * a failed pull leaves nothing behind. See src/registry/pull.ts.
   *
   * @example
   * ```ts ignore
   * const { name, layers } = await store.pull("127.0.0.1:5000/app:1", { plainHttp: true });
   * ```
   */
  async pull(ref: string, options?: PullOptions): Promise<PullResult> {
    this.records(IMAGE_RECORD);
    return await pull(this.#host(), this.#catalog(), ref, options, this.#keptBlobs());
  }

  /**
   * Pushes image `name` to `ref` (`host[:port]/name:tag`): layers the registry has or can
   * mount are not sent, those an earlier push kept gzipped (in `blobs/` of the store's
   * directory) go as they are, the others are exported (gzip) as they upload and kept
   * (unless `keepBlobs: false`). See src/registry/push.ts.
   *
   * @example
   * ```ts ignore
   * const { manifestDigest } = await store.push("app:1", "127.0.0.1:5000/app:1", { plainHttp: true });
   * ```
   */
  async push(name: string, ref: string, options?: PushOptions): Promise<PushResult> {
    this.records(IMAGE_RECORD);
    return await push(this.#host(), this.#catalog(), name, ref, options, this.#keptBlobs());
  }

  /** The images in the store, by name. */
  async images(): Promise<ImageRecord[]> {
    return await this.#catalog().listImages();
  }

  /** The image named `name`; ENOENT if there is none. */
  async image(name: string): Promise<ImageRecord> {
    const record = await this.#catalog().getImage(name);
    if (!record) throw storeError("ENOENT", "image", name, "no such image; see images() for the ones there are");
    return record;
  }

  /**
   * Records committed layer `top` and the layers below it as image `name` (replacing an
   * image of that name), as `docker commit` does: each layer is diffed once for its DiffID,
   * so the record's config digest is the one {@linkcode exportImage} writes. The config
   * defaults to linux/amd64 with no `created` time. EINVAL unless `top` is committed.
   *
   * @example
   * ```ts ignore
   * await store.commit("app", "app-build");
   * await store.createImage("app:1", "app", { config: { created: "2026-01-01T00:00:00Z" } });
   * await store.exportImage("app:1", "out/app");
   * ```
   */
  async createImage(name: string, top: string, options?: CreateImageOptions): Promise<ImageRecord> {
    const info = await this.#need(top, "image");
    if (info.kind !== "committed") throw storeError("EINVAL", "image", top, `'${top}' is ${info.kind}; an image is made of committed layers`);
    const layers: string[] = [];
    for (let name = top; name; name = (await this.stat(name)).parent) layers.unshift(name);
    return await createImage(this.#host(), this.#catalog(), name, layers, options);
  }

  /** Forgets image `name` (its layers stay until removed) and the blobs pushes kept for it alone. ENOENT if there is none. */
  async removeImage(name: string): Promise<void> {
    if (!await this.setRecord(IMAGE_RECORD + name, undefined)) throw storeError("ENOENT", "rmi", name, "no such image");
    await this.#keptBlobs().sweep(await this.#catalog().listImages());
  }

  /**
   * Writes image `name` as an OCI layout directory (`format: "oci"`, the default) or a
   * `docker save` tar, with digests, sizes and DiffIDs of the layers' diffs.
   *
   * @example
   * ```ts ignore
   * await store.exportImage("busybox", "out/busybox-oci");
   * ```
   */
  async exportImage(name: string, path: string, options?: ExportOptions): Promise<ExportResult> {
    this.records(IMAGE_RECORD);
    return await exportImage(this.#host(), this.#catalog(), name, path, options);
  }

  /**
   * Writes layer `key`'s merged tree to host directory `dir`: what a runtime needs as a
   * rootfs (modes, owners as root, links, times; device nodes and setuid/setgid bits only
   * with `devices` and `keepSetid`). The directory stays 0700 until the tree is written.
   *
   * @example
   * ```ts ignore
   * await store.checkout("ctr-1", "/run/ctr-1/rootfs");
   * ```
   */
  async checkout(key: string, dir: string, options?: CheckoutOptions): Promise<CheckoutReport> {
    await this.#need(key, "checkout");
    return await checkoutLayer(this.#host(), key, dir, options);
  }

  /** The layer `key`'s info; ENOENT naming `syscall` when there is none. */
  async #need(key: string, syscall: string): Promise<LayerInfo> {
    try {
      return await this.stat(key);
    } catch (e) {
      if (hasCode(e, "ENOENT")) throw storeError("ENOENT", syscall, key, "no such layer");
      throw e;
    }
  }

  #keptBlobs(): KeptBlobs {
    return this.#kept ??= new KeptBlobs(this.pool.dir);
  }

  /** The store as the interchange code sees it, with the store's own changes and transactions. */
  #host(): LayerHost {
    return this.#layerHost ??= storeHost(this, {
      changes: (name) => this.changes(name),
      transaction: (key, fn) => this.transaction(key, (fs) => fn(fsTarget(fs))),
      scratchLabels: { [SCRATCH_LABEL]: "true" },
    });
  }

  #catalog(): ImageCatalog {
    return {
      getImage: (name) => Promise.resolve(this.record(IMAGE_RECORD + name) as ImageRecord | undefined),
      putImage: async (record) => {
        await this.setRecord(IMAGE_RECORD + record.name, record);
      },
      listImages: () => Promise.resolve(
        this.records(IMAGE_RECORD).map(([, r]) => r as ImageRecord).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
      ),
    };
  }
}
