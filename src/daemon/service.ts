/**
 * containerd's Snapshots service over a layer store: the handlers `thinstack serve`
 * registers, after containerd's contrib/snapshotservice (what stargz-snapshotter and nydus
 * serve), with the store's containerd semantics underneath.
 *
 * Keys are kept as containerd sends them (`default/12/extract-...`: the namespace, a
 * counter and the key). Labels pass through untouched, `containerd.io/snapshot.ref` and
 * `containerd.io/gc.*` among them. A Commit replaces the labels with the request's, as
 * containerd's snapshotters do ("replace labels, do not inherit").
 *
 * Mounts: Prepare, View and Mounts return a bind mount of the directory the
 * {@linkcode LayerMounter} serves the layer at. A server with no mounter answers them with
 * Unimplemented, before anything is made: handing containerd no mounts would have its
 * unpacker apply a layer into a temporary directory and commit an empty snapshot. A
 * client that only manages layers (the thinstack CLI) sends `thinstack-mounts: none`;
 * Prepare and View then make the layer and return no mounts, with or without a mounter
 * (Mounts serves it later).
 *
 * With an {@linkcode UnpackStaging}, the extraction snapshots containerd's unpacker
 * prepares get an overlay mount of a staging directory over the parent's served
 * directory instead, applied to the layer at Commit (see staging.ts): the unpacker writes
 * at the disk's speed, not through a FUSE round trip per operation.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { LayerInfo, LayerStore } from "../layers/mod.ts";
import { type InfoMessage, type KindName, type MountMessage, MOUNTS_METADATA, toTimestamp } from "./definition.ts";
import { toStatus, unimplemented, type StatusError } from "./errors.ts";
import { KeyLock } from "./keylock.ts";
import { bindMount, type LayerMounter, type MountKind } from "./mounter.ts";
import { overlayMount, type StagingDirs, UnpackStaging } from "./staging.ts";

/** Infos per List message, as containerd's contrib service batches them. */
const LIST_BATCH = 100;
/** THINSTACK_TRACE=1: each call's start (ms since the daemon started), method, key and time on stderr. */
const TRACE = Boolean(process.env.THINSTACK_TRACE);

/** The store calls the service uses. */
export type SnapshotStore = Pick<
  LayerStore,
  "prepare" | "view" | "commit" | "remove" | "stat" | "update" | "walk" | "list" | "usage" | "blockUsage" | "sync" | "pool"
>;

/** What a {@linkcode SnapshotService} serves. */
export interface ServiceOptions {
  /** The store. */
  store: SnapshotStore;
  /** Serves layers as host directories; none: layers cannot be mounted (see the module doc). */
  mounter?: LayerMounter;
  /** Where extraction snapshots are unpacked; none: through the mounter, like every layer. */
  staging?: UnpackStaging;
  /** The `thinstack info` lines, for the Control service. */
  info: () => [string, string][];
}

const KIND: Record<LayerInfo["kind"], KindName> = { active: "ACTIVE", view: "VIEW", committed: "COMMITTED" };

/** A LayerInfo as containerd's Info message. */
export function toInfoMessage(info: LayerInfo): InfoMessage {
  return {
    name: info.name, parent: info.parent, kind: KIND[info.kind],
    created_at: toTimestamp(info.created), updated_at: toTimestamp(info.updated), labels: { ...info.labels },
  };
}

type Req = Record<string, unknown>;
type Unary = (request: Req, metadata: grpc.Metadata) => Promise<unknown>;

/** The handlers of containerd's Snapshots service and of thinstack's Control service. */
export class SnapshotService {
  readonly #store: SnapshotStore;
  readonly #mounter: LayerMounter | undefined;
  readonly #staging: UnpackStaging | undefined;
  readonly #info: () => [string, string][];
  readonly #keys = new KeyLock();

  constructor(options: ServiceOptions) {
    this.#store = options.store;
    this.#mounter = options.mounter;
    this.#staging = options.mounter ? options.staging : undefined;
    this.#info = options.info;
  }

