/**
 * A FUSE server of thinstack layers: one connection (/dev/fuse), mounted at a directory,
 * whose root is either one layer or a **served root** whose entries are layers (keys
 * escaped to names, see names.ts). A served root is what a daemon runs: every layer it
 * serves shares one connection, so every container of an image sees the same node for
 * an unchanged image file and the kernel keeps one copy of it in the page cache; a
 * container runtime gets a layer's directory bind-mounted where it wants it.
 *
 * While served, a layer is held in the store (see holds.ts): committing or removing it
 * fails with EBUSY saying to unmount first; a deferred remove unmounts lazily and removes
 * the layer once the kernel lets the mount go (its last user gone).
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { storeError } from "../common/errors.ts";
import type { LayerChange } from "../layers/holds.ts";
import type { LayerStore } from "../layers/store.ts";
import { changedBehind } from "./behind.ts";
import { FuseDevice } from "./device.ts";
import { bindMount, clearMount, fuseUnsupported, isDead, kernelMount, kernelUnmount, type MountEntry, mountSource, mountTable, setReadahead } from "./kernel.ts";
import { servedName } from "./names.ts";
import type { ServedLayer } from "./nodetable.ts";
import { Notify, ROOT_ID, Size } from "./protocol.ts";
import { Reply } from "./codec.ts";
import { registerAttrs } from "./ops/attrs.ts";
import { registerConn } from "./ops/conn.ts";
import { registerDirs } from "./ops/dirs.ts";
import { registerEntries } from "./ops/entries.ts";
import { registerFiles } from "./ops/files.ts";
import { Session, type SessionOptions } from "./session.ts";

/** 1 MiB: the largest READ and WRITE request (FUSE_MAX_PAGES with 256 pages). */
export const MAX_WRITE = 1 << 20;

/** How a server serves; every field has a default. */
export interface ServeOptions {
  /**
   * Seconds the kernel may cache names and attributes of active layers (default 60).
   * Every change made through the mount is the kernel's own, and those made behind it
   * through the store's path API (`store.fs(key)`) are told to the kernel when made
   * (behind.ts), so no change waits for the timeout to be seen.
   */
  activeTimeout?: number;
  /** Seconds for views and committed layers, which never change (default 1 day). */
  frozenTimeout?: number;
  /**
   * Use the kernel's writeback cache (default on): writes go to the page cache and reach
   * the server in large requests, 4 KiB writes ~14x faster than write-through here (see
   * the README's measurements); off, every write() is a request.
   */
  writeback?: boolean;
  /** Read-ahead of the connection in KiB (default 4096; the kernel starts at 128). */
  readahead?: number;
  /** For a served root: one node for a committed file version across layers (default true). */
  share?: boolean;
  /** Where to report requests that failed with an unexpected error (default: stderr when THINSTACK_DEBUG is set). */
  onError?: (line: string) => void;
}

/** Options of {@linkcode LayerServer.add} and {@linkcode LayerServer.bind}. */
export interface ServeLayerOptions {
  /** Refuse changes (EROFS) even for an active layer. Views and committed layers are always read-only. */
  readOnly?: boolean;
}

/** A mount of a layer somewhere: what `mount` and `LayerServer.bind` return. */
export interface LayerMount {
  /** Where the layer is mounted. */
  readonly path: string;
  /** The layer's key. */
  readonly key: string;
  /** True when changes are refused. */
  readonly readOnly: boolean;
  /** Unmounts; EBUSY while it is in use unless `lazy` (the kernel finishes when its last user goes). */
  unmount(options?: { lazy?: boolean }): Promise<void>;
  /** Settles once the mount is gone. */
  readonly closed: Promise<void>;
}

interface Serving {
  served: ServedLayer;
  release: () => void;
  binds: Set<string>;
}

/**
 * A FUSE connection serving layers of a store.
 *
 * @example
 * ```ts ignore
 * const server = await LayerServer.start(store, "/run/thinstack/layers");
 * await server.add("ctr-1");                          // /run/thinstack/layers/ctr-1
 * const m = await server.bind("ctr-1", "/run/ctr-1/rootfs");
 * // ... run the container ...
 * await m.unmount();
 * await server.close();
 * ```
 */
