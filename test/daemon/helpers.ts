/**
 * Helpers for the daemon's tests: a Snapshots server in this process over a fresh store,
 * a raw gRPC client that sees what containerd sees (status codes, messages as sent), and
 * `thinstack serve` in a child process.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { LayerStore } from "../../src/layers/mod.ts";
import { SnapshotsClient } from "../../src/daemon/client.ts";
import { clientConstructor, SNAPSHOTS_SERVICE } from "../../src/daemon/definition.ts";
import type { LayerMounter } from "../../src/daemon/mounter.ts";
import { SocketServer } from "../../src/daemon/server.ts";
import { SnapshotService, type SnapshotStore } from "../../src/daemon/service.ts";
import { runtimeCommand } from "../helpers/runtime.ts";
import { tempDir } from "../layers/helpers.ts";

/** The repository's root. */
export const REPO = path.resolve(new URL("../..", import.meta.url).pathname);

/** What a call answered: its response, or its status (code, details). */
export type Answer = { ok: true; value: Record<string, unknown> } | { ok: false; code: grpc.status; details: string; metadata: grpc.Metadata };

/** A client that calls as containerd does and returns statuses instead of throwing. */
export class RawClient {
  readonly #client: grpc.Client;

  constructor(socket: string) {
    this.#client = new (clientConstructor(SNAPSHOTS_SERVICE))(`unix://${socket}`, grpc.credentials.createInsecure());
  }

  /** Calls unary `method` with `request` (and metadata entries). */
  call(method: string, request: Record<string, unknown>, metadata: Record<string, string> = {}): Promise<Answer> {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    const fn = (this.#client as unknown as Record<string, (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, v: unknown) => void) => void>)[method];
    return new Promise((resolve) => {
      fn.call(this.#client, { snapshotter: "thinstack", ...request }, md, (e, v) => {
        if (e) resolve({ ok: false, code: e.code, details: e.details, metadata: e.metadata });
        else resolve({ ok: true, value: v as Record<string, unknown> });
      });
    });
  }

  /** Calls List; the messages it streamed, or its status. */
  list(filters: string[] = []): Promise<{ messages: { info: Record<string, unknown>[] }[]; error?: grpc.ServiceError }> {
    const messages: { info: Record<string, unknown>[] }[] = [];
    return new Promise((resolve) => {
      const stream = (this.#client as unknown as Record<string, (r: unknown) => grpc.ClientReadableStream<{ info: Record<string, unknown>[] }>>)
        .List({ snapshotter: "thinstack", filters });
      stream.on("data", (m) => messages.push(m));
      stream.on("error", (error: grpc.ServiceError) => resolve({ messages, error }));
      stream.on("end", () => resolve({ messages }));
    });
  }

  /** Closes the channel. */
  close(): void {
    this.#client.close();
  }
}

/** A server in this process over a new store. */
export interface TestService {
  store: LayerStore;
  dir: string;
  socket: string;
  server: SocketServer;
  /** thinstack's own client (asks for no mounts unless `mounts` was set). */
  client: SnapshotsClient;
  /** containerd's view. */
  raw: RawClient;
  /** Stops the server and removes everything. */
  cleanup(): Promise<void>;
}

/** Starts a Snapshots server on a fresh store, with `mounter` if given; `wrap` may stand in for the store. */
export async function startService(options: { mounter?: LayerMounter; wrap?: (s: LayerStore) => SnapshotStore; clientMounts?: boolean } = {}): Promise<TestService> {
  const dir = await tempDir("daemon-");
  const store = await LayerStore.open(path.join(dir, "store"), { create: true, dataSize: 4 * 2 ** 30, baseSize: 2 ** 30 });
  const socket = path.join(dir, "s.sock");
  let server: SocketServer;
  try {
    const service = new SnapshotService({ store: options.wrap ? options.wrap(store) : store, mounter: options.mounter, info: () => [["Pool Name", "test"]] });
    server = await SocketServer.listen(socket, service);
  } catch (e) {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
    throw e;
  }
  const client = new SnapshotsClient(socket, { mounts: options.clientMounts });
  const raw = new RawClient(socket);
  return {
    store, dir, socket, server, client, raw,
    cleanup: async () => {
      client.close();
      raw.close();
      await server.close(1000);
      await store.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** The CLI's command line under this runtime (`thinstack ARGS`). */
export function cliCommand(args: string[]): [string, string[]] {
  return runtimeCommand(path.join(REPO, "src/cli/main.ts"), args);
}

/** Runs the CLI to its end: exit code, stdout, stderr. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, argv] = cliCommand(args);
  const child = spawn(cmd, argv, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  return collect(child);
}

/** Waits for a child to exit; its code and output. */
export function collect(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d) => (stdout += d));
  child.stderr?.on("data", (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** A `thinstack serve` child process (serve-child.ts: the CLI's serve, optionally with the test-only scratch mounter). */
export interface ServeChild {
  child: ChildProcess;
  socket: string;
  /** stderr so far. */
  stderr(): string;
  /** Resolves with the exit code once it exits. */
  exited: Promise<number | null>;
  /** SIGTERM, then waits (SIGKILL after `ms`). */
  stop(ms?: number): Promise<number | null>;
  /** SIGKILL, then waits. */
  kill(): Promise<number | null>;
}

/** Starts serve on the store in `root` at `socket` and waits until it is ready (its record is written). */
export async function startServe(root: string, socket: string, options: { scratchMounts?: string; cli?: boolean; serveArgs?: string[] } = {}): Promise<ServeChild> {
  const args = options.cli
    ? ["--root", root, "serve", "--address", socket, ...(options.serveArgs ?? [])]
    : ["--root", root, "--address", socket, ...(options.scratchMounts ? ["--scratch-mounts", options.scratchMounts] : [])];
  const [cmd, argv] = options.cli ? cliCommand(args) : runtimeCommand(path.join(REPO, "test/daemon/serve-child.ts"), args);
  const child = spawn(cmd, argv, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? (signal ? -1 : null))));
  const wait = async (ms: number) => {
    // Cleared once the child exits: a pending timer would keep the test process alive for `ms`.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)));
    try {
      return await Promise.race([exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
  // process.kill, not child.kill: Deno's child_process reports a child it kill()ed as
  // ended by that signal even when the child caught it and exited with a code.
  const signal = (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, sig);
  };
  const handle: ServeChild = {
    child, socket, stderr: () => err, exited,
    stop: async (ms = 30_000) => {
      signal("SIGTERM");
      const r = await wait(ms);
      if (r !== "timeout") return r;
      signal("SIGKILL");
      return await exited;
    },
    kill: async () => {
      signal("SIGKILL");
      return await exited;
    },
  };
  const deadline = Date.now() + 60_000;
  while (!err.includes("thinstack: serving ")) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`serve exited before it listened: ${err}`);
    if (Date.now() > deadline) {
      await handle.kill();
      throw new Error(`serve did not listen within 60 s: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return handle;
}

/** Unmounts (lazily) every mount at or under `dir`, deepest first: what a failed mount test left. */
export async function unmountUnder(dir: string): Promise<void> {
  const real = await fs.realpath(dir).catch(() => dir);
  const mounts = (await fs.readFile("/proc/mounts", "utf8")).split("\n")
    .map((l) => l.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((m): m is string => !!m && (m === real || m.startsWith(real + "/")))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await collect(spawn("umount", ["-l", m], { stdio: ["ignore", "pipe", "pipe"] }));
}
