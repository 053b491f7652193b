/**
 * containerd and a registry on private paths, for end-to-end tests of the snapshotter:
 * containerd 1.6 (Debian) with its own root, state, sockets and opt directory, the CRI
 * plugin off, and `thinstack` as a proxy snapshotter plugin; Debian's docker-registry on
 * 127.0.0.1 at a free port. `stop()` always takes both down and clears what containerd
 * leaves under /run/containerd for the harness's namespace (its shims' runc state lives
 * there whatever `state` says).
 *
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { tempDir } from "../layers/helpers.ts";
import { collect, REPO, unmountUnder } from "./helpers.ts";

/**
 * The team's shared/ directory of real images: $THINSTACK_SHARED, else `../shared` beside
 * the repository (CI's layout), else /work/shared (beside the main checkout, for worktrees).
 */
export const SHARED = [process.env.THINSTACK_SHARED, path.join(REPO, "../shared"), "/work/shared"]
  .find((d) => d && existsSync(path.join(d, "images"))) ?? path.join(REPO, "../shared");
/** The busybox OCI layout in shared/ (one layer; image name busybox:1.38.0-musl). */
export const BUSYBOX = path.join(SHARED, "images/busybox-1.38.0-musl-amd64");
/** The alpine minirootfs tarball in shared/. */
export const ALPINE_ROOTFS = path.join(SHARED, "images/alpine-minirootfs-3.20.3-x86_64.tar.gz");

/** Why the harness cannot run here, or undefined. */
export function harnessMissing(): string | undefined {
  if (process.getuid?.() !== 0) return "containerd and runc need root";
  if (!existsSync(BUSYBOX) || !existsSync(ALPINE_ROOTFS)) return `no shared images at ${SHARED}/images (set THINSTACK_SHARED)`;
  for (const tool of ["containerd", "ctr", "containerd-shim-runc-v2", "runc", "docker-registry", "skopeo"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `no ${tool} (Debian: containerd, runc, docker-registry, skopeo)`;
  }
  return undefined;
}

/** A command's result. */
export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A running containerd + registry. */
export interface Harness {
  /** The harness's private directory. */
  dir: string;
  /** containerd's namespace for this harness. */
  namespace: string;
  /** containerd's socket. */
  containerd: string;
  /** Where containerd dials the thinstack proxy plugin. */
  thinstackSocket: string;
  /** The registry, `127.0.0.1:PORT`. */
  registry: string;
  /** Runs `ctr --address ... -n NAMESPACE ARGS`. */
  ctr(...args: string[]): Promise<Run>;
  /** Pushes OCI layout `layout` (image `tag` in it) to the registry as `name`. */
  push(layout: string, tag: string, name: string): Promise<void>;
  /** containerd's log so far. */
  log(): string;
  /** Stops everything and removes what the harness made. Safe to call twice. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitFor(what: string, ok: () => Promise<boolean>, child: ChildProcess, log: () => string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!await ok()) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited: ${log()}`);
    if (Date.now() > deadline) throw new Error(`${what} did not start within ${ms} ms: ${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function started(cmd: string, args: string[], cwd: string): { child: ChildProcess; log: () => string; exited: Promise<void> } {
  const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return { child, log: () => log, exited };
}

/** SIGTERM (by pid: see helpers.ts), SIGKILL after `ms`. */
async function stopChild(p: { child: ChildProcess; exited: Promise<void> }, ms = 10_000): Promise<void> {
  const alive = () => p.child.exitCode === null && p.child.signalCode === null;
  if (!alive()) return;
  process.kill(p.child.pid!, "SIGTERM");
  const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms));
  if (await Promise.race([p.exited, timeout]) === "timeout" && alive()) {
    process.kill(p.child.pid!, "SIGKILL");
    await p.exited;
  }
}

