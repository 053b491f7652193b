/**
 * Gzip worker: deflates one stream per task for src/interchange/gzip.ts, off the main
 * thread (Deno's node:zlib deflates on the thread that calls it). The stream talks over
 * the task's port: input arrives in buffers transferred here, which go back once
 * deflate has consumed them; output is copied into empty buffers the main thread hands
 * over ("room"), so neither side allocates per MiB, and deflate runs ahead of its reader
 * only by the room it has (consumed input is held back while output waits for room,
 * which stops the feed).
 */
import type { Buffer } from "node:buffer";
import zlib from "node:zlib";
import type { GzipReply, GzipRequest, GzipTask } from "../src/interchange/gzip.ts";

/** Output waiting for room beyond which consumed input is held back. */
const PENDING_LIMIT = 1 << 20;

/** Deflates the stream of `task`; resolves once its last output and "done" are posted. */
export default function gzipStream(task: GzipTask): Promise<void> {
  const { port } = task;
  const post = (reply: GzipReply, transfer: ArrayBuffer[] = []) => port.postMessage(reply, transfer);
  const rooms = [...task.rooms];
  let cur: Uint8Array | undefined;
  let fill = 0;
  const pending: Buffer[] = [];
  let pendingBytes = 0;
  let consumed: ArrayBuffer[] = [];
  let ended = false;
  const z = zlib.createGzip({ level: task.level, chunkSize: task.chunkSize });

  return new Promise<void>((resolve) => {
    const finish = () => {
      port.off("message", onMessage);
      port.close();
      resolve();
    };
    /** Moves pending output into room, posting each buffer filled; at the end, the last one and "done". */
    const flush = () => {
      while (pending.length) {
        if (!cur) {
          const room = rooms.shift();
          if (!room) break;
          cur = new Uint8Array(room);
          fill = 0;
        }
        const head = pending[0];
        const n = Math.min(head.byteLength, cur.byteLength - fill);
        cur.set(head.subarray(0, n), fill);
        fill += n;
        pendingBytes -= n;
        if (n === head.byteLength) pending.shift();
        else pending[0] = head.subarray(n);
        if (fill === cur.byteLength) {
          post({ type: "out", buf: cur.buffer as ArrayBuffer, length: fill }, [cur.buffer as ArrayBuffer]);
          cur = undefined;
        }
      }
      if (pendingBytes <= PENDING_LIMIT && consumed.length) {
        for (const buf of consumed) post({ type: "back", buf }, [buf]);
        consumed = [];
      }
      if (ended && !pending.length) {
        if (cur && fill) {
          post({ type: "out", buf: cur.buffer as ArrayBuffer, length: fill }, [cur.buffer as ArrayBuffer]);
          cur = undefined;
        }
        if (cur) rooms.push(cur.buffer as ArrayBuffer);
        post({ type: "done", rooms }, rooms);
        finish();
      }
    };
    const onMessage = (m: GzipRequest) => {
      if (m.type === "data") {
        z.write(new Uint8Array(m.buf, 0, m.length), () => {
          consumed.push(m.buf);
          flush();
        });
      } else if (m.type === "room") {
        rooms.push(m.buf);
        flush();
      } else z.end();
    };
    z.on("data", (d: Buffer) => {
      pending.push(d);
      pendingBytes += d.byteLength;
      flush();
    });
    z.on("end", () => {
      ended = true;
      flush();
    });
    z.on("error", (e: Error) => {
      post({ type: "error", message: e.message });
      finish();
    });
    port.on("message", onMessage);
  });
}
