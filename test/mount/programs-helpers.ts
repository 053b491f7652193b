/**
 * Helpers of the real-program tests on mounts: an image store (images imported or
 * applied from ../shared/images) with mount points, always unmounted afterwards; the
 * `thinstack mount` CLI run as a SEPARATE serving process (so a test can SIGKILL it); and
 * what a tool needs to run (skip messages when it is absent).
 *
 * Every command that touches a mount runs in a child process: the serving process must
 * never make a system call into its own mount.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ImageStore } from "../../src/images/mod.ts";
import type { LayerStoreOptions } from "../../src/layers/mod.ts";
import { clearDeadMounts, kernelUnmount, mountTable } from "../../src/mount/mod.ts";
import { cliCommand } from "../cli/cli.ts";
import { skipFuse } from "./helpers.ts";

/** `../shared/images` beside the repository (THINSTACK_IMAGES overrides). */
export const IMAGES = process.env.THINSTACK_IMAGES ?? fileURLToPath(new URL("../../../shared/images/", import.meta.url));
export const BUSYBOX = path.join(IMAGES, "busybox-1.38.0-musl-amd64");
export const ALPINE = path.join(IMAGES, "alpine-minirootfs-3.20.3-x86_64.tar.gz");

/** Whether a command is on PATH. */
export function have(tool: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0;
}

/** GNU tar (the alpine extraction is compared against it), not busybox's or bsdtar. */
function gnuTar(): boolean {
  const r = spawnSync("tar", ["--version"], { encoding: "utf8" });
  return r.status === 0 && /GNU tar/.test(r.stdout);
}

/**
 * Why a real-program test skips here, or false when it runs: it needs a FUSE mount (Linux,
 * root, /dev/fuse), the images of ../shared/images, and the tools it names.
 */
export function skipUnless(...tools: string[]): string | false {
  if (skipFuse) return skipFuse;
  if (!existsSync(path.join(IMAGES, "MANIFEST.txt"))) return `skipped: the real images are absent: ${IMAGES} (CI places ../shared/images beside the repo)`;
  const missing = tools.filter((t) => (t === "gnutar" ? !gnuTar() : !have(t)));
  if (missing.length > 0) return `skipped: needs ${missing.join(", ")} (Debian: apt-get install ${missing.map((t) => (t === "gnutar" ? "tar" : t)).join(" ")})`;
  return false;
}

/** A temporary directory with an image store and mount points, and their cleanup. */
export interface ImageFixture {
  dir: string;
  /** The store's directory (`--root` for the CLI). */
  root: string;
  /** The open store; undefined while the test has it closed for a separate server. */
  store: ImageStore;
  /** Opens the store again (after `close()`, or after a server was killed). */
  reopen(options?: LayerStoreOptions): Promise<ImageStore>;
  /** Closes the store (so another process can open it). */
  close(): Promise<void>;
  /** A new empty directory to mount on (or to extract into). */
  scratch(name?: string): Promise<string>;
  /** Kills what the test started (`track`), unmounts what is mounted below `dir`, closes the store and removes `dir`. */
  cleanup(): Promise<void>;
  /** Registers a child process to be killed at cleanup. */
  track(child: ChildProcess): void;
}

/** Makes an image store for a test; `t.after(f.cleanup)` must follow. */
export async function imageFixture(options: LayerStoreOptions = {}): Promise<ImageFixture> {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(process.env.THINSTACK_TEST_DIR ?? os.tmpdir(), "progs-")));
  const root = path.join(dir, "store");
  const storeOptions = { dataSize: 32 * 2 ** 30, baseSize: 8 * 2 ** 30, ...options };
  let store: ImageStore | undefined = await ImageStore.open(root, { create: true, ...storeOptions });
  const children = new Set<ChildProcess>();
  let n = 0;
  const f: ImageFixture = {
    dir, root,
    get store(): ImageStore {
      assert.ok(store, "the store is closed");
      return store;
    },
    reopen: async (o = {}) => {
      if (store) await store.close();
      store = await ImageStore.open(root, { ...storeOptions, ...o });
      return store;
    },
    close: async () => {
      const s = store;
      store = undefined;
      await s?.close();
    },
    scratch: async (name = `d${n++}`) => {
      const p = path.join(dir, name);
      await fs.mkdir(p, { recursive: true });
      return p;
    },
    track: (child) => {
      children.add(child);
      child.on("exit", () => children.delete(child));
    },
    cleanup: async () => {
      for (const c of children) c.kill("SIGKILL");
      await Promise.all([...children].map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.on("exit", r)))));
      // A server killed mid-request leaves a dead mount: clear those first, then unmount the rest.
      await clearDeadMounts(`thinstack:${root}`).catch(() => []);
      const below = (await mountTable()).filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + "/")).reverse();
      for (const m of below) await kernelUnmount(m.mountPoint).catch(() => kernelUnmount(m.mountPoint, true)).catch(() => {});
      await store?.close().catch(() => {});
      store = undefined;
      const still = (await mountTable()).some((m) => m.mountPoint.startsWith(dir + "/"));
      if (!still) await fs.rm(dir, { recursive: true, force: true });
    },
  };
  return f;
}

/** A `thinstack mount` running in its own process. */
export interface CliServer {
  child: ChildProcess;
  /** Where the layer is mounted (canonical). */
  path: string;
  /** What the server wrote so far. */
  output(): { stdout: string; stderr: string };
  /** Settles with the exit code / signal when the server exits. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `thinstack --root ROOT mount KEY DIR` as a child process and waits until it
 * says the layer is mounted. The store must not be open in this process.
 */
export async function cliMount(f: ImageFixture, key: string, dir: string, extra: string[] = []): Promise<CliServer> {
  const [cmd, argv] = cliCommand(["--root", f.root, "mount", ...extra, key, dir]);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== "THINSTACK_ROOT") env[k] = v;
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"], env: { ...env, NO_COLOR: "1" } });
  f.track(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (c) => (stdout += c));
  child.stderr!.on("data", (c) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 60_000;
  while (!/^mounted .* at (.+?)( \(read-only\))?$/m.test(stdout)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`thinstack mount exited (${child.exitCode ?? child.signalCode}) before mounting:\n${stdout}\n${stderr}`);
    if (Date.now() > deadline) throw new Error(`thinstack mount did not mount within 60 s:\n${stdout}\n${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const mounted = /^mounted .* at (.+?)( \(read-only\))?$/m.exec(stdout)![1];
  return { child, path: mounted, output: () => ({ stdout, stderr }), exited };
}

/** Kills a CLI server with SIGKILL and waits for it to be gone. */
export async function killServer(s: CliServer): Promise<void> {
  s.child.kill("SIGKILL");
  await s.exited;
}