/** Starts the registry and containerd. */
export async function startHarness(): Promise<Harness> {
  const dir = await tempDir("ctd-");
  const namespace = `thinstack-test-${path.basename(dir).slice(-6).toLowerCase().replace(/[^a-z0-9]/g, "x")}`;
  const containerd = path.join(dir, "containerd.sock");
  const thinstackSocket = path.join(dir, "thinstack.sock");
  const port = await freePort();
  const registry = `127.0.0.1:${port}`;
  await fs.writeFile(path.join(dir, "registry.yml"), [
    "version: 0.1",
    "log:",
    "  level: warn",
    "storage:",
    `  filesystem:\n    rootdirectory: ${path.join(dir, "registry")}`,
    "http:",
    `  addr: ${registry}`,
    "",
  ].join("\n"));
  await fs.writeFile(path.join(dir, "config.toml"), [
    "version = 2",
    `root = ${JSON.stringify(path.join(dir, "root"))}`,
    `state = ${JSON.stringify(path.join(dir, "state"))}`,
    `disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
    "[grpc]",
    `  address = ${JSON.stringify(containerd)}`,
    "[ttrpc]",
    `  address = ${JSON.stringify(`${containerd}.ttrpc`)}`,
    "[debug]",
    `  address = ${JSON.stringify(path.join(dir, "debug.sock"))}`,
    // THINSTACK_CTD_DEBUG=1: containerd logs at debug level ("diff applied" with its time, each snapshot call).
    ...(process.env.THINSTACK_CTD_DEBUG ? [`  level = "debug"`] : []),
    `[plugins."io.containerd.internal.v1.opt"]`,
    `  path = ${JSON.stringify(path.join(dir, "opt"))}`,
    "[proxy_plugins.thinstack]",
    `  type = "snapshot"`,
    `  address = ${JSON.stringify(thinstackSocket)}`,
    "",
  ].join("\n"));

  const reg = started("docker-registry", ["serve", path.join(dir, "registry.yml")], dir);
  let ctd: ReturnType<typeof started> | undefined;
  const ctr = (...args: string[]) => collect(spawn("ctr", ["--address", containerd, "-n", namespace, ...args], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] }));
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (ctd && ctd.child.exitCode === null) {
      // Tasks and containers of the namespace first: their shims exit with them.
      const tasks = await ctr("tasks", "ls", "-q");
      for (const id of tasks.stdout.split("\n").filter(Boolean)) {
        await ctr("tasks", "kill", "-s", "SIGKILL", id);
        await ctr("tasks", "rm", "-f", id);
      }
      const containers = await ctr("containers", "ls", "-q");
      for (const id of containers.stdout.split("\n").filter(Boolean)) await ctr("containers", "rm", id);
    }
    if (ctd) await stopChild(ctd);
    await stopChild(reg);
    await unmountUnder(dir);
    // containerd's runc shims keep their state here, per namespace, whatever `state` says.
    await fs.rm(path.join("/run/containerd/runc", namespace), { recursive: true, force: true });
    for (const d of ["runc", "s", "fifo", ""]) await fs.rmdir(path.join("/run/containerd", d)).catch(() => {}); // only when empty
    // runc made a cgroup named after the namespace under every controller; its containers' are gone by now.
    for (const controller of await fs.readdir("/sys/fs/cgroup").catch(() => [] as string[])) {
      await fs.rmdir(path.join("/sys/fs/cgroup", controller, namespace)).catch(() => {}); // only when empty
    }
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor("docker-registry", async () => {
      const r = await fetch(`http://${registry}/v2/`).catch(() => undefined);
      await r?.body?.cancel();
      return r?.status === 200;
    }, reg.child, reg.log);
    ctd = started("containerd", ["--config", path.join(dir, "config.toml")], dir);
    await waitFor("containerd", async () => (await ctr("version")).code === 0, ctd.child, ctd.log);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    dir, namespace, containerd, thinstackSocket, registry, ctr,
    push: async (layout, tag, name) => {
      const r = await collect(spawn("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", `oci:${layout}:${tag}`, `docker://${registry}/${name}`], { stdio: ["ignore", "pipe", "pipe"] }));
      if (r.code !== 0) throw new Error(`skopeo copy failed: ${r.stderr}`);
    },
    log: () => ctd?.log() ?? "",
    stop,
  };
}

const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/**
 * Writes an OCI layout at `dir` holding one image, `tag`, of the gzip layer tarballs
 * `layers` (bottom first), linux/amd64, for pushing to the registry.
 */
export async function writeImage(dir: string, tag: string, layers: Uint8Array[], cmd: string[] = ["/bin/sh"]): Promise<void> {
  const blobs = path.join(dir, "blobs/sha256");
  await fs.mkdir(blobs, { recursive: true });
  const put = async (bytes: Uint8Array) => {
    const digest = sha256(bytes);
    await fs.writeFile(path.join(blobs, digest.slice(7)), bytes);
    return { digest, size: bytes.byteLength };
  };
  const layerDescs = [];
  for (const gz of layers) layerDescs.push({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...await put(gz) });
  const config = new TextEncoder().encode(JSON.stringify({
    architecture: "amd64", os: "linux", config: { Cmd: cmd, Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] },
    rootfs: { type: "layers", diff_ids: layers.map((gz) => sha256(gunzipSync(gz))) },
  }));
  const manifest = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...await put(config) }, layers: layerDescs,
  }));
  const m = await put(manifest);
  await fs.writeFile(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await fs.writeFile(path.join(dir, "index.json"), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...m, annotations: { "org.opencontainers.image.ref.name": tag } }],
  }));
}

/** A gzip tarball of host directory `dir`'s contents (GNU tar), as a layer. */
export async function tarLayer(dir: string): Promise<Uint8Array> {
  const out = `${dir}.tar.gz`;
  const r = await collect(spawn("tar", ["-C", dir, "--numeric-owner", "-czf", out, "."], { stdio: ["ignore", "pipe", "pipe"] }));
  if (r.code !== 0) throw new Error(`tar failed: ${r.stderr}`);
  const bytes = new Uint8Array(await fs.readFile(out));
  await fs.rm(out);
  return bytes;
}
