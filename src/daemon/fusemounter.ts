/**
 * The daemon's {@linkcode LayerMounter}: one FUSE connection (src/mount's `LayerServer`)
 * mounted at a served root (`DIR/mnt` by default, as Docker's devicemapper kept
 * `/var/lib/docker/devicemapper/mnt`), whose entries are the layers containerd asked for.
 * A layer's directory there is what Prepare, View and Mounts hand containerd as a bind
 * mount; containerd binds it where it wants it (a container's rootfs, the unpacker's
 * temporary directory), so every container of an image shares one connection and the
 * kernel keeps one page cache copy of an unchanged image file.
 *
 * The directory of a key is `ROOT/servedName(key)`: the same across restarts. A daemon
 * that was killed leaves its connection dead, and with it the served root and every bind
 * containerd made of it; starting again clears those (fusectl abort, lazy unmount) before
 * mounting the served root anew.
 *
 * This process serves the mount, so it never looks into it: the mount table is read from
 * /proc, and everything that touches a mount runs in a child process (see mount/kernel.ts).
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import type { LayerStore } from "../layers/store.ts";
import { abortConnection } from "../mount/kernel.ts";
import { clearDeadMounts, FS_TYPE, LayerServer, type MountEntry, mountTable, type ServeOptions } from "../mount/mod.ts";
import type { LayerMounter, MountKind, MountTarget } from "./mounter.ts";

/** The served root's directory in a store's directory unless told otherwise. */
export const MOUNT_DIR = "mnt";

/** How long a release waits for the kernel's RELEASE of files just closed (ms). */
const RELEASE_WAIT_MS = 2_000;

/** How long a stop waits for the kernel to end the connection after the last unmount (ms). */
const END_WAIT_MS = 5_000;

/** Layers served over one FUSE connection; see the module doc. */
export class FuseMounter implements LayerMounter {
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
   * Clears the dead mounts a killed daemon of `store` left (its served root and the binds
   * containerd made of it), then mounts a served root at `dir` (made if missing). ENOSYS
   * where FUSE cannot mount (not root, no /dev/fuse); EBUSY when something live is
   * mounted at `dir`.
   */
  static async start(store: LayerStore, dir: string, options: ServeOptions = {}): Promise<FuseMounter> {
    const real = path.resolve(dir);
    await clearDeadMounts(sourceOf(store));
    await fs.mkdir(real, { recursive: true, mode: 0o711 });
    return new FuseMounter(await LayerServer.start(store, real, options));
  }

  /** The server underneath (for its statistics). */
  get server(): LayerServer {
    return this.#server;
  }

  ensure(key: string, kind: MountKind): Promise<string> {
    const known = this.#served.get(key);
    if (known) return Promise.resolve(known.dir);
    const dir = this.#server.add(key, { readOnly: kind === "view" });
    this.#served.set(key, { dir, kind });
    return Promise.resolve(dir);
  }

  async release(key: string): Promise<void> {
    const s = this.#served.get(key);
    if (!s) return;
    // A close(2) returns before its RELEASE reaches the server: a Commit right after a
    // write would find the file open. Wait for those; a file still open after that is
    // open for real, and the store refuses the commit or remove with EBUSY.
    const deadline = Date.now() + RELEASE_WAIT_MS;
    while (this.#server.openFiles(key) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    // Binds containerd still has of it stay (its suite commits a layer it has mounted, as
    // overlayfs allows): through them the layer is what it becomes, committed (EROFS) or gone.
    await this.#server.remove(key);
    this.#served.delete(key);
  }

  async restore(layers: MountTarget[]): Promise<void> {
    const wanted = new Map(layers.map((l) => [l.key, l.kind]));
    for (const key of [...this.#served.keys()]) if (!wanted.has(key)) await this.release(key);
    for (const [key, kind] of wanted) await this.ensure(key, kind);
  }

  served(): string[] {
    return [...this.#served.keys()];
  }

  /**
   * Stops serving. Mounts containerd still has of the layers (running containers' rootfs)
   * cannot outlive this process's serving: the connection is aborted, so they fail with
   * ENOTCONN until the next start clears them.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      const others = (await this.#connectionMounts()).filter((m) => m.mountPoint !== this.root);
      await this.#server.unmount({ lazy: true });
      if (others.length > 0) await abortConnection(this.#server.stats().minor);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), END_WAIT_MS)));
      const ended = await Promise.race([this.#server.closed.then(() => "ended" as const), timeout]);
      clearTimeout(timer);
      if (ended === "timeout") {
        await abortConnection(this.#server.stats().minor);
        await this.#server.closed;
      }
      this.#served.clear();
    })();
  }

  /** Every mount of this connection, the served root's among them. */
  async #connectionMounts(): Promise<MountEntry[]> {
    const minor = this.#server.stats().minor;
    return (await mountTable()).filter((m) => m.fsType === FS_TYPE && m.minor === minor);
  }
}

/** What the mount table shows as the source of a store's mounts (LayerServer's `thinstack:DIR`). */
function sourceOf(store: LayerStore): string {
  return `thinstack:${store.pool.dir}`;
}
