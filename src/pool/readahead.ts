/**
 * Read-ahead for devices read sequentially. Once a read starts where the previous read
 * of the same device ended, the next few windows of the device are fetched by the I/O
 * workers before they are asked for, so a streaming reader finds its bytes already
 * fetched instead of waiting a worker round trip for each read (the kernel's page-cache
 * read-ahead does the same for node:fs).
 *
 * A window is used only if the device has not changed since it was planned: its blocks
 * were looked up then, and any write, discard or deletion of the device gives the device
 * a new version. Other devices' writes cannot touch the blocks this device maps (they copy
 * on write, or write in place only into blocks that are theirs alone), and a freed block
 * is reused only after the device that held it changed its own mapping.
 *
 * A window's buffer goes to the reader when one read takes all of it; otherwise, once
 * every read that took a part has copied it out, it is kept for a later fetch
 * (readbuffers.ts), so a reader that reads into buffers of its own (`readInto`) makes
 * the pool allocate nothing in the steady state.
 *
 * @module
 */
import { LRUCache } from "lru-cache";
import { type IoContext, planRead, readTask, scheduleRead } from "./devio.ts";
import type { Mapping } from "./maptree.ts";
import { ReadBuffers } from "./readbuffers.ts";
import type { DeviceId } from "./types.ts";

/** The live state of a device that read-ahead reads through; `version` changes with every change of the device. */
export interface ReadSource {
  readonly id: DeviceId;
  readonly size: number;
  readonly mapping: Mapping;
  readonly version: number;
}

/** A range of a device being fetched, or fetched. */
interface Window {
  /** Device offset of the first byte of `data`. */
  base: number;
  /** The part not yet read: device offset and length. */
  offset: number;
  length: number;
  version: number;
  /** The bytes, or undefined if the fetch failed (the read then goes direct and reports it). */
  data: Promise<ArrayBuffer | undefined>;
  /** Reads that took a part of the window and have not copied it out yet. */
  users: number;
  /** Out of its stream: no further read takes a part of it. */
  detached: boolean;
  /** Its buffer is no longer the window's (handed to a reader, or recycled). */
  given: boolean;
}

interface Stream {
  /** Where a sequential next read would start. */
  next: number;
  /** Fetched ranges ahead of the reader, in order, contiguous. */
  windows: Window[];
  /** Length of the read before the last, which sizes windows with the last one's. */
  before: number;
}

/** Smallest window: small sequential reads are served from larger fetches. */
const MIN_WINDOW = 256 * 1024;
/** Reads larger than this are not read ahead (they already keep the workers busy). */
const MAX_WINDOW = 4 * 1024 * 1024;
/** How far ahead of a reader to fetch, in bytes (at least two windows). */
const AHEAD = 4 * 1024 * 1024;
/** Default of the bytes fetched ahead across all devices; the least recently read streams give way. */
export const DEFAULT_READAHEAD = 32 * 1024 * 1024;
/** Streams remembered at most. */
const MAX_STREAMS = 64;
/** Idle read buffers kept for reuse, at most. */
const SPARE_BUFFERS = 16 * 1024 * 1024;

/** Sequential read detection and a few windows of read-ahead per device. */
export class Readahead {
  readonly #ctx: IoContext;
  /** Bytes fetched ahead at most, across all devices (0: no read-ahead). */
  readonly #total: number;
  /** The streams of the most recently read devices; one that falls out drops its windows. */
  readonly #streams = new LRUCache<DeviceId, Stream>({ max: MAX_STREAMS, dispose: (stream) => this.#dropAll(stream) });
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #buffers = new ReadBuffers(SPARE_BUFFERS);
  #ahead = 0;

  constructor(ctx: IoContext, totalBytes = DEFAULT_READAHEAD) {
    this.#ctx = ctx;
    this.#total = totalBytes;
  }

  /**
   * Reads `length` bytes at `offset` of `src` into a new array. The caller has checked
   * the range and holds the pool's read lock, so the device does not change during the call.
   */
  async read(src: ReadSource, offset: number, length: number): Promise<Uint8Array> {
    const taken = this.#take(src, offset, length);
    if (!taken) return this.#direct(src, offset, length);
    const w = taken.window;
    try {
      const data = await w.data;
      if (data === undefined || w.version !== src.version) return await this.#direct(src, offset, length);
      // A window read whole is handed over as it is (no other read took a part of it); a part of one is copied out.
      if (taken.whole) {
        w.given = true;
        return new Uint8Array(data);
      }
      return new Uint8Array(data, offset - w.base, length).slice();
    } finally {
      this.#done(w);
    }
  }

