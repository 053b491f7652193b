/**
 * The gRPC server on a unix socket: containerd's Snapshots service and thinstack's Control
 * service, with a graceful stop (no new calls; the ones in flight finish).
 *
 * @module
 */
import fs from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { storeError } from "../common/errors.ts";
import { type CallCap, capCallsPerConnection, DENO_CALLS_PER_CONNECTION } from "./callcap.ts";
import { CONTROL_SERVICE, serviceDefinition, SNAPSHOTS_SERVICE } from "./definition.ts";
import type { SnapshotService } from "./service.ts";

/** The longest unix socket path Linux takes (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

/** containerd's limits for its own API (defaults.DefaultMaxRecvMsgSize / SendMsgSize: 16 MiB). */
const MAX_MESSAGE = 16 << 20;

/** What {@linkcode SocketServer.listen} takes besides the address and the service. */
export interface ListenOptions {
  /**
   * Ends each connection gracefully after this many calls (the client reconnects).
   * Default: {@linkcode DENO_CALLS_PER_CONNECTION} under Deno, whose `node:http2` dies on
   * a GOAWAY over a connection that carried many calls (see callcap.ts); unlimited on Node.
   */
  callsPerConnection?: number;
}

/** A Snapshots server listening on a unix socket. */
export class SocketServer {
  readonly #server: grpc.Server;
  readonly #cap: CallCap | undefined;
  /** The socket's path. */
  readonly address: string;
  #closing: Promise<void> | undefined;

  private constructor(server: grpc.Server, address: string, cap: CallCap | undefined) {
    this.#server = server;
    this.address = address;
    this.#cap = cap;
  }

  /** Connections taken so far, where calls per connection are limited; undefined where not. */
  get connections(): number | undefined {
    return this.#cap?.connections;
  }

  /**
   * Listens on the unix socket at `address` (its directory is made; a socket left by a dead
   * server is replaced). EBUSY when a live server answers there; EINVAL for a path
   * longer than a unix socket takes.
   */
  static async listen(address: string, service: SnapshotService, options: ListenOptions = {}): Promise<SocketServer> {
    const socket = path.resolve(address);
    if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
      throw storeError("EINVAL", "listen", socket, `a unix socket path holds at most ${MAX_SOCKET_PATH} bytes; pick a shorter --address`);
    }
    await fs.mkdir(path.dirname(socket), { recursive: true, mode: 0o711 });
    await clearStale(socket);
    const server = new grpc.Server({
      "grpc.max_receive_message_length": MAX_MESSAGE,
      "grpc.max_send_message_length": MAX_MESSAGE,
    });
    server.addService(serviceDefinition(SNAPSHOTS_SERVICE), service.snapshots());
    server.addService(serviceDefinition(CONTROL_SERVICE), service.control());
    await new Promise<number>((resolve, reject) =>
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port)))
    );
    const max = options.callsPerConnection ?? ("Deno" in globalThis ? DENO_CALLS_PER_CONNECTION : undefined);
    let cap: CallCap | undefined;
    try {
      if (max !== undefined) cap = capCallsPerConnection(server, max);
      // As containerd's own socket: root's alone (the API changes the store).
      await fs.chmod(socket, 0o600);
    } catch (e) {
      server.forceShutdown();
      await fs.rm(socket, { force: true });
      throw e;
    }
    return new SocketServer(server, socket, cap);
  }

  /**
   * Stops: no new connections or calls, the calls in flight finish; after `graceMs`, what
   * is still open is cut. The socket file goes.
   */
  close(graceMs = 30_000): Promise<void> {
    return this.#closing ??= (async () => {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#server.forceShutdown();
          resolve();
        }, graceMs);
        this.#server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await fs.rm(this.address, { force: true });
    })();
  }
}

/** Removes a socket file nobody answers on; EADDRINUSE when someone does. */
async function clearStale(socket: string): Promise<void> {
  const st = await fs.lstat(socket).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw storeError("EEXIST", "listen", socket, "a file that is not a socket is in the way; remove it or pick another --address");
  const answered = await new Promise<boolean>((resolve) => {
    const c = net.connect(socket);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
  if (answered) throw storeError("EBUSY", "listen", socket, "another server listens on this socket; stop it or pick another --address");
  await fs.rm(socket, { force: true });
}
