/**
 * Uploading blobs (distribution spec "push"; `HEAD` and mounts are in repoblobs.ts): a
 * blob that fits in one chunk goes as `POST` then `PUT ?digest=` with the bytes; a larger one as `PATCH`
 * chunks with `Content-Range`, each sent while the next is made, then `PUT ?digest=`.
 * A registry that refuses chunks gets `POST` + one streamed `PUT` (the blob is made
 * twice: once for its digest, once to send). One-shot `POST ?digest=` is never used:
 * Debian's registry answers it with 202 and keeps nothing.
 *
 * A chunk that fails is sent again if the registry says it kept none of it; when the
 * upload cannot go on (distribution cancels an upload whose chunk broke off), it starts
 * over with a fresh upload and the blob made again.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { Hasher } from "../interchange/digest.ts";
import type { RegistryClient } from "./client.ts";
import { errorDetails, isNetworkError, responseError } from "./errors.ts";
import { discard } from "./http.ts";
import { hasBlob, location, type UploadTarget } from "./repoblobs.ts";
import { backoff, retryableStatus, sleep } from "./retry.ts";

/** How an upload goes. */
export interface UploadOptions {
  /** Bytes per PATCH (and the largest blob sent in one PUT). */
  chunkSize: number;
  /** An upload the registry already opened (a mount it could not do). */
  session?: URL;
  /**
   * The digest and size of what `produce()` makes, known beforehand: a blob at rest that
   * `produce()` checks as it reads (keptblobs.ts). The upload then does not hash it again:
   * a second SHA-256 pass over every byte, on the main thread, would check nothing new.
   */
  known?: { digest: string; size: number };
  /** Bytes the registry has taken. */
  onBytes?(n: number): void;
  /** The upload starts over from its first byte. */
  onRestart?(why: string): void;
}

/** What an upload hashes: the bytes' digest, or only their count when the digest is known. */
type Digester = Pick<Hasher, "update" | "digest" | "bytes">;

function digester(known: UploadOptions["known"]): Digester {
  if (!known) return new Hasher();
  return {
    bytes: 0,
    update(chunk: Uint8Array) {
      this.bytes += chunk.length;
    },
    digest: () => known.digest,
  };
}

/** The upload must begin again (the registry dropped it, or what it holds is not what was sent). */
class Restart extends Error {}
/** The registry takes no chunks. */
class NoChunks extends Error {}

const OCTETS = { "content-type": "application/octet-stream" };

function withDigest(url: URL, digest: string): URL {
  const u = new URL(url);
  u.searchParams.set("digest", digest);
  return u;
}

async function startUpload(client: RegistryClient, t: UploadTarget): Promise<URL> {
  const res = await client.request("POST", `/v2/${t.repository}/blobs/uploads/`, { scopes: t.scopes, op: "push", what: t.what });
  if (res.status !== 202) throw await responseError(res, "push", t.what, "the registry would not start an upload");
  await discard(res);
  return location(res, client, t.what);
}

/** Where the registry says an upload stands: the next offset it wants and the URL to go on at; undefined when it has dropped it. */
async function uploadStatus(client: RegistryClient, t: UploadTarget, session: URL): Promise<{ offset: number; session: URL } | undefined> {
  const res = await client.request("GET", session, { scopes: t.scopes, op: "push", what: t.what }).catch(() => undefined);
  if (!res) return undefined;
  await discard(res);
  const range = /^(?:bytes=)?0-(\d+)$/.exec(res.headers.get("range") ?? "");
  if (res.status !== 204 || !range) return undefined;
  const end = Number(range[1]);
  // distribution writes 0-0 for both 0 and 1 bytes; 0 is the only case a client resumes from.
  return { offset: end === 0 ? 0 : end + 1, session: res.headers.get("location") ? location(res, client, t.what) : session };
}