  /** The Snapshots handlers, for `server.addService`. */
  snapshots(): grpc.UntypedServiceImplementation {
    return {
      Prepare: this.#unary((r, md) => this.#create("active", r, md)),
      View: this.#unary((r, md) => this.#create("view", r, md)),
      Mounts: this.#unary((r) => this.#mounts(String(r.key))),
      Commit: this.#unary((r) => this.#commit(String(r.name), String(r.key), labelsOf(r)), { EINVAL: grpc.status.FAILED_PRECONDITION }),
      Remove: this.#unary((r) => this.#remove(String(r.key))),
      Stat: this.#unary(async (r) => ({ info: toInfoMessage(await this.#store.stat(String(r.key))) })),
      Update: this.#unary((r) => this.#update(r)),
      List: (call: grpc.ServerWritableStream<Req, unknown>) => this.#list(call),
      Usage: this.#unary((r) => this.#usage(String(r.key))),
      Cleanup: this.#unary(() => this.#cleanup()),
    };
  }

  /** The Control handlers (`thinstack info`, thin_ls block counts). */
  control(): grpc.UntypedServiceImplementation {
    return {
      Info: this.#unary(() => Promise.resolve({ fields: this.#info().map(([name, value]) => ({ name, value })) })),
      BlockUsage: this.#unary((r) => Promise.resolve(this.#store.blockUsage(String(r.key)))),
    };
  }