export class LayerServer {
  /** The mount point (a canonical path). */
  readonly path: string;
  /** Settles when the connection has ended (unmounted, or aborted). */
  readonly closed: Promise<void>;
  readonly #store: LayerStore;
  readonly #session: Session;
  readonly #device: FuseDevice;
  readonly #serving = new Map<string, Serving>();
  readonly #mount: MountEntry;
  #single: Serving | undefined;
  #ended = false;

  private constructor(store: LayerStore, session: Session, device: FuseDevice, dir: string, mount: MountEntry, closed: Promise<void>) {
    this.#store = store;
    this.#session = session;
    this.#device = device;
    this.path = dir;
    this.#mount = mount;
    this.closed = closed;
  }

  /**
   * Mounts a served root at `dir` (an existing directory), empty until layers are
   * added. A dead thinstack mount left at `dir` is cleared first; EBUSY for a live one.
   */
  static start(store: LayerStore, dir: string, options: ServeOptions = {}): Promise<LayerServer> {
    return LayerServer.#start(store, dir, options, undefined);
  }

  /** Mounts one layer at `dir` as the connection's root (what `mount()` does). */
  static startSingle(store: LayerStore, key: string, dir: string, options: ServeOptions & ServeLayerOptions = {}): Promise<LayerServer> {
    return LayerServer.#start(store, dir, { ...options, share: false }, { key, readOnly: options.readOnly ?? false });
  }

  static async #start(store: LayerStore, dir: string, options: ServeOptions, single: { key: string; readOnly: boolean } | undefined): Promise<LayerServer> {
    const why = fuseUnsupported();
    if (why) throw storeError("ENOSYS", "mount", dir, why);
    const real = await canonical(dir);
    await clearBeforeMount(real);
    const sessionOptions: SessionOptions = {
      activeTimeout: options.activeTimeout ?? 60,
      frozenTimeout: options.frozenTimeout ?? 86_400,
      maxWrite: MAX_WRITE,
      writeback: options.writeback ?? true,
      share: single ? false : options.share ?? true,
      onError: options.onError ?? (process.env.THINSTACK_DEBUG ? (l) => process.stderr.write(`thinstack mount: ${l}\n`) : undefined),
    };
    const device = FuseDevice.open(MAX_WRITE);
    const session = new Session(store, device, sessionOptions);
    for (const register of [registerConn, registerEntries, registerAttrs, registerFiles, registerDirs]) register(session);
    let first: Serving | undefined;
    // deno-lint-ignore prefer-const -- assigned once below, but the hold's callback made first refers to it
    let server: LayerServer | undefined;
    try {
      if (single) {
        // A deferred remove: unmount lazily; the hold goes (and the layer with it) when the kernel lets go.
        first = LayerServer.#hold(store, session, single.key, single.readOnly, `mounted at '${real}'`, () => void server?.unmount({ lazy: true }).catch(() => {}));
        const served = first.served;
        session.single = served;
        session.table.setRoot({ kind: "dir", ino: served.nodes.root, layer: served.nodes.layer, served, shared: false, path: "/" });
      } else {
        session.table.setRoot({ kind: "root", ino: ROOT_ID, layer: undefined, served: undefined, shared: false, path: "/" });
      }
    } catch (e) {
      device.close();
      throw e;
    }
    let mount: MountEntry;
    try {
      mount = await kernelMount(device.fd, real, { source: mountSource(store.pool.dir), readOnly: first?.served.readOnly, maxRead: MAX_WRITE });
    } catch (e) {
      first?.release();
      device.close();
      throw e;
    }
    const closed = device.serve((buf, done) => session.onRequest(buf, done)).catch(() => {}).then(() => server!.#end());
    server = new LayerServer(store, session, device, real, mount, closed);
    if (first) {
      server.#single = first;
      server.#serving.set(first.served.key, first);
    }
    const ready = await Promise.race([session.initialized.then(() => true), closed.then(() => false)]);
    if (!ready) throw storeError("EIO", "mount", real, "the kernel ended the connection before it was set up");
    // After INIT: its reply caps read-ahead at what the kernel offered (128 KiB).
    await setReadahead(mount.major, mount.minor, options.readahead ?? 4096);
    return server;
  }