/** Collects chunks into pieces of `size` bytes. */
class Chunker {
  #parts: Uint8Array[] = [];
  #length = 0;
  constructor(readonly size: number) {}
  get length(): number {
    return this.#length;
  }
  push(c: Uint8Array): void {
    this.#parts.push(c);
    this.#length += c.length;
  }
  /** The next `size` bytes (or all when `all`). */
  take(all = false): Uint8Array {
    const n = all ? this.#length : Math.min(this.size, this.#length);
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const p = this.#parts[0];
      const k = Math.min(p.length, n - at);
      out.set(p.subarray(0, k), at);
      at += k;
      if (k === p.length) this.#parts.shift();
      else this.#parts[0] = p.subarray(k);
    }
    this.#length -= n;
    return out;
  }
}

/**
 * Uploads the bytes `produce()` makes (it is called again to start over) to `t`; returns
 * their digest and size.
 */
export async function uploadBlob(
  client: RegistryClient, t: UploadTarget, produce: () => AsyncIterable<Uint8Array>, opts: UploadOptions,
): Promise<{ digest: string; size: number }> {
  let session = opts.session;
  for (let restart = 0; ; restart++) {
    try {
      return await upload(client, t, produce, { ...opts, session });
    } catch (e) {
      if (e instanceof NoChunks) return await uploadWhole(client, t, produce, opts);
      if (!(e instanceof Restart) || restart >= client.policy.retries) {
        if (e instanceof Restart) throw storeError("EIO", "push", t.what, `the upload broke off ${restart + 1} times (${e.message}); the registry or the network keeps failing`);
        throw e;
      }
      session = undefined;
      opts.onRestart?.(e.message);
      await sleep(backoff(client.policy, restart + 1));
    }
  }
}

async function upload(
  client: RegistryClient, t: UploadTarget, produce: () => AsyncIterable<Uint8Array>, opts: UploadOptions,
): Promise<{ digest: string; size: number }> {
  let url = opts.session ?? await startUpload(client, t);
  const h = digester(opts.known);
  const buf = new Chunker(opts.chunkSize);
  let offset = 0;
  let inflight: Promise<void> | undefined;
  let patched = false;

  const patch = async (chunk: Uint8Array) => {
    const start = offset;
    const end = start + chunk.length - 1;
    for (let attempt = 0; ; attempt++) {
      let res: Response | undefined;
      let failure: unknown;
      try {
        res = await client.request("PATCH", url, {
          scopes: t.scopes, op: "push", what: t.what, body: chunk, idempotent: false,
          headers: { ...OCTETS, "content-range": `${start}-${end}` },
        });
      } catch (e) {
        if (!isNetworkError(e)) throw e;
        failure = e;
      }
      if (res?.status === 202) {
        await discard(res);
        url = location(res, client, t.what);
        offset = end + 1;
        patched = true;
        opts.onBytes?.(chunk.length);
        return;
      }
      if (res && !retryableStatus(res.status)) {
        const details = await errorDetails(res);
        if (!patched && (res.status === 405 || res.status === 501 || ((res.status === 400 || res.status === 415) && !/BLOB_UPLOAD/.test(details)))) {
          throw new NoChunks(`PATCH answered ${res.status}`);
        }
        if (res.status === 404 || res.status === 416 || /BLOB_UPLOAD/.test(details)) throw new Restart(`the registry dropped the upload (HTTP ${res.status}${details ? `: ${details}` : ""})`);
        throw storeError(res.status === 401 || res.status === 403 ? "EACCES" : "EIO", "push", t.what, `the registry answered a chunk with HTTP ${res.status}${details ? ` (${details})` : ""}`);
      }
      if (res) await discard(res);
      // A 5xx or a broken connection: ask how much the registry kept.
      const status = await uploadStatus(client, t, url);
      const why = failure ? (failure as Error).message : `HTTP ${res!.status}`;
      if (status?.offset === end + 1) {
        url = status.session;
        offset = end + 1;
        patched = true;
        opts.onBytes?.(chunk.length);
        return;
      }
      if (status?.offset !== start || attempt >= client.policy.retries) throw new Restart(`a chunk failed (${why})`);
      url = status.session;
      await sleep(backoff(client.policy, attempt + 1));
    }
  };

  for await (const c of produce()) {
    h.update(c);
    buf.push(c);
    while (buf.length >= opts.chunkSize) {
      const chunk = buf.take();
      if (inflight) await inflight;
      inflight = patch(chunk);
      // Keep making the next chunk while this one goes; a failure shows at the next await.
      inflight.catch(() => {});
    }
  }
  if (inflight) await inflight;
  const digest = h.digest();
  const rest = buf.take(true);
  let last: Uint8Array | undefined = rest;
  if (patched && rest.length) {
    await patch(rest);
    last = undefined;
  }
  await finish(client, t, url, digest, patched ? undefined : last, offset);
  if (!patched) opts.onBytes?.(rest.length);
  return { digest, size: h.bytes };
}