  #unary(fn: Unary, override?: Record<string, grpc.status>): grpc.handleUnaryCall<Req, unknown> {
    return (call, callback) => {
      if (TRACE) {
        const t0 = performance.now();
        const what = `${call.getPath().replace(/^.*\//, "")} ${String(call.request.key ?? call.request.name ?? "")}`;
        const reply = callback as (e: unknown, r: unknown) => void;
        callback = ((e: unknown, r: unknown) => {
          process.stderr.write(`thinstack serve: at ${t0.toFixed(0)} ${what} ${(performance.now() - t0).toFixed(1)} ms${e ? ` (${(e as Error).message})` : ""}\n`);
          reply(e, r);
        }) as typeof callback;
      }
      fn(call.request, call.metadata).then(
        (response) => callback(null, response),
        (e) => callback(isStatus(e) ? e : toStatus(e, override)),
      );
    };
  }

  async #create(kind: MountKind, r: Req, md: grpc.Metadata): Promise<{ mounts: MountMessage[] }> {
    const key = String(r.key);
    const wantMounts = md.get(MOUNTS_METADATA)[0] !== "none";
    if (wantMounts && !this.#mounter) throw noMounter();
    return await this.#keys.run(key, async () => {
      const options = { labels: labelsOf(r) };
      const parent = String(r.parent ?? "") || undefined;
      await pastMillisecond(kind === "active" ? await this.#store.prepare(key, parent, options) : await this.#store.view(key, parent, options));
      if (!wantMounts) return { mounts: [] };
      try {
        if (kind === "active" && this.#staging && UnpackStaging.isUnpack(key)) {
          return { mounts: [await this.#stagedMount(await this.#staging.create(key), parent)] };
        }
        return { mounts: [bindMount(await this.#mounter!.ensure(key, kind), kind)] };
      } catch (e) {
        // Nothing half-made: containerd retries the whole Prepare.
        await this.#staging?.drop(key).catch(() => {});
        await this.#store.remove(key).catch(() => {});
        throw e;
      }
    });
  }

  #mounts(key: string): Promise<{ mounts: MountMessage[] }> {
    return this.#keys.run(key, async () => {
      const info = await this.#store.stat(key);
      if (info.kind === "committed") {
        throw toStatus(Object.assign(new Error(`requested snapshot '${key}' is committed, not active or view: committed snapshots are not mounted; prepare or view one over it`), { code: "EBUSY" }));
      }
      if (!this.#mounter) throw noMounter();
      const staged = await this.#staging?.staged(key);
      if (staged) return { mounts: [await this.#stagedMount(staged, info.parent)] };
      return { mounts: [bindMount(await this.#mounter.ensure(key, info.kind), info.kind)] };
    });
  }

  /** A layer's own size and inodes; a staged one's are what the unpacker wrote so far. */
  async #usage(key: string): Promise<unknown> {
    const staged = await this.#staging?.staged(key);
    if (staged) {
      await this.#store.stat(key); // NotFound as for any layer
      return await this.#staging!.usage(staged);
    }
    return await this.#store.usage(key);
  }

  /** The overlay mount of a staged layer: its upper over the parent's served directory (read-only), or over nothing. */
  async #stagedMount(dirs: StagingDirs, parent: string | undefined): Promise<MountMessage> {
    return overlayMount(dirs, parent ? await this.#mounter!.ensure(parent, "view") : dirs.empty);
  }

  #commit(name: string, key: string, labels: Record<string, string>): Promise<Record<string, never>> {
    return this.#keys.run(key, async () => {
      // The store refuses to commit a mounted layer: containerd unmounted it before Commit.
      if (this.#mounter?.served().includes(key)) await this.#mounter.release(key);
      // What the unpacker wrote, into the layer first (all or nothing: on failure the layer is as it was).
      const staged = await this.#staging?.staged(key);
      if (staged) await this.#staging!.applyTo(key);
      await pastMillisecond(await this.#store.commit(name, key, { labels }));
      if (staged) await this.#staging!.drop(key);
      return {};
    });
  }

  #remove(key: string): Promise<Record<string, never>> {
    return this.#keys.run(key, async () => {
      await this.#store.stat(key); // NotFound before anything is unmounted
      if (this.#mounter?.served().includes(key)) await this.#mounter.release(key);
      // Deferred: the layer is gone at once, its blocks are freed in the background
      // (containerd's GC removes many snapshots in a row; Cleanup waits for them).
      await this.#store.remove(key, { deferred: true });
      await this.#staging?.drop(key);
      return {};
    });
  }

  async #update(r: Req): Promise<{ info: InfoMessage }> {
    const info = (r.info ?? {}) as Partial<InfoMessage>;
    const paths = ((r.update_mask as { paths?: string[] } | null)?.paths ?? []).map(String);
    const updated = await this.#store.update({ name: String(info.name ?? ""), labels: { ...info.labels } }, ...paths);
    await pastMillisecond(updated);
    return { info: toInfoMessage(updated) };
  }

  async #list(call: grpc.ServerWritableStream<Req, unknown>): Promise<void> {
    const filters = ((call.request.filters as string[] | undefined) ?? []).map(String);
    try {
      let batch: InfoMessage[] = [];
      await this.#store.walk(async (info) => {
        batch.push(toInfoMessage(info));
        if (batch.length < LIST_BATCH) return;
        const full = batch;
        batch = [];
        await write(call, { info: full });
      }, ...filters);
      if (batch.length > 0) await write(call, { info: batch });
      call.end();
    } catch (e) {
      // grpc-js ends a server stream with the status an 'error' event carries.
      call.emit("error", toStatus(e));
    }
  }

  /**
   * containerd calls Cleanup after its garbage collector removed the snapshots nothing
   * references: mounts of layers that are gone stop, the blocks of removed layers are
   * freed (their deferred deletions finish), and the store commits.
   */
  async #cleanup(): Promise<Record<string, never>> {
    if (this.#mounter) {
      const live = new Set((await this.#store.list()).map((l) => l.name));
      for (const key of this.#mounter.served()) {
        if (!live.has(key)) await this.#keys.run(key, () => this.#mounter!.release(key));
      }
    }
    await this.#store.pool.settle();
    await this.#store.sync();
    return {};
  }
}

/**
 * Waits until the millisecond of `info.updated` has passed (at most 1 ms; a commit takes
 * longer), so the time reported for it (see toTimestamp) is before the reply.
 */
async function pastMillisecond(info: LayerInfo): Promise<void> {
  while (Date.now() <= info.updated.getTime()) await new Promise((r) => setTimeout(r, 1));
}

function labelsOf(r: Req): Record<string, string> {
  return { ...(r.labels as Record<string, string> | undefined) };
}

function noMounter(): StatusError {
  return unimplemented("this thinstack serve cannot mount layers: it has no layer mounter (the FUSE mount); containerd cannot use its snapshots until it has one");
}

function isStatus(e: unknown): e is StatusError {
  return typeof (e as StatusError)?.code === "number" && (e as StatusError).metadata instanceof grpc.Metadata;
}

/** Writes one message, waiting when the stream's buffer is full. */
function write(call: grpc.ServerWritableStream<Req, unknown>, message: unknown): Promise<void> {
  if (call.write(message)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      call.off("drain", done);
      call.off("error", reject);
      resolve();
    };
    call.on("drain", done);
    call.on("error", reject);
  });
}
