/**
 * A registry repository as the importer's {@linkcode ImageFiles}: each layer blob a
 * download streamed straight into the layer being filled. The importer opens layers one
 * after the other (each is a snapshot of the one below); while one is applied, the next
 * few of the plan download into bounded buffers, so transfers run in parallel without a
 * temporary copy of any layer.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { blobPath } from "../interchange/imagesource.ts";
import type { ImageFiles } from "../interchange/imagefiles.ts";
import { Hasher, parseDigest } from "../interchange/digest.ts";
import type { RegistryClient } from "./client.ts";
import { BlobDownload, type BlobTarget } from "./download.ts";

/** What a layer's download reports. */
export interface LayerTransfer {
  /** `downloading` as bytes arrive, `done` once the importer has read it all. */
  state: "downloading" | "resuming" | "done";
  /** Bytes received. */
  done: number;
  /** The blob's size. */
  total: number;
}

/** How the files fetch. */
export interface BlobFilesOptions {
  /** Downloads at once: the one being applied and those fetched ahead (default 3). */
  concurrency: number;
  /** Bytes a download fetched ahead may buffer (default 16 MiB). */
  highWater: number;
  /** Progress of layer `index`. */
  onLayer?(index: number, t: LayerTransfer): void;
}

/** The blobs of one repository by layout path (`blobs/sha256/…`), downloaded in `plan` order. */
export class RegistryFiles implements ImageFiles {
  readonly where: string;
  readonly #client: RegistryClient;
  readonly #blobs = new Map<string, BlobTarget & { index: number }>();
  readonly #plan: string[];
  readonly #downloads = new Map<string, BlobDownload>();
  readonly #options: BlobFilesOptions;
  /** The blob the importer opened last: the one a failure is about. */
  lastOpened?: string;

  constructor(client: RegistryClient, where: string, blobs: (BlobTarget & { index: number })[], plan: string[], options: BlobFilesOptions) {
    this.#client = client;
    this.where = where;
    for (const b of blobs) this.#blobs.set(blobPath(b.digest), b);
    this.#plan = plan;
    this.#options = options;
  }

  #download(path: string): BlobDownload {
    let d = this.#downloads.get(path);
    if (d) return d;
    const blob = this.#blobs.get(path);
    if (!blob) throw storeError("ENOENT", "pull", `${this.where}:${path}`, "the manifest lists no such blob");
    let received = 0;
    const report = (state: LayerTransfer["state"]) => this.#options.onLayer?.(blob.index, { state, done: received, total: blob.size });
    d = new BlobDownload(this.#client, blob, this.#options.highWater, {
      onBytes: (n) => {
        received += n;
        report("downloading");
      },
      onResume: () => report("resuming"),
    });
    this.#downloads.set(path, d);
    return d;
  }

  open(path: string): AsyncIterable<Uint8Array> {
    this.lastOpened = path;
    const d = this.#download(path);
    // Fetch the next layers of the plan while this one is applied.
    const at = this.#plan.indexOf(path);
    for (const next of this.#plan.slice(at + 1, at + this.#options.concurrency)) this.#download(next).start();
    const blob = this.#blobs.get(path)!;
    const onLayer = this.#options.onLayer;
    const downloads = this.#downloads;
    return (async function* () {
      yield* d.chunks();
      downloads.delete(path);
      onLayer?.(blob.index, { state: "done", done: blob.size, total: blob.size });
    })();
  }

  async read(path: string): Promise<Uint8Array | undefined> {
    if (!this.#blobs.has(path)) return undefined;
    const parts: Uint8Array[] = [];
    for await (const c of this.open(path)) parts.push(c);
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) out.set(p, (at += p.length) - p.length);
    return out;
  }

  has(path: string): Promise<boolean> {
    return Promise.resolve(this.#blobs.has(path));
  }

  /**
   * Downloads blob `path` again, only to hash it: the digest it has now, to tell a
   * corrupt blob (wrong digest) from a layer that is bad in itself.
   */
  async rehash(path: string): Promise<string> {
    const blob = this.#blobs.get(path)!;
    const h = new Hasher(parseDigest(blob.digest).algorithm);
    for await (const c of new BlobDownload(this.#client, blob, this.#options.highWater).chunks()) h.update(c);
    return h.digest();
  }

  close(): Promise<void> {
    for (const d of this.#downloads.values()) d.cancel();
    this.#downloads.clear();
    return Promise.resolve();
  }
}
