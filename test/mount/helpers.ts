/**
 * Helpers of the mount tests: a store with a mount that is always unmounted afterwards,
 * and the system calls made through it from CHILD processes (shell commands and
 * test/mount/sys.pl), never from the test process, which serves the mount (a call into
 * the mount from the thread that serves it could never be answered).
 *
 * @module
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ImageStore } from "../../src/images/mod.ts";
import type { LayerStoreOptions } from "../../src/layers/mod.ts";
import { clearDeadMounts, fuseUnsupported, kernelUnmount, mount, type MountedLayer, type MountOptions, mountTable } from "../../src/mount/mod.ts";

/** Why the mount tests skip here (false when they run): they need Linux, root, /dev/fuse and perl. */
export const skipFuse: string | false = (() => {
  const why = fuseUnsupported();
  if (why) return `skipped: ${why}`;
  return false;
})();

/** The perl helper for calls the shell has no command for. */
export const SYS = fileURLToPath(new URL("./sys.pl", import.meta.url));

/** What a child process did. */
export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `script` with `sh -e` in a child process. */
export function sh(script: string, env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-ec", script], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (c) => (stdout += c));
    child.stderr!.on("data", (c) => (stderr += c));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs `script` and asserts it succeeded; returns its stdout. */
export async function ok(script: string, env?: Record<string, string>): Promise<string> {
  const r = await sh(script, env);
  assert.equal(r.code, 0, `script failed (${r.code}):\n${script}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** Runs the perl helper: `sys setxattr PATH NAME VALUE`, ...; returns its one line. */
export async function sys(...args: string[]): Promise<string> {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
  return (await ok(`perl ${SYS} ${quoted}`)).trim();
}

/** A store in a temporary directory, mount points in it, and the cleanup of both. */
export interface Fixture {
  store: ImageStore;
  dir: string;
  /** A new empty directory to mount on. */
  mountPoint(name?: string): Promise<string>;
  /** Unmounts whatever is still mounted below `dir`, closes the store, removes `dir`. */
  cleanup(): Promise<void>;
}

let cleared = false;

/**
 * Makes a store for a mount test. `t.after(fixture.cleanup)` (or a finally) must follow:
 * the cleanup unmounts anything left mounted (lazily, if busy) before it deletes files,
 * so it never walks into a mount.
 */
export async function fixture(options: LayerStoreOptions = {}): Promise<Fixture> {
  if (!cleared) {
    cleared = true;
    await clearDeadMounts(); // left by an earlier run that was killed
  }
  const dir = await fs.mkdtemp(path.join(process.env.THINSTACK_TEST_DIR ?? os.tmpdir(), "mount-"));
  const store = await ImageStore.open(path.join(dir, "store"), { create: true, dataSize: 16 * 2 ** 30, baseSize: 8 * 2 ** 30, ...options });
  let n = 0;
  return {
    store, dir,
    mountPoint: async (name = `mnt${n++}`) => {
      const p = path.join(dir, name);
      await fs.mkdir(p, { recursive: true });
      return p;
    },
    cleanup: async () => {
      const real = await fs.realpath(dir);
      const below = (await mountTable()).filter((m) => m.mountPoint === real || m.mountPoint.startsWith(real + "/")).reverse();
      for (const m of below) {
        await kernelUnmount(m.mountPoint).catch(() => kernelUnmount(m.mountPoint, true));
      }
      await store.close().catch(() => {});
      const still = (await mountTable()).some((m) => m.mountPoint.startsWith(real + "/"));
      if (!still) await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** Mounts layer `key` of `store` at `dir`, runs `fn` with the mount, and unmounts it whatever happens. */
export async function withMount<T>(store: ImageStore, key: string, dir: string, fn: (m: MountedLayer) => Promise<T>, options: MountOptions = {}): Promise<T> {
  const m = await mount(store, key, dir, options);
  try {
    return await fn(m);
  } finally {
    await m.unmount();
  }
}

/** Bytes of a deterministic pattern (the CLI tests' generator: the same bytes for a seed). */
export { pattern } from "../cli/cli.ts";
