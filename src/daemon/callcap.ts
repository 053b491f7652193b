/**
 * A limit on the calls one HTTP/2 connection carries: the workaround for a defect of
 * Deno 2.9's `node:http2` (its native binding over nghttp2 1.68).
 *
 * Measured here (Deno 2.9.6; the repro needs nothing of thinstack's): a plain
 * `node:http2` server under Deno that answered some 100 or more requests on one
 * connection from a client in another process dies as soon as that connection carries a
 * GOAWAY, sent (the server's graceful close, as grpc-js's `tryShutdown` does at SIGTERM)
 * or received (the client closing its channel): nghttp2 asserts in
 * `find_stream_on_goaway_func` (`stream->closed_next == NULL`), or glibc aborts with
 * `free(): invalid pointer`, or the process takes SIGSEGV. The session's stream map holds
 * an entry that is no longer a stream, which only the GOAWAY walk over that map (and the
 * session's deletion) touches; a connection ending by EOF, other connections of the same
 * process and the GC do not matter. At 30–80 requests a connection never did this in
 * dozens of runs; at 100 one run in three did, at 250 every run. The same client against
 * Node never did. (denoland/deno#36788 is the same crash.)
 *
 * So under Deno the server ends each connection, gracefully, after
 * {@linkcode DENO_CALLS_PER_CONNECTION} calls, much as grpc-js ends one at
 * `grpc.max_connection_age_ms`: a GOAWAY announcing the shutdown (last stream id
 * 2^31 - 1, so calls the client has already sent are still taken), a PING, and once its
 * answer is back (the client has read the GOAWAY, and every call it sent before has
 * arrived) and the last call in flight has ended, `close()`. Closing at once would refuse
 * the calls still on the wire (grpc-js reports "Stream refused by server"; measured with
 * 40 calls at once). gRPC clients (grpc-go in containerd, grpc-js in the CLI) open a new
 * connection for their next call. Every GOAWAY then falls on a connection
 * with few streams, which this defect spares, on both sides (a Deno client receiving the
 * GOAWAY is spared as well).
 *
 * @module
 */
import http2 from "node:http2";
import type * as grpc from "@grpc/grpc-js";

/**
 * Calls per connection under Deno: well under the ~100 at which the defect first showed,
 * and a reconnect on a unix socket costs well under a millisecond against the 7–14 ms
 * a lifecycle call spends committing.
 */
export const DENO_CALLS_PER_CONNECTION = 32;

/** The largest stream id: a GOAWAY naming it refuses nothing already sent. */
const LAST_STREAM_ID = 2 ** 31 - 1;

/** Counts, for tests and benchmarks. */
export interface CallCap {
  /** Connections the server has taken so far. */
  readonly connections: number;
}

/**
 * Has grpc-js `server` (bound already) end each connection gracefully once it has
 * carried `max` calls. grpc-js keeps its HTTP/2 servers in a private field
 * (`http2Servers`, grpc-js 1.10 to 1.14); without it this throws, rather than serve
 * unprotected.
 */
export function capCallsPerConnection(server: grpc.Server, max: number): CallCap {
  const servers = (server as unknown as { http2Servers?: Map<http2.Http2Server, unknown> }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) {
    throw new Error("grpc-js no longer keeps its HTTP/2 servers in 'http2Servers': the per-connection call limit (Deno's node:http2 GOAWAY defect, src/daemon/callcap.ts) needs another way to reach them");
  }
  const cap = { connections: 0 };
  for (const h2 of servers.keys()) {
    h2.on("session", (session: http2.ServerHttp2Session) => {
      cap.connections++;
      let calls = 0;
      let open = 0;
      let draining = false;
      const closeIfIdle = () => {
        if (draining && open === 0 && !session.closed && !session.destroyed) session.close();
      };
      session.on("stream", (stream: http2.ServerHttp2Stream) => {
        open++;
        stream.once("close", () => {
          open--;
          closeIfIdle();
        });
        if (++calls !== max) return;
        try {
          session.goaway(http2.constants.NGHTTP2_NO_ERROR, LAST_STREAM_ID);
          // The PING's answer comes after every call the client sent before it read the
          // GOAWAY. Then close() once the last of them has ended: Deno's close() resets a
          // stream still open with NO_ERROR (the client sees "Call ended without gRPC
          // status", measured one run in five of the gRPC suite), where Node's waits.
          session.ping(() => {
            draining = true;
            closeIfIdle();
          });
        } catch {
          // The session is closing already.
        }
      });
    });
  }
  return cap;
}
