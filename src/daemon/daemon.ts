/**
 * The daemon: one open store served on a unix socket, its mounts, and an orderly stop.
 * The caller holds the store's pid lock for as long as the daemon runs (one owner).
 *
 * Start: the mounter restores what a previous daemon served (see
 * {@linkcode LayerMounter.restore}), the socket listens, then the record the CLI looks
 * for is written. Stop (SIGTERM): the record goes (the CLI stops coming here), the server
 * takes no new calls and waits for the ones in flight, the mounter unmounts, the store
 * commits and closes.
 *
 * @module
 */
import type { LayerStore } from "../layers/mod.ts";
import type { LayerMounter, MountTarget } from "./mounter.ts";
import { removeRecord, writeRecord } from "./record.ts";
import { SocketServer } from "./server.ts";
import { SnapshotService } from "./service.ts";
import type { UnpackStaging } from "./staging.ts";

/** What {@linkcode Daemon.start} takes. */
export interface DaemonOptions {
  /** The store, open; the daemon closes it when it stops. */
  store: LayerStore;
  /** The store's directory (where the CLI's record goes). */
  root: string;
  /** The unix socket to serve on. */
  address: string;
  /** Serves layers as directories; none: layers cannot be mounted. */
  mounter?: LayerMounter;
  /** Where extraction snapshots are unpacked (see staging.ts); none: through the mounter. */
  staging?: UnpackStaging;
  /** The `thinstack info` lines. */
  info: () => [string, string][];
  /** How long calls in flight may take to finish once a stop begins (ms). Default 30 s. */
  graceMs?: number;
}

/** A running daemon. */
export class Daemon {
  readonly #options: DaemonOptions;
  readonly #server: SocketServer;
  #stopping: Promise<void> | undefined;

  private constructor(options: DaemonOptions, server: SocketServer) {
    this.#options = options;
    this.#server = server;
  }

  /** The socket served on. */
  get address(): string {
    return this.#server.address;
  }

  /** Restores the mounts, listens and writes the record. The store is closed if this fails. */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const { store, mounter, staging } = options;
    let server: SocketServer | undefined;
    try {
      if (mounter) {
        const layers: MountTarget[] = [];
        for (const l of await store.list()) if (l.kind !== "committed") layers.push({ key: l.name, kind: l.kind });
        await mounter.restore(layers);
        // Staging of layers still active stays (containerd may yet commit them); the rest goes.
        await staging?.restore(layers.filter((l) => l.kind === "active").map((l) => l.key));
      }
      server = await SocketServer.listen(options.address, new SnapshotService({ store, mounter, staging, info: options.info }));
      await writeRecord(options.root, server.address);
      return new Daemon(options, server);
    } catch (e) {
      await server?.close(0).catch(() => {});
      await mounter?.close().catch(() => {});
      await store.close().catch(() => {});
      throw e;
    }
  }

  /** Stops as the module doc says; a second call waits for the first. */
  stop(): Promise<void> {
    return this.#stopping ??= (async () => {
      const { store, mounter, root, graceMs } = this.#options;
      const errors: unknown[] = [];
      const step = async (fn: () => Promise<void>) => {
        try {
          await fn();
        } catch (e) {
          errors.push(e);
        }
      };
      await step(() => removeRecord(root));
      await step(() => this.#server.close(graceMs));
      if (mounter) await step(() => mounter.close());
      await step(() => store.close());
      if (errors.length > 0) throw errors[0];
    })();
  }
}
