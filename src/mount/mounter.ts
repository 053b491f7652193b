/**
 * A daemon's layers on one FUSE connection: `FuseMounter` keeps a served root (see
 * server.ts) mounted at a fixed directory and serves layers in it on demand, each at
 * `DIR/servedName(key)`, the same directory on every call and across restarts. It has
 * the shape of the daemon's `LayerMounter` (issue 12: ensure, release, restore, served,
 * close) without depending on it: the daemon hands a layer's directory to containerd as
 * a bind mount and containerd binds it where it wants (a container's rootfs, the
 * unpacker's temporary directory). Every container of an image then shares one
 * connection, and the kernel one page cache copy of an unchanged image file.
 *
 * A daemon that was killed leaves its connection dead, and with it the served root and
 * every bind made of it ("Transport endpoint is not connected"). `start` clears all of
 * the store's dead mounts (fusectl abort, lazy unmount) before mounting the served root
 * anew; `restore` then serves again the layers containerd still knows.
 *
 * This process serves the mount, so nothing here looks into it: the mount table comes
 * from /proc, and whatever touches a mount runs in a child process (see kernel.ts).
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import type { LayerStore } from "../layers/store.ts";
import { abortConnection, clearDeadMounts, FS_TYPE, type MountEntry, mountSource, mountTable } from "./kernel.ts";
import { LayerServer, type ServeOptions } from "./server.ts";

/** The kinds of layer a mounter serves: active layers read-write, views read-only. */
export type MountKind = "active" | "view";

/** A layer to serve: its key and kind. */
export interface MountTarget {
  /** The layer's key (a containerd key such as `default/12/extract-...`). */
  key: string;
  /** Active (read-write) or view (read-only). */
  kind: MountKind;
}

/** How long a release waits for the kernel's RELEASE of files closed just before (ms). */
const RELEASE_WAIT_MS = 2_000;
/** How long `close` waits for the kernel to end the connection after the unmount (ms). */
const END_WAIT_MS = 5_000;

/**
 * Layers of a store served over one FUSE connection at a fixed directory.
 *
 * @example
 * ```ts ignore
 * const mounter = await FuseMounter.start(store, "/run/thinstack/layers");
 * await mounter.restore([]);                              // what a daemon does at start
 * const dir = await mounter.ensure("ctr-1", "active");   // /run/thinstack/layers/ctr-1
 * // ... containerd binds dir as a container's rootfs, runs it, unmounts it ...
 * await mounter.release("ctr-1");                         // before commit or remove
 * await mounter.close();
 * ```
 */
export class FuseMounter {
  /** The served root (a canonical path). */
  readonly root: string;
  readonly #server: LayerServer;
  readonly #served = new Map<string, { dir: string; kind: MountKind }>();
  #closing: Promise<void> | undefined;

  private constructor(server: LayerServer) {
    this.#server = server;
    this.root = server.path;
  }

  /**
   * Clears the dead mounts of `store` (a killed server's served root and the binds made
   * of it), then mounts a served root at `dir` (made if missing). ENOSYS where FUSE
   * cannot mount (not root, no /dev/fuse); EBUSY when something live is mounted at `dir`.
   */
  static async start(store: LayerStore, dir: string, options: ServeOptions = {}): Promise<FuseMounter> {
    const real = path.resolve(dir);
    await clearDeadMounts(mountSource(store.pool.dir));
    await fs.mkdir(real, { recursive: true, mode: 0o711 });
    return new FuseMounter(await LayerServer.start(store, real, options));
  }

  /** The connection underneath (for its statistics and node ids). */
  get server(): LayerServer {
    return this.#server;
  }

  /**
   * Serves layer `key` and returns its directory (the same again for a key served
   * already). Views, committed layers and `kind` "view" are read-only (EROFS).
   */
  ensure(key: string, kind: MountKind): Promise<string> {
    const known = this.#served.get(key);
    if (known) return Promise.resolve(known.dir);
    try {
      const dir = this.#server.add(key, { readOnly: kind === "view" });
      this.#served.set(key, { dir, kind });
      return Promise.resolve(dir);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Stops serving `key` (nothing for a key not served), so that the store can commit or
   * remove it. Binds made of its directory elsewhere stay: through them the layer is
   * what it becomes (committed: read-only; removed: gone), as with overlayfs.
   */
  async release(key: string): Promise<void> {
    if (!this.#served.has(key)) return;
    // close(2) returns before its RELEASE reaches the server: a commit right after a
    // write would find the file open. Wait for those; one still open after that is open
    // for real, and the store refuses the commit or remove with EBUSY.
    const deadline = Date.now() + RELEASE_WAIT_MS;
    while (this.#server.openFiles(key) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    await this.#server.remove(key);
    this.#served.delete(key);
  }

  /**
   * Serves exactly `layers` (after a restart: every active layer and view the store
   * has), releasing what is served and not among them.
   */
  async restore(layers: MountTarget[]): Promise<void> {
    const wanted = new Map(layers.map((l) => [l.key, l.kind]));
    for (const key of [...this.#served.keys()]) if (!wanted.has(key)) await this.release(key);
    for (const [key, kind] of wanted) await this.ensure(key, kind);
  }

  /** The keys served now. */
  served(): string[] {
    return [...this.#served.keys()];
  }

  /**
   * Stops serving and unmounts. Binds still made of the layers elsewhere (running
   * containers' rootfs) cannot outlive this process's serving: the connection is
   * aborted, so they fail with ENOTCONN until the next `start` clears them.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      const others = (await this.#mounts()).filter((m) => m.mountPoint !== this.root);
      await this.#server.unmount({ lazy: true });
      const minor = this.#server.stats().minor;
      if (others.length > 0) await abortConnection(minor);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), END_WAIT_MS)));
      const ended = await Promise.race([this.#server.closed.then(() => "ended" as const), timeout]);
      clearTimeout(timer);
      if (ended === "timeout") {
        await abortConnection(minor);
        await this.#server.closed;
      }
      this.#served.clear();
    })();
  }

  /** Every mount of this connection, the served root's among them. */
  async #mounts(): Promise<MountEntry[]> {
    const minor = this.#server.stats().minor;
    return (await mountTable()).filter((m) => m.fsType === FS_TYPE && m.minor === minor);
  }
}