  /** A read of no window: into a recycled buffer of exactly `length` bytes when there is one. */
  async #direct(src: ReadSource, offset: number, length: number): Promise<Uint8Array> {
    const pieces = planRead(this.#ctx, src.mapping, offset, length);
    if (pieces.length === 0) return new Uint8Array(length);
    return new Uint8Array(await scheduleRead(this.#ctx, readTask(this.#ctx, pieces, length, this.#buffers.take(length))));
  }

  /**
   * Reads `target.byteLength` bytes at `offset` of `src` into `target`, allocating
   * nothing: the workers read into buffers kept for reuse, and the bytes are copied out
   * once. Same conditions as {@linkcode read}.
   */
  async readInto(src: ReadSource, offset: number, target: Uint8Array): Promise<void> {
    const length = target.byteLength;
    const w = this.#take(src, offset, length)?.window;
    if (w) {
      try {
        const data = await w.data;
        if (data !== undefined && w.version === src.version) {
          target.set(new Uint8Array(data, offset - w.base, length));
          return;
        }
      } finally {
        this.#done(w);
      }
    }
    const pieces = planRead(this.#ctx, src.mapping, offset, length);
    if (pieces.length === 0) {
      target.fill(0);
      return;
    }
    // A buffer of a rounded size (only the first `length` bytes are read), kept for the next read.
    const size = ReadBuffers.sizeFor(length);
    const data = await scheduleRead(this.#ctx, readTask(this.#ctx, pieces, length, this.#buffers.take(size) ?? new ArrayBuffer(size)));
    target.set(new Uint8Array(data, 0, length));
    this.#buffers.give(data);
  }

  /**
   * Updates `src`'s stream for a read of `length` at `offset` (before any await, so
   * concurrent reads of the device see it) and starts read-ahead; the window holding the
   * bytes, taken for the caller (see {@linkcode #done}; `whole` when the read is all of
   * it), or undefined for a direct read.
   */
  #take(src: ReadSource, offset: number, length: number): { window: Window; whole: boolean } | undefined {
    let stream = this.#streams.get(src.id);
    if (!stream) {
      stream = { next: -1, windows: [], before: 0 };
      this.#streams.set(src.id, stream);
    }
    const sequential = offset === stream.next && length > 0 && length <= MAX_WINDOW;
    stream.next = offset + length;
    const head = stream.windows[0];
    const hit = head !== undefined && head.version === src.version && head.offset === offset && length <= head.length;
    const whole = hit && head.base === offset && head.length === length;
    if (hit) head.users++;
    if (!hit) this.#dropAll(stream);
    else if (length === head.length) this.#shift(stream);
    else {
      head.offset += length;
      head.length -= length;
      this.#ahead -= length;
    }
    // Windows the size of the last two reads: a file's short tail read, in a stream of
    // 1 MiB reads, does not make the next file's windows too short for its reads.
    if (sequential) this.#fill(src, stream, offset + length, Math.min(MAX_WINDOW, Math.max(length, stream.before, MIN_WINDOW)));
    stream.before = length;
    return hit ? { window: head, whole } : undefined;
  }

  /**
   * Keeps the buffer of `bytes` for a later fetch, if `bytes` is the whole of a plain
   * buffer (what {@linkcode read} returns); the caller no longer uses it.
   */
  recycle(bytes: Uint8Array): void {
    const buf = bytes.buffer;
    if (buf instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === buf.byteLength) this.#buffers.give(buf);
  }

  /** A read is done with window `w`: its buffer is recycled once nothing needs it. */
  #done(w: Window): void {
    w.users--;
    this.#release(w);
  }

  #release(w: Window): void {
    if (!w.detached || w.users > 0 || w.given) return;
    w.given = true;
    void w.data.then((buf) => buf && this.#buffers.give(buf));
  }

  /** Forgets device `id`'s stream (the device was deleted, or is no longer read). */
  forget(id: DeviceId): void {
    this.#streams.delete(id); // its dispose drops the windows
  }

  /** Drops every window and waits for fetches still running (the pool is closing). */
  async clear(): Promise<void> {
    for (const id of [...this.#streams.keys()]) this.forget(id);
    await Promise.all([...this.#inflight]);
    this.#buffers.clear();
  }

  /** Fetches windows of `size` bytes after `from` until the stream is AHEAD bytes ahead. */
  #fill(src: ReadSource, stream: Stream, from: number, size: number): void {
    const last = stream.windows[stream.windows.length - 1];
    let at = last ? last.offset + last.length : from;
    const target = from + Math.max(AHEAD, 2 * size);
    while (at < target && at < src.size) {
      const length = Math.min(size, src.size - at);
      if (this.#ahead + length > this.#total && !this.#evictOther(stream)) return;
      stream.windows.push(this.#fetch(src, at, length));
      this.#ahead += length;
      at += length;
    }
  }

  #fetch(src: ReadSource, offset: number, length: number): Window {
    const pieces = planRead(this.#ctx, src.mapping, offset, length);
    const data: Promise<ArrayBuffer | undefined> = pieces.length === 0
      ? Promise.resolve(new ArrayBuffer(length))
      : scheduleRead(this.#ctx, readTask(this.#ctx, pieces, length, this.#buffers.take(length))).catch(() => undefined);
    this.#inflight.add(data);
    void data.then(() => this.#inflight.delete(data));
    return { base: offset, offset, length, version: src.version, data, users: 0, detached: false, given: false };
  }

  #shift(stream: Stream): void {
    const w = stream.windows.shift();
    if (!w) return;
    this.#ahead -= w.length;
    w.detached = true;
    this.#release(w);
  }

  #dropAll(stream: Stream): void {
    while (stream.windows.length) this.#shift(stream);
  }

  /** Drops the windows of the least recently read other stream that has any; false if none. */
  #evictOther(keep: Stream): boolean {
    for (const stream of this.#streams.rvalues()) {
      if (stream && stream !== keep && stream.windows.length) {
        this.#dropAll(stream);
        return true;
      }
    }
    return false;
  }
}
