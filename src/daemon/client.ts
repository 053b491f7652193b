/**
 * A client of `thinstack serve`: containerd's Snapshots calls in the layer store's shapes
 * (LayerInfo, LayerUsage, errors with the store's codes), plus the Control calls. The CLI
 * uses it while a daemon owns the store.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { LayerInfo, LayerUpdate, LayerUsage } from "../layers/mod.ts";
import { clientConstructor, CONTROL_SERVICE, fromTimestamp, type InfoMessage, type MountMessage, MOUNTS_METADATA, SNAPSHOTS_SERVICE } from "./definition.ts";
import { fromStatus } from "./errors.ts";

/** What {@linkcode SnapshotsClient} takes. */
export interface ClientOptions {
  /**
   * Ask for mounts (what containerd does): false sends `thinstack-mounts: none`, so
   * Prepare and View only make the layer. Default false.
   */
  mounts?: boolean;
  /** The name sent as `snapshotter` in every request, as containerd sends its plugin's. Default "thinstack". */
  snapshotter?: string;
}

const KINDS: Record<string, LayerInfo["kind"]> = { ACTIVE: "active", VIEW: "view", COMMITTED: "committed" };

/** An Info message as the layer store's LayerInfo. */
export function fromInfoMessage(m: InfoMessage): LayerInfo {
  return {
    name: m.name, parent: m.parent, kind: KINDS[m.kind] ?? "committed",
    created: fromTimestamp(m.created_at), updated: fromTimestamp(m.updated_at), labels: { ...m.labels },
  };
}

type Call = (request: unknown, metadata: grpc.Metadata, callback: (e: grpc.ServiceError | null, r: unknown) => void) => void;

/** A connection to a daemon's socket. */
export class SnapshotsClient {
  /** The socket. */
  readonly address: string;
  readonly #snapshots: grpc.Client;
  readonly #control: grpc.Client;
  readonly #snapshotter: string;
  readonly #mounts: boolean;

  constructor(address: string, options: ClientOptions = {}) {
    this.address = address;
    this.#snapshotter = options.snapshotter ?? "thinstack";
    this.#mounts = options.mounts ?? false;
    const target = `unix://${address}`;
    const credentials = grpc.credentials.createInsecure();
    this.#snapshots = new (clientConstructor(SNAPSHOTS_SERVICE))(target, credentials);
    // One channel for both services.
    this.#control = new (clientConstructor(CONTROL_SERVICE))(target, credentials, { channelOverride: this.#snapshots.getChannel() });
  }

  /** Makes active layer `key` over `parent`; the mounts to use it by (none unless asked for). */
  async prepare(key: string, parent?: string, options: { labels?: Record<string, string> } = {}): Promise<MountMessage[]> {
    const r = await this.#call(this.#snapshots, "Prepare", { snapshotter: this.#snapshotter, key, parent: parent ?? "", labels: options.labels ?? {} }) as { mounts: MountMessage[] };
    return r.mounts;
  }

  /** Makes view `key` of `parent`; its mounts (none unless asked for). */
  async view(key: string, parent?: string, options: { labels?: Record<string, string> } = {}): Promise<MountMessage[]> {
    const r = await this.#call(this.#snapshots, "View", { snapshotter: this.#snapshotter, key, parent: parent ?? "", labels: options.labels ?? {} }) as { mounts: MountMessage[] };
    return r.mounts;
  }

  /** The mounts of active layer or view `key`. */
  async mounts(key: string): Promise<MountMessage[]> {
    const r = await this.#call(this.#snapshots, "Mounts", { snapshotter: this.#snapshotter, key }) as { mounts: MountMessage[] };
    return r.mounts;
  }

  /** Commits active layer `key` as `name`, with exactly `options.labels` (containerd replaces them). */
  async commit(name: string, key: string, options: { labels?: Record<string, string> } = {}): Promise<void> {
    await this.#call(this.#snapshots, "Commit", { snapshotter: this.#snapshotter, name, key, labels: options.labels ?? {} });
  }

  /** Removes layer `key` (its blocks are freed in the background). */
  async remove(key: string): Promise<void> {
    await this.#call(this.#snapshots, "Remove", { snapshotter: this.#snapshotter, key });
  }

