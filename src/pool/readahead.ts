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
 * @module
 */
import { LRUCache } from "lru-cache";
import { type IoContext, planRead, readRange, readTask, scheduleRead } from "./devio.ts";
import type { Mapping } from "./maptree.ts";
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
}

interface Stream {
  /** Where a sequential next read would start. */
  next: number;
  /** Fetched ranges ahead of the reader, in order, contiguous. */
  windows: Window[];
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

/** Sequential read detection and a few windows of read-ahead per device. */
export class Readahead {
  readonly #ctx: IoContext;
  /** Bytes fetched ahead at most, across all devices (0: no read-ahead). */
  readonly #total: number;
  /** The streams of the most recently read devices; one that falls out drops its windows. */
  readonly #streams = new LRUCache<DeviceId, Stream>({ max: MAX_STREAMS, dispose: (stream) => this.#dropAll(stream) });
  readonly #inflight = new Set<Promise<unknown>>();
  #ahead = 0;

  constructor(ctx: IoContext, totalBytes = DEFAULT_READAHEAD) {
    this.#ctx = ctx;
    this.#total = totalBytes;
  }

  /**
   * Reads `length` bytes at `offset` of `src`. The caller has checked the range and holds
   * the pool's read lock, so the device does not change during the call.
   */
  async read(src: ReadSource, offset: number, length: number): Promise<Uint8Array> {
    let stream = this.#streams.get(src.id);
    if (!stream) {
      stream = { next: -1, windows: [] };
      this.#streams.set(src.id, stream);
    }

    const sequential = offset === stream.next && length > 0 && length <= MAX_WINDOW;
    stream.next = offset + length;
    const head = stream.windows[0];
    const hit = head !== undefined && head.version === src.version && head.offset === offset && length <= head.length;
    // Stream state changes before any await, so concurrent reads of the device see it.
    const whole = hit && head.base === offset && head.length === length;
    if (!hit) this.#dropAll(stream);
    else if (length === head.length) this.#shift(stream);
    else {
      head.offset += length;
      head.length -= length;
      this.#ahead -= length;
    }
    if (sequential) this.#fill(src, stream, offset + length, Math.max(length, MIN_WINDOW));
    if (!hit) return readRange(this.#ctx, src.mapping, offset, length);

    const data = await head.data;
    if (data === undefined || head.version !== src.version) return readRange(this.#ctx, src.mapping, offset, length);
    // A window read whole is handed over as it is; a part of one is copied out.
    return whole ? new Uint8Array(data) : new Uint8Array(data, offset - head.base, length).slice();
  }

  /** Forgets device `id`'s stream (the device was deleted, or is no longer read). */
  forget(id: DeviceId): void {
    this.#streams.delete(id); // its dispose drops the windows
  }

  /** Drops every window and waits for fetches still running (the pool is closing). */
  async clear(): Promise<void> {
    for (const id of [...this.#streams.keys()]) this.forget(id);
    await Promise.all([...this.#inflight]);
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
      : scheduleRead(this.#ctx, readTask(this.#ctx, pieces, length)).catch(() => undefined);
    this.#inflight.add(data);
    void data.then(() => this.#inflight.delete(data));
    return { base: offset, offset, length, version: src.version, data };
  }

  #shift(stream: Stream): void {
    const w = stream.windows.shift();
    if (w) this.#ahead -= w.length;
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
