/**
 * Downloading one blob as a stream that survives broken connections: the bytes received
 * so far are kept count of, and a connection that drops, stalls or ends early is picked
 * up again with a ranged GET (`Range: bytes=N-`; a registry that ignores ranges sends
 * it all again and the first N bytes are skipped). It may start before anyone reads it
 * and then buffers at most `highWater` bytes ahead, so the next layer downloads while
 * this one is applied without a copy of it anywhere but in that bounded buffer.
 *
 * The blob's digest is not checked here: the importer checks it as the bytes stream in.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { RegistryClient } from "./client.ts";
import { isNetworkError, networkError, responseError } from "./errors.ts";
import { backoff, sleep } from "./retry.ts";

/** A blob to fetch. */
export interface BlobTarget {
  /** The repository path in the registry: `library/busybox`. */
  repository: string;
  digest: string;
  /** Its size, which the manifest gives. */
  size: number;
  /** Token scopes for reading it. */
  scopes: string[];
  /** How errors name it. */
  what: string;
}

/** Hooks of a download. */
export interface DownloadHooks {
  /** Bytes received (each chunk's length as it arrives). */
  onBytes?(n: number): void;
  /** The connection broke and the download resumes at `offset`. */
  onResume?(offset: number, why: string): void;
}

/** The connection stalled, ended early or broke: worth picking up again. */
class Dropped extends Error {}

/** One blob's download. */
export class BlobDownload {
  readonly #client: RegistryClient;
  readonly #blob: BlobTarget;
  readonly #highWater: number;
  readonly #hooks: DownloadHooks;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #received = 0;
  #done = false;
  #error: unknown;
  #started = false;
  #cancelled = false;
  #wakeReader?: () => void;
  #wakePump?: () => void;
  readonly #abort = new AbortController();

  constructor(client: RegistryClient, blob: BlobTarget, highWater: number, hooks: DownloadHooks = {}) {
    this.#client = client;
    this.#blob = blob;
    this.#highWater = highWater;
    this.#hooks = hooks;
  }

  /** Bytes received so far. */
  get received(): number {
    return this.#received;
  }

  /** Starts fetching (in the background) if it has not started. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#pump().then(
      () => (this.#done = true),
      (e) => (this.#error = e),
    ).finally(() => this.#wakeReader?.());
  }

  /** Stops fetching and drops what is buffered. */
  cancel(): void {
    this.#cancelled = true;
    this.#abort.abort();
    this.#queue.length = 0;
    this.#queued = 0;
    this.#wakePump?.();
  }

  /** The blob's bytes, each chunk a fresh buffer the reader may keep. */
  async *chunks(): AsyncGenerator<Uint8Array> {
    this.start();
    try {
      for (;;) {
        const chunk = this.#queue.shift();
        if (chunk) {
          this.#queued -= chunk.length;
          this.#wakePump?.();
          yield chunk;
          continue;
        }
        if (this.#error !== undefined) throw this.#error;
        if (this.#done) return;
        await new Promise<void>((resolve) => (this.#wakeReader = resolve));
        this.#wakeReader = undefined;
      }
    } finally {
      // A reader that stops early (an error in the layer) has no more use for the rest.
      if (!this.#done) this.cancel();
    }
  }

  async #pump(): Promise<void> {
    const { size } = this.#blob;
    let failures = 0;
    while (this.#received < size && !this.#cancelled) {
      const before = this.#received;
      try {
        await this.#fetchFrom(before);
        if (this.#cancelled) return;
        if (this.#received < size) throw new Dropped(`the connection closed after ${this.#received} of ${size} bytes`);
      } catch (e) {
        if (this.#cancelled) return;
        if (!(e instanceof Dropped) && !isNetworkError(e)) throw e;
        if (this.#received > before) failures = 0; // it moved: count afresh
        failures++;
        if (failures > this.#client.policy.retries) {
          throw e instanceof Dropped
            ? storeError("ECONNRESET", "pull", this.#blob.what, `${e.message}, ${failures} times in a row; the registry or the network keeps failing`)
            : networkError(e, "pull", this.#client.registry, this.#client.plainHttp);
        }
        const why = e instanceof Error ? e.message : String(e);
        this.#hooks.onResume?.(this.#received, why);
        await sleep(backoff(this.#client.policy, failures), this.#abort.signal);
      }
    }
  }

  /** One GET from `offset`, pushing what arrives into the queue until the body ends or breaks. */
  async #fetchFrom(offset: number): Promise<void> {
    const { repository, digest, size, scopes, what } = this.#blob;
    const ctl = new AbortController();
    const onCancel = () => ctl.abort();
    this.#abort.signal.addEventListener("abort", onCancel, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stalled = false;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        ctl.abort();
      }, this.#client.idleTimeoutMs);
    };
    try {
      arm();
      let res: Response;
      try {
        res = await this.#client.request("GET", `/v2/${repository}/blobs/${digest}`, {
          scopes, op: "pull", what, signal: ctl.signal, headers: offset ? { range: `bytes=${offset}-` } : {},
        });
      } catch (e) {
        if (stalled) throw new Dropped(`no answer for ${this.#client.idleTimeoutMs} ms`);
        throw e;
      }
      if (res.status === 404) {
        await res.body?.cancel().catch(() => {});
        throw storeError("ENOENT", "pull", what, `the registry has no blob ${digest} in '${repository}'`);
      }
      if (!res.ok) throw await responseError(res, "pull", what);
      let skip = 0;
      if (offset > 0) {
        const range = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
        if (res.status === 206 && range && Number(range[1]) !== offset) {
          await res.body?.cancel().catch(() => {});
          throw storeError("EPROTO", "pull", what, `asked for bytes from ${offset}, the registry sent from ${range[1]}`);
        }
        if (res.status !== 206) skip = offset; // the whole blob again
      }
      const reader = res.body!.getReader();
      try {
        for (;;) {
          arm();
          let r: { done: boolean; value?: Uint8Array };
          try {
            r = await reader.read();
          } catch (e) {
            if (stalled) throw new Dropped(`nothing arrived for ${this.#client.idleTimeoutMs} ms`);
            if (this.#cancelled) return;
            throw new Dropped(e instanceof Error ? `${e.message}${(e as { cause?: Error }).cause ? ` (${(e as { cause?: Error }).cause!.message})` : ""}` : String(e));
          }
          if (r.done) return;
          let chunk = r.value!;
          if (skip) {
            const n = Math.min(skip, chunk.length);
            skip -= n;
            chunk = chunk.subarray(n);
            if (!chunk.length) continue;
          }
          if (this.#received + chunk.length > size) {
            throw storeError("EINVAL", "verify", what, `size mismatch: the registry sent more than the ${size} bytes the manifest gives`);
          }
          this.#received += chunk.length;
          this.#queue.push(chunk);
          this.#queued += chunk.length;
          this.#hooks.onBytes?.(chunk.length);
          this.#wakeReader?.();
          clearTimeout(timer); // waiting for the reader is not a stall of the connection
          while (this.#queued >= this.#highWater && !this.#cancelled) {
            await new Promise<void>((resolve) => (this.#wakePump = resolve));
            this.#wakePump = undefined;
          }
          if (this.#cancelled) return;
        }
      } finally {
        reader.cancel().catch(() => {});
      }
    } finally {
      clearTimeout(timer);
      this.#abort.signal.removeEventListener("abort", onCancel);
    }
  }
}