  /** Layer `key`'s info. */
  async stat(key: string): Promise<LayerInfo> {
    const r = await this.#call(this.#snapshots, "Stat", { snapshotter: this.#snapshotter, key }) as { info: InfoMessage };
    return fromInfoMessage(r.info);
  }

  /** Changes labels, as {@linkcode LayerStore.update}. */
  async update(info: LayerUpdate, ...fieldPaths: string[]): Promise<LayerInfo> {
    const r = await this.#call(this.#snapshots, "Update", {
      snapshotter: this.#snapshotter,
      info: { name: info.name, parent: "", kind: "UNKNOWN", labels: info.labels ?? {} },
      update_mask: { paths: fieldPaths },
    }) as { info: InfoMessage };
    return fromInfoMessage(r.info);
  }

  /** Calls `fn` for every layer matching any of `filters` (List, streamed). */
  async walk(fn: (info: LayerInfo) => void | Promise<void>, ...filters: string[]): Promise<void> {
    let infos: LayerInfo[] = [];
    // A List cut off with UNAVAILABLE is asked again (it reads only): under Deno a
    // connection's end (src/daemon/callcap.ts) drops a List still streaming on a Deno
    // client ("Connection dropped"), and the next try goes out on a new connection.
    for (let attempt = 1; ; attempt++) {
      infos = [];
      const failed = await new Promise<grpc.ServiceError | undefined>((resolve) => {
        const stream = (this.#snapshots as unknown as Record<string, (r: unknown) => grpc.ClientReadableStream<{ info: InfoMessage[] }>>)
          .List({ snapshotter: this.#snapshotter, filters });
        stream.on("data", (m: { info: InfoMessage[] }) => infos.push(...m.info.map(fromInfoMessage)));
        stream.on("error", (e: grpc.ServiceError) => resolve(e));
        stream.on("end", () => resolve(undefined));
      });
      if (!failed) break;
      if (failed.code !== grpc.status.UNAVAILABLE || attempt >= 3) throw fromStatus(failed, this.address);
    }
    for (const info of infos) await fn(info);
  }

  /** Every layer's info. */
  async list(): Promise<LayerInfo[]> {
    const out: LayerInfo[] = [];
    await this.walk((info) => {
      out.push(info);
    });
    return out;
  }

  /** What layer `key` alone holds. */
  async usage(key: string): Promise<LayerUsage> {
    const r = await this.#call(this.#snapshots, "Usage", { snapshotter: this.#snapshotter, key }) as { size: number; inodes: number };
    return { size: Number(r.size), inodes: Number(r.inodes) };
  }

  /** Asks the daemon to clean up after removals (containerd calls it after its GC). */
  async cleanup(): Promise<void> {
    await this.#call(this.#snapshots, "Cleanup", { snapshotter: this.#snapshotter });
  }

  /** The `thinstack info` lines of the daemon's store. */
  async info(): Promise<[string, string][]> {
    const r = await this.#call(this.#control, "Info", {}) as { fields: { name: string; value: string }[] };
    return r.fields.map((f) => [f.name, f.value]);
  }

  /** Layer `key`'s device and its mapped, exclusive and shared pool blocks. */
  async blockUsage(key: string): Promise<{ device: number; mapped: number; exclusive: number; shared: number }> {
    const r = await this.#call(this.#control, "BlockUsage", { key }) as Record<string, number>;
    return { device: Number(r.device), mapped: Number(r.mapped), exclusive: Number(r.exclusive), shared: Number(r.shared) };
  }

  /** Closes the connection. */
  close(): void {
    this.#control.close();
    this.#snapshots.close();
  }

  #call(client: grpc.Client, method: string, request: unknown): Promise<unknown> {
    const metadata = new grpc.Metadata();
    if (!this.#mounts) metadata.set(MOUNTS_METADATA, "none");
    const fn = (client as unknown as Record<string, Call>)[method].bind(client);
    return new Promise((resolve, reject) => {
      fn(request, metadata, (e, r) => (e ? reject(fromStatus(e, this.address)) : resolve(r)));
    });
  }
}
