/**
 * One FUSE connection's descriptor (/dev/fuse): the request loop and the writes back.
 *
 * - Exactly one read is pending at a time. Under Node a blocking read holds a libuv
 *   thread-pool thread (there are four), so one pending read leaves the others to the
 *   store's own file work; requests are still handled concurrently, since the next read
 *   starts as soon as the previous one returns.
 * - Each read gets a buffer that holds the largest request (max_write plus the header
 *   room); small requests are copied out so the buffer goes straight back to the loop,
 *   a large WRITE keeps its buffer until its handler is done.
 * - A reply is one write() of the whole message, made synchronously: a reply never
 *   blocks in the kernel. Notifications may block (the kernel takes inode and page
 *   locks that a request waiting for our reply can hold), so they are written
 *   asynchronously, one at a time, and never from the thread that answers requests.
 *
 * @module
 */
import fs from "node:fs";
import { Buffer } from "node:buffer";
import type { Reply } from "./codec.ts";
import { HEADER_ROOM, Size } from "./protocol.ts";

/** Requests up to this size are copied out of the read buffer. */
const SMALL = 16 * 1024;
/** Read buffers kept for reuse. */
const KEEP = 8;

/**
 * An open /dev/fuse.
 *
 * @example
 * ```ts ignore
 * const dev = FuseDevice.open(1 << 20);
 * // ... mount it (kernel.ts), then:
 * await dev.serve((buf, done) => { handle(buf).finally(done); });
 * dev.close();
 * ```
 */
export class FuseDevice {
  readonly fd: number;
  /** Bytes of the read buffers: the largest request the kernel may send. */
  readonly bufferSize: number;
  #free: Buffer[] = [];
  #notifying: Promise<void> = Promise.resolve();
  #closed = false;
  /** Set once the connection ended (the read failed with ENODEV or ECONNABORTED). */
  ended = false;

  private constructor(fd: number, maxWrite: number) {
    this.fd = fd;
    this.bufferSize = maxWrite + HEADER_ROOM;
  }

  /** Opens /dev/fuse for a connection whose WRITE requests carry at most `maxWrite` bytes. */
  static open(maxWrite: number): FuseDevice {
    return new FuseDevice(fs.openSync("/dev/fuse", "r+"), maxWrite);
  }

  /**
   * Reads requests until the connection ends, calling `onRequest` with each (a Buffer
   * of exactly the request) and a `done` to call once the request's bytes are no
   * longer needed. Resolves when the kernel ends the connection (unmount or abort).
   */
  async serve(onRequest: (request: Buffer, done: () => void) => void): Promise<void> {
    while (!this.#closed) {
      const buf = this.#free.pop() ?? Buffer.allocUnsafe(this.bufferSize);
      let n: number;
      try {
        n = await this.#read(buf);
      } catch (e) {
        this.#give(buf);
        const code = (e as { code?: string }).code;
        // The request we were about to read was interrupted and is gone: read the next.
        if (code === "ENOENT" || code === "EINTR" || code === "EAGAIN") continue;
        if (code === "ENODEV" || code === "ECONNABORTED" || code === "EBADF") break;
        throw e;
      }
      if (n < Size.IN_HEADER) {
        this.#give(buf);
        continue;
      }
      if (n <= SMALL) {
        const copy = Buffer.from(buf.subarray(0, n));
        this.#give(buf);
        onRequest(copy, () => {});
      } else {
        let given = false;
        onRequest(buf.subarray(0, n), () => {
          if (given) return;
          given = true;
          this.#give(buf);
        });
      }
    }
    this.ended = true;
  }

  #read(buf: Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      fs.read(this.fd, buf, 0, buf.byteLength, null, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }

  #give(buf: Buffer): void {
    if (this.#free.length < KEEP) this.#free.push(buf);
  }

  /** Answers request `unique` with `reply` (its header is filled in here). */
  reply(unique: number, reply: Reply): void {
    this.#send(reply.buf, reply.pos, 0, unique);
  }

  /** Answers request `unique` with `data` as the whole body (a READ), without copying it on Node. */
  replyData(unique: number, data: Uint8Array): void {
    if (this.#closed) return;
    const head = Buffer.allocUnsafe(Size.OUT_HEADER);
    writeHeader(head, Size.OUT_HEADER + data.byteLength, 0, unique);
    try {
      // One writev: a single message to the kernel (Deno joins the pieces, then writes once).
      fs.writevSync(this.fd, [head, data]);
    } catch (e) {
      if (!gone(e)) throw e;
    }
  }

  /** Answers request `unique` with an error (a positive errno). */
  replyError(unique: number, errno: number): void {
    this.#send(Buffer.alloc(Size.OUT_HEADER), Size.OUT_HEADER, -errno, unique);
  }

  #send(buf: Buffer, len: number, error: number, unique: number): void {
    if (this.#closed) return;
    writeHeader(buf, len, error, unique);
    try {
      fs.writeSync(this.fd, buf, 0, len);
    } catch (e) {
      if (!gone(e)) throw e;
    }
  }

  /**
   * Sends notification `code` (its body in `reply`). Resolves once written; the kernel's
   * "nothing to invalidate" (ENOENT) and a gone connection count as done.
   */
  notify(code: number, reply: Reply): Promise<void> {
    const buf = reply.buf;
    const len = reply.pos;
    writeHeader(buf, len, code, 0);
    const write = () => new Promise<void>((resolve) => {
      if (this.#closed) return resolve();
      fs.write(this.fd, buf, 0, len, null, () => resolve());
    });
    const done = this.#notifying.then(write);
    this.#notifying = done;
    return done;
  }

  /** Closes the descriptor (after the connection ended, or to abandon it). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      fs.closeSync(this.fd);
    } catch {
      // closed already
    }
  }
}

/** The request was interrupted and dropped, or the connection is gone: nobody waits for the reply. */
function gone(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === "ENOENT" || code === "ENODEV" || code === "ECONNABORTED" || code === "EBADF";
}

function writeHeader(buf: Buffer, len: number, error: number, unique: number): void {
  buf.writeUInt32LE(len, 0);
  buf.writeInt32LE(error, 4);
  buf.writeUInt32LE(unique >>> 0, 8);
  buf.writeUInt32LE(Math.floor(unique / 4294967296) >>> 0, 12);
}
