/**
 * The layer commands' way to the store: through the daemon when `thinstack serve` owns it
 * (docker's CLI-to-daemon model: the record in the store's directory names the socket; see
 * daemon/record.ts), else by opening it as every other command does.
 *
 * @module
 */
import type { Command } from "commander";
import type { LayerInfo, LayerStore, LayerUsage } from "../layers/mod.ts";
import { findDaemon } from "../daemon/record.ts";
import { rootOf, type StoreUse, withStore } from "./context.ts";
import { infoFields } from "./info.ts";

/** What the layer commands (ls, inspect, usage, info, prepare, view, commit, rm) do to a store. */
export interface LayerAccess {
  /** Where the store is reached: `local`, or the daemon's socket. */
  readonly via: "local" | { daemon: string };
  /** Makes an active layer. */
  prepare(key: string, parent?: string): Promise<void>;
  /** Makes a view. */
  view(key: string, parent: string): Promise<void>;
  /** Commits an active layer, keeping its labels. */
  commit(name: string, key: string): Promise<void>;
  /** Removes a layer; its blocks are freed in the background. */
  remove(key: string): Promise<void>;
  /** Every layer. */
  list(): Promise<LayerInfo[]>;
  /** One layer's info. */
  stat(key: string): Promise<LayerInfo>;
  /** Size and inodes of a layer's own changes. */
  usage(key: string): Promise<LayerUsage>;
  /** A layer's device and its mapped, exclusive and shared blocks. */
  blockUsage(key: string): Promise<{ device: number; mapped: number; exclusive: number; shared: number }>;
  /** The `thinstack info` lines. */
  info(): Promise<[string, string][]>;
}

/** Runs `fn` on the store in --root: through its daemon if one serves it, else opened here. */
export async function withLayers<T>(cmd: Command, fn: (layers: LayerAccess) => Promise<T>, options: StoreUse = {}): Promise<T> {
  const daemon = await findDaemon(rootOf(cmd));
  if (daemon) {
    // Loaded only here: commands without a daemon do not pay for gRPC.
    const { SnapshotsClient } = await import("../daemon/client.ts");
    const client = new SnapshotsClient(daemon.address);
    try {
      return await fn(remoteAccess(client));
    } finally {
      client.close();
    }
  }
  return await withStore(cmd, (store, root) => fn(localAccess(store, root)), options);
}

function localAccess(store: LayerStore, root: string): LayerAccess {
  return {
    via: "local",
    prepare: async (key, parent) => void await store.prepare(key, parent),
    view: async (key, parent) => void await store.view(key, parent),
    commit: async (name, key) => void await store.commit(name, key),
    remove: (key) => store.remove(key, { deferred: true }),
    list: () => store.list(),
    stat: (key) => store.stat(key),
    usage: (key) => store.usage(key),
    blockUsage: (key) => Promise.resolve(store.blockUsage(key)),
    info: () => Promise.resolve(infoFields(store.pool, root, store.baseSize)),
  };
}

type Client = import("../daemon/client.ts").SnapshotsClient;

function remoteAccess(client: Client): LayerAccess {
  return {
    via: { daemon: client.address },
    prepare: async (key, parent) => void await client.prepare(key, parent),
    view: async (key, parent) => void await client.view(key, parent),
    // containerd's Commit replaces the labels; the CLI's commit keeps them, as it does locally.
    commit: async (name, key) => await client.commit(name, key, { labels: (await client.stat(key)).labels }),
    remove: (key) => client.remove(key),
    list: () => client.list(),
    stat: (key) => client.stat(key),
    usage: (key) => client.usage(key),
    blockUsage: (key) => client.blockUsage(key),
    info: () => client.info(),
  };
}