  /**
   * Holds `key` in the store for serving, with what a deferred remove does; changes made
   * to it through the store's path API meanwhile are told to the kernel (behind.ts).
   */
  static #hold(store: LayerStore, session: Session, key: string, readOnly: boolean, reason: string, whenIdle: () => void): Serving {
    const nodes = store.nodes(key);
    const served: ServedLayer = { key, name: servedName(key), nodes, readOnly: readOnly || !nodes.writable };
    const changed = nodes.writable ? (c: LayerChange) => changedBehind(session, served, c) : undefined;
    const release = store.hold(key, { reason, releaseWhenIdle: whenIdle, changed });
    return { served, release, binds: new Set() };
  }

  /** The layer a connection serving one layer serves, else undefined. */
  get single(): string | undefined {
    return this.#single?.served.key;
  }

  /** Requests seen per opcode, nodes and open handles: for measurements and tests. */
  stats(): { counts: Record<string, number>; nodes: number; handles: number; minor: number } {
    return { counts: Object.fromEntries(this.#session.counts), nodes: this.#session.table.size, handles: this.#session.handles.size, minor: this.#mount.minor };
  }

  /**
   * Files and directories of layer `key` the kernel holds open on this connection (0 when
   * it is not served). close(2) returns before the kernel's RELEASE reaches the server, so
   * whoever must see a layer's files closed (a commit right after a write) waits for 0.
   */
  openFiles(key: string): number {
    const s = this.#serving.get(key);
    if (!s) return 0;
    const layer = s.served.nodes.layer;
    let n = 0;
    for (const h of this.#session.handles.values()) {
      if (h.kind === "file" ? h.layer === layer || h.served === s.served : h.node.served === s.served) n++;
    }
    return n;
  }

  /**
   * The node id the kernel holds for `path` in layer `key`, if it holds one (tests use
   * it to see which files share a node). Walks the server's own tables, never the mount.
   */
  async nodeOf(key: string, filePath: string): Promise<number | undefined> {
    const s = this.#serving.get(key);
    if (!s) return undefined;
    let dir = this.#session.layerRoot(s.served);
    const parts = filePath.split("/").filter(Boolean);
    for (let i = 0; i < parts.length; i++) {
      const found = await s.served.nodes.lookup(dir.ino, dir.path, parts[i]);
      if (!found) return undefined;
      if (i < parts.length - 1) {
        dir = this.#session.table.dir(s.served, found.ino, path.posix.join(dir.path, parts[i]));
        continue;
      }
      const t = this.#session.table;
      if (found.holder.frozen && this.#session.options.share) return t.sharedNode(found.holder, found.ino)?.id;
      return t.fileNode(s.served, found.ino)?.id;
    }
    return dir.id;
  }

  /**
   * Serves layer `key` in the served root; returns its directory there. Views and
   * committed layers (and `readOnly`) refuse changes with EROFS. EEXIST when served already.
   */
  add(key: string, options: ServeLayerOptions = {}): string {
    if (this.#single) throw storeError("EINVAL", "mount", key, "this connection serves one layer at its root");
    if (this.#ended) throw storeError("ENOTCONN", "mount", this.path, "the server has stopped");
    if (this.#serving.has(key)) throw storeError("EEXIST", "mount", key, "the layer is served already");
    const serving = LayerServer.#hold(this.#store, this.#session, key, options.readOnly ?? false, `mounted at '${path.join(this.path, servedName(key))}'`, () => {
      void this.#retire(key);
    });
    this.#serving.set(key, serving);
    this.#session.layers.set(serving.served.name, serving.served);
    return path.join(this.path, serving.served.name);
  }

  /** Stops serving `key`: its binds are unmounted (EBUSY if in use, unless `lazy`) and its hold released. */
  async remove(key: string, options: { lazy?: boolean } = {}): Promise<void> {
    const s = this.#serving.get(key);
    if (!s || s === this.#single) throw storeError("ENOENT", "umount", key, "the layer is not served here");
    for (const b of [...s.binds]) {
      await kernelUnmount(b, options.lazy);
      s.binds.delete(b);
    }
    this.#unserve(s);
  }

  #unserve(s: Serving): void {
    this.#serving.delete(s.served.key);
    this.#session.layers.delete(s.served.name);
    const name = new TextEncoder().encode(s.served.name);
    const r = Reply.of(Size.NOTIFY_INVAL_ENTRY + name.byteLength + 1);
    r.u64(ROOT_ID).u32(name.byteLength).u32(0).raw(name).pad(1);
    void this.#device.notify(Notify.INVAL_ENTRY, r);
    s.release();
  }

  /** A deferred remove of a served layer: unbind lazily, then let go once no file of it is open. */
  async #retire(key: string): Promise<void> {
    const s = this.#serving.get(key);
    if (!s) return;
    for (const b of [...s.binds]) await kernelUnmount(b, true).catch(() => {});
    s.binds.clear();
    this.#session.layers.delete(s.served.name);
    while (!this.#ended && [...this.#session.handles.values()].some((h) => h.node.served === s.served || (h.kind === "file" && h.served === s.served))) {
      await new Promise((r) => setTimeout(r, 100));
    }
    this.#unserve(s);
  }

  /**
   * Bind-mounts layer `key`'s directory of the served root at `target` (an existing
   * directory), adding the layer first if it is not served; `readOnly` makes the bind
   * read-only (and the layer, when this adds it).
   */
  async bind(key: string, target: string, options: ServeLayerOptions = {}): Promise<LayerMount> {
    if (!this.#serving.has(key)) this.add(key, options);
    const s = this.#serving.get(key)!;
    const real = await canonical(target);
    await bindMount(path.join(this.path, s.served.name), real, options.readOnly || s.served.readOnly);
    s.binds.add(real);
    let done!: () => void;
    const closed = new Promise<void>((r) => (done = r));
    return {
      path: real, key, readOnly: options.readOnly === true || s.served.readOnly, closed,
      unmount: async (o = {}) => {
        if (!s.binds.has(real)) return;
        await kernelUnmount(real, o.lazy);
        s.binds.delete(real);
        done();
      },
    };
  }

  /**
   * Unmounts the connection (binds first): EBUSY while in use unless `lazy`. Resolves
   * once the kernel has ended the connection (with `lazy`, when its last user went).
   */
  async unmount(options: { lazy?: boolean } = {}): Promise<void> {
    if (this.#ended) return;
    for (const s of this.#serving.values()) {
      for (const b of [...s.binds]) {
        await kernelUnmount(b, options.lazy);
        s.binds.delete(b);
      }
    }
    try {
      await kernelUnmount(this.path, options.lazy);
    } catch (e) {
      // Unmounted from outside already: the connection ends by itself.
      if ((e as { code?: string }).code !== "EINVAL") throw e;
    }
    if (!options.lazy) await this.closed;
  }

  /** Unmounts and waits for the end (an alias of `unmount()` for `using`-style cleanup). */
  async close(): Promise<void> {
    await this.unmount();
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#device.close();
    for (const h of this.#session.handles.values()) if (h.kind === "file") void h.file.close().catch(() => {});
    this.#session.handles.clear();
    for (const s of this.#serving.values()) s.release();
    this.#serving.clear();
  }
}

/** The canonical path of directory `dir` (which must exist), without looking inside it. */
async function canonical(dir: string): Promise<string> {
  const abs = path.resolve(dir);
  const parent = await fs.realpath(path.dirname(abs));
  const real = path.join(parent, path.basename(abs));
  return real;
}

/** Clears a dead thinstack mount at `dir`; EBUSY when something live is mounted there. */
async function clearBeforeMount(dir: string): Promise<void> {
  const there = (await mountTable()).filter((m) => m.mountPoint === dir);
  for (const m of there.reverse()) {
    if (m.fsType.startsWith("fuse.thinstack") && (await isDead(dir))) {
      await clearMount(m);
      continue;
    }
    throw storeError("EBUSY", "mount", dir, `${m.fsType} is mounted there already; unmount it first`);
  }
}