/**
 * The closing `PUT ?digest=`, with the whole blob when no chunk went before (`offset` is
 * what the chunks sent). A 5xx or a lost answer is tried again while the registry still
 * holds the upload as it was.
 */
async function finish(client: RegistryClient, t: UploadTarget, url: URL, digest: string, body: Uint8Array | undefined, offset: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    let res: Response | undefined;
    let why: string;
    try {
      res = await client.request("PUT", withDigest(url, digest), {
        scopes: t.scopes, op: "push", what: t.what, body: body ?? new Uint8Array(0), idempotent: false, headers: OCTETS,
      });
    } catch (e) {
      if (!isNetworkError(e)) throw e;
    }
    if (res && (res.status === 201 || res.status === 204)) {
      await discard(res);
      const said = res.headers.get("docker-content-digest");
      if (said && said !== digest) throw new Restart(`the registry stored ${said}, not ${digest}`);
      return;
    }
    if (res) {
      const details = await errorDetails(res);
      why = `the final PUT answered HTTP ${res.status}${details ? ` (${details})` : ""}`;
      if (!retryableStatus(res.status) && res.status !== 404 && !/DIGEST_INVALID|BLOB_UPLOAD/.test(details)) {
        throw storeError(res.status === 401 || res.status === 403 ? "EACCES" : "EIO", "push", t.what, why);
      }
    } else {
      why = "the final PUT got no answer";
    }
    // The answer may be what was lost: the blob may be there.
    if (await hasBlob(client, t, digest).catch(() => false)) return;
    const status = res && !retryableStatus(res.status) ? undefined : await uploadStatus(client, t, url);
    if (status?.offset !== offset || attempt >= client.policy.retries) throw new Restart(why);
    url = status.session;
    await sleep(backoff(client.policy, attempt + 1));
  }
}

/** For registries without chunks: the blob made once for its digest, then sent in one streamed PUT. */
async function uploadWhole(
  client: RegistryClient, t: UploadTarget, produce: () => AsyncIterable<Uint8Array>, opts: UploadOptions,
): Promise<{ digest: string; size: number }> {
  let digest: string;
  let size: number;
  if (opts.known) {
    ({ digest, size } = opts.known);
  } else {
    const h = new Hasher();
    for await (const c of produce()) h.update(c);
    digest = h.digest();
    size = h.bytes;
  }
  for (let attempt = 0; ; attempt++) {
    const url = await startUpload(client, t);
    const again = digester(opts.known);
    const it = produce()[Symbol.asyncIterator]();
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        const r = await it.next();
        if (r.done) return ctl.close();
        again.update(r.value);
        opts.onBytes?.(r.value.length);
        ctl.enqueue(r.value);
      },
      async cancel() {
        await it.return?.();
      },
    });
    let res: Response | undefined;
    try {
      res = await client.request("PUT", withDigest(url, digest), { scopes: t.scopes, op: "push", what: t.what, body, headers: OCTETS });
    } catch (e) {
      if (!isNetworkError(e)) throw e;
    }
    if (res && (res.status === 201 || res.status === 204)) {
      await discard(res);
      if (again.bytes === size && again.digest() !== digest) throw storeError("EIO", "push", t.what, "the blob came out different the second time it was made");
      return { digest, size };
    }
    if (res && !retryableStatus(res.status)) throw await responseError(res, "push", t.what);
    if (res) await discard(res);
    if (await hasBlob(client, t, digest).catch(() => false)) return { digest, size };
    if (attempt >= client.policy.retries) throw storeError("EIO", "push", t.what, "the upload kept failing");
    opts.onRestart?.("the PUT failed");
    await sleep(backoff(client.policy, attempt + 1));
  }
}
