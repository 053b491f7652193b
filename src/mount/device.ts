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
 * - A reply is one write() of the whole message, made synchronously (a reply never
 *   blocks in the kernel), except a large READ reply under Node: copying 1 MiB into the
 *   kernel's pages takes most of a millisecond, so it is written on libuv's pool while
 *   the main thread takes the next requests. Notifications may block (the kernel takes the inode lock of a
 *   directory that a request waiting for our reply can hold), so they are written by a
 *   small child process holding its own copy of the descriptor (perl, fed framed
 *   messages on a pipe): nothing of this process waits for them. A thread of our own
 *   would not do: Deno serializes the operations on one descriptor, so a notification
 *   blocked in the kernel would hold up the next read, and the reply it needs.
 *   The helper exits when its pipe closes, so it never keeps a dead server's
 *   connection open. It acknowledges each notification (one byte back on its stdout)
 *   once its write() returned: the kernel has acted on it by then, so a request may
 *   wait for that (bounded: see shared.ts) before replying.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import { Buffer } from "node:buffer";
import type { Reply } from "./codec.ts";
import { HEADER_ROOM, Size } from "./protocol.ts";

/** Requests up to this size are copied out of the read buffer. */
const SMALL = 16 * 1024;
declare const Deno: unknown;

/**
 * Large READ replies are written on libuv's thread pool under Node. Deno serializes the
 * operations on one descriptor, so an asynchronous write there would wait for the
 * pending read (see notify), which may wait for this very reply.
 */
const ASYNC_DATA_REPLIES = typeof Deno === "undefined";
/** Replies from this size are written asynchronously (where they are). */
const ASYNC_DATA_BYTES = 64 * 1024;
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
  #notifier: ChildProcess | undefined;
  /** Resolves the notifications sent to the notifier and not acknowledged yet, oldest first. */
  #unacked: (() => void)[] = [];
  /** The notifier is gone (it failed to start, or died): nothing will be acknowledged. */
  #deaf = false;
  #closed = false;
  /** Asynchronous replies not written yet: the descriptor is closed after them (its number must not be reused under them). */
  #writing = 0;
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

  /**
   * Answers request `unique` with `data` as the whole body (a READ), without copying it
   * on Node; `sent` is called once `data` is no longer needed, with the write's error if
   * it failed for another reason than the request or the connection being gone (a bug).
   */
  replyData(unique: number, data: Uint8Array, sent?: (error?: Error) => void): void {
    if (this.#closed) return sent?.();
    const head = Buffer.allocUnsafe(Size.OUT_HEADER);
    writeHeader(head, Size.OUT_HEADER + data.byteLength, 0, unique);
    if (ASYNC_DATA_REPLIES && data.byteLength >= ASYNC_DATA_BYTES) {
      // Copying a large reply into the kernel's pages takes most of a millisecond per MiB:
      // on libuv's pool, the main thread meanwhile takes the next requests.
      this.#writing++;
      fs.writev(this.fd, [head, data], (e) => {
        if (--this.#writing === 0 && this.#closed) this.#closeFd();
        sent?.(e && !gone(e) ? e : undefined);
      });
      return;
    }
    try {
      // One writev: a single message to the kernel (Deno joins the pieces, then writes once).
      fs.writevSync(this.fd, [head, data]);
    } catch (e) {
      if (!gone(e)) throw e;
    } finally {
      sent?.();
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
   * Sends notification `code` (its body in `reply`) through the notifier process, which
   * writes each message with one write(); its errors (the kernel's "nothing to
   * invalidate") are of no interest. Never waits for the kernel; the promise resolves
   * once the notifier's write returned (or the notifier is gone), and never rejects.
   * Await it only in a request the kernel sends without holding a lock the
   * notification takes (see shared.ts), and never without a bound.
   */
  notify(code: number, reply: Reply): Promise<void> {
    if (this.#closed) return Promise.resolve();
    writeHeader(reply.buf, reply.pos, code, 0);
    this.#notifier ??= spawnNotifier(this.fd, (n) => this.#acked(n), () => this.#gone());
    const acked = this.#deaf ? Promise.resolve() : new Promise<void>((resolve) => this.#unacked.push(resolve));
    this.#notifier.stdin!.write(reply.buf.subarray(0, reply.pos));
    return acked;
  }

  #acked(n: number): void {
    for (const resolve of this.#unacked.splice(0, n)) resolve();
  }

  #gone(): void {
    this.#deaf = true;
    this.#acked(this.#unacked.length);
  }

  /** Closes the descriptor (after the connection ended, or to abandon it). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#notifier?.stdin?.end();
    this.#notifier = undefined;
    this.#gone();
    if (this.#writing === 0) this.#closeFd();
  }

  #closeFd(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // closed already
    }
  }
}

/**
 * Each message starts with its length (the header's first field): read it, read the
 * rest, write the whole to fd 3 at once, then acknowledge it with one byte on stdout.
 * EOF on stdin (the server is gone) ends it.
 */
const NOTIFIER = `
open(my $dev, ">&=", 3) or die "fd 3: $!";
binmode STDIN;
for (;;) {
  my $head = "";
  while (length($head) < 4) { my $r = sysread(STDIN, $head, 4 - length($head), length($head)); exit 0 unless $r; }
  my $len = unpack("V", $head);
  my $msg = $head;
  while (length($msg) < $len) { my $r = sysread(STDIN, $msg, $len - length($msg), length($msg)); exit 0 unless $r; }
  syswrite($dev, $msg);
  syswrite(STDOUT, "\\1");
}`;

function spawnNotifier(fd: number, acked: (n: number) => void, gone: () => void): ChildProcess {
  const child = spawn("perl", ["-e", NOTIFIER], { stdio: ["pipe", "pipe", "inherit", fd] });
  child.on("error", gone);
  child.stdin!.on("error", () => {});
  // Read always: acknowledgements nobody waits for must not fill the pipe and stall the notifier.
  child.stdout!.on("data", (b: Buffer) => acked(b.byteLength));
  child.stdout!.on("error", gone);
  child.stdout!.on("close", gone);
  // It must not keep the process alive, nor outlive it.
  child.unref();
  (child.stdout as { unref?: () => void }).unref?.();
  return child;
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
