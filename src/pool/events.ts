/**
 * The pool's events, after dm-thin's (a table event when free space falls under the low
 * water mark, which dm-event's monitoring turns into LVM's autoextend and a syslog line):
 * delivered to listeners in the process ({@linkcode Pool.on}) and appended, one JSON
 * object a line, to a small log in the pool's directory, so that another process
 * (`thinstack events --follow`) can watch what a daemon or a long command does.
 *
 * The log is bounded: once `events.log` would pass {@linkcode EVENT_LOG_LIMIT} bytes it
 * becomes `events.log.1` (replacing the one before) and a new one starts. Only the process
 * holding the pool open writes it (the pool's lock keeps that to one process); readers
 * never lock anything.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import type { AutoextendEvent, LowWaterEvent } from "./types.ts";

/** Name of the event log inside a pool directory. */
export const EVENT_LOG = "events.log";
/** Bytes after which the log rotates: the two files hold at most about twice this. */
export const EVENT_LOG_LIMIT = 256 * 1024;

/** Events by name, and what each carries. */
export interface PoolEventMap {
  /** Free data or metadata space crossed its low water mark (either way). */
  lowWater: LowWaterEvent;
  /** The data file (or the pool on its device) grew by itself. */
  autoextend: AutoextendEvent;
}

/** The name of a pool event. */
export type PoolEventName = keyof PoolEventMap;

/** A line of the event log: the event, its name, when and which process. */
export type LoggedEvent = { [K in PoolEventName]: { type: K; time: string; pid: number } & PoolEventMap[K] }[PoolEventName];

type Listener<K extends PoolEventName> = (event: PoolEventMap[K]) => void;

/** Listeners and the log of one open pool. */
export class PoolEvents {
  readonly #listeners = new Map<PoolEventName, Set<Listener<PoolEventName>>>();
  readonly #file: string | undefined;
  readonly #limit: number;
  #size: number | undefined;
  #writing: Promise<void> = Promise.resolve();

  /** Logs to `dir/events.log` unless `dir` is undefined. */
  constructor(dir: string | undefined, limit = EVENT_LOG_LIMIT) {
    this.#file = dir === undefined ? undefined : path.join(dir, EVENT_LOG);
    this.#limit = limit;
  }

  /** Calls `fn` for every `name` event until the returned function is called. */
  on<K extends PoolEventName>(name: K, fn: Listener<K>): () => void {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, set = new Set());
    const entry = fn as Listener<PoolEventName>;
    set.add(entry);
    return () => void set!.delete(entry);
  }

  /**
   * Delivers `event` to the listeners (a listener that throws does not stop the pool or
   * the other listeners) and queues its line for the log.
   */
  emit<K extends PoolEventName>(name: K, event: PoolEventMap[K]): void {
    for (const fn of this.#listeners.get(name) ?? []) {
      try {
        fn(event);
      } catch {
        // A listener's failure is its own; the pool's operation has already happened.
      }
    }
    if (this.#file === undefined) return;
    const line = JSON.stringify({ type: name, time: new Date().toISOString(), pid: process.pid, ...event }) + "\n";
    this.#writing = this.#writing.then(() => this.#append(this.#file!, line)).catch(() => {
      // The log is a convenience: a full or read-only host disk must not fail pool operations.
    });
  }

  /** Waits until every queued line is in the log. */
  flush(): Promise<void> {
    return this.#writing;
  }

  async #append(file: string, line: string): Promise<void> {
    this.#size ??= (await fs.stat(file).catch(() => undefined))?.size ?? 0;
    const bytes = new TextEncoder().encode(line).byteLength;
    if (this.#size > 0 && this.#size + bytes > this.#limit) {
      await fs.rename(file, `${file}.1`);
      this.#size = 0;
    }
    await fs.appendFile(file, line);
    this.#size += bytes;
  }
}

/** Options of {@linkcode readEventLog}. */
export interface ReadEventLogOptions {
  /** Keep reading as the log grows (and rotates), until `signal` aborts. */
  follow?: boolean;
  /** Stops a follow. */
  signal?: AbortSignal;
  /** How often a follow looks for new lines, in milliseconds (default 200). */
  pollMs?: number;
}

/**
 * The events logged in the pool directory `dir`, oldest first: the rotated log, then the
 * current one; with `follow`, then every event logged after, as `tail -F` would (a
 * rotation is followed to the new file once the old one is read to its end). Lines that
 * are not events (a torn last line) are skipped. Takes no lock: the pool may be open in
 * another process, which is the point.
 */
export async function* readEventLog(dir: string, options: ReadEventLogOptions = {}): AsyncGenerator<LoggedEvent> {
  const file = path.join(dir, EVENT_LOG);
  const { follow = false, signal, pollMs = 200 } = options;
  let ino: number | undefined;
  let offset = 0;
  let rest = "";
  const take = function* (text: string): Generator<LoggedEvent> {
    rest += text;
    const lines = rest.split("\n");
    rest = lines.pop()!;
    for (const line of lines) {
      try {
        const event = JSON.parse(line) as LoggedEvent;
        if (event && typeof event === "object" && typeof event.type === "string") yield event;
      } catch {
        // not an event line
      }
    }
  };
  const old = await readTail(`${file}.1`, 0);
  if (old) yield* take(old.text + "\n");
  rest = "";
  while (!signal?.aborted) {
    // Each file is opened once and both its inode and its bytes come from that open:
    // statting by path and then reading by path would read the next file after a rotation
    // in between, with the old file's offsets, and lose the old file's last lines.
    const current = await readTail(file, (at) => (ino !== undefined && at.ino !== ino) || at.size < offset ? 0 : offset);
    if (current && ino !== undefined && current.ino !== ino) {
      // Rotated: what was written to the old file since the last look comes first.
      const rotated = await readTail(`${file}.1`, offset);
      if (rotated?.ino === ino) yield* take(rotated.text);
      rest = "";
    }
    if (current) {
      ino = current.ino;
      yield* take(current.text);
      offset = current.size;
    }
    if (!follow) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, pollMs);
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}

/**
 * Opens `file` and reads it to its end from `start` (an offset, or one picked from the
 * open file's size and inode): the inode, the size and the bytes all of that one open
 * file. Undefined when there is no such file.
 */
async function readTail(file: string, start: number | ((at: { size: number; ino: number }) => number)): Promise<{ ino: number; size: number; text: string } | undefined> {
  const fh = await fs.open(file, "r").catch(() => undefined);
  if (!fh) return undefined;
  try {
    const st = await fh.stat();
    const begin = typeof start === "number" ? start : start(st);
    const buf = new Uint8Array(Math.max(0, st.size - begin));
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await fh.read(buf, done, buf.length - done, begin + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return { ino: st.ino, size: begin + done, text: new TextDecoder().decode(buf.subarray(0, done)) };
  } finally {
    await fh.close();
  }
}
