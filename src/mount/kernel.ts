/**
 * The kernel side of a mount, through the system's tools in child processes: `mount -i -t
 * fuse.thinstack -o fd=3,...` with the /dev/fuse descriptor as the child's fd 3 (the
 * kernel keeps the connection after the helper exits), `umount`, bind mounts, the mount
 * table (`/proc/self/mountinfo`), and clearing mounts whose server died ("Transport
 * endpoint is not connected"): abort the connection through fusectl, then a lazy unmount.
 *
 * A serving process must never make a system call into its own mount from its main
 * thread (that thread is the one that would have to answer it): everything here that
 * looks at a mount's contents runs in a child process.
 *
 * @module
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { storeError } from "../common/errors.ts";

/** The file system type thinstack mounts as (`fuse.` + subtype). */
export const FS_TYPE = "fuse.thinstack";
/** Where fusectl lives; each connection has a directory named by its device minor. */
export const FUSECTL = "/sys/fs/fuse/connections";

/**
 * The source the mount table shows for mounts of the store in `storeDir`:
 * `thinstack:` and the directory's absolute path, so a store finds its own mounts (the
 * dead ones to clear) among everyone's.
 *
 * @example
 * ```ts
 * import { mountSource } from "./kernel.ts";
 * console.log(mountSource("/var/lib/thinstack")); // thinstack:/var/lib/thinstack
 * ```
 */
export function mountSource(storeDir: string): string {
  return `thinstack:${path.resolve(storeDir)}`;
}

/** One line of /proc/self/mountinfo. */
export interface MountEntry {
  /** The mount's id. */
  id: number;
  /** The id of the mount it is mounted on. */
  parent: number;
  /** The device's major number (0 for FUSE). */
  major: number;
  /** The device's minor number: for FUSE, the connection's name under /sys/fs/fuse/connections. */
  minor: number;
  /** The path inside the file system that is mounted (for a bind of a subdirectory). */
  root: string;
  /** Where it is mounted. */
  mountPoint: string;
  /** Per-mount options (`rw,relatime`). */
  options: string;
  /** The file system type (`fuse.thinstack`). */
  fsType: string;
  /** The source (for thinstack: {@linkcode mountSource}). */
  source: string;
  /** The file system's own options. */
  superOptions: string;
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The mount table of this process's mount namespace, in mount order.
 *
 * @example
 * ```ts ignore
 * const ours = (await mountTable()).filter((m) => m.fsType === FS_TYPE);
 * ```
 */
export async function mountTable(): Promise<MountEntry[]> {
  const text = await fs.readFile("/proc/self/mountinfo", "utf8");
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const [head, tail] = line.split(" - ");
    const f = head.split(" ");
    const [fsType, source, superOptions] = (tail ?? "").split(" ");
    const [major, minor] = f[2].split(":").map(Number);
    out.push({
      id: Number(f[0]), parent: Number(f[1]), major, minor, root: unescape(f[3]), mountPoint: unescape(f[4]),
      options: f[5], fsType, source: unescape(source ?? ""), superOptions: superOptions ?? "",
    });
  }
  return out;
}

/** The last (topmost) mount at `dir`, if any. */
export async function mountAt(dir: string): Promise<MountEntry | undefined> {
  return (await mountTable()).filter((m) => m.mountPoint === dir).pop();
}

/** What a child process printed, and how it ended. */
interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command, with extra descriptors handed down as fds 3, 4, ... */
export function run(cmd: string, args: string[], options: { fds?: number[]; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe", ...(options.fds ?? [])] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (c) => (stdout += c));
    child.stderr!.on("data", (c) => (stderr += c));
    const timer = options.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), options.timeoutMs) : undefined;
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Why FUSE mounts cannot work here, or undefined when they can: they need root (mount
 * with fd= needs CAP_SYS_ADMIN), /dev/fuse, and util-linux's mount and umount.
 *
 * @example
 * ```ts ignore
 * const why = fuseUnsupported();
 * if (why) console.log(`skipping: ${why}`);
 * ```
 */
export function fuseUnsupported(): string | undefined {
  if (process.platform !== "linux") return "FUSE mounts need Linux";
  if (typeof process.getuid === "function" && process.getuid() !== 0) return "FUSE mounts need root (mount with fd= needs CAP_SYS_ADMIN)";
  if (!existsSync("/dev/fuse")) return "there is no /dev/fuse (modprobe fuse)";
  if (!["/usr/bin/mount", "/bin/mount"].some(existsSync)) return "util-linux mount is not installed";
  return undefined;
}

/** Options of {@linkcode kernelMount}. */
export interface KernelMountOptions {
  /** What `mount` shows as the source: `thinstack:STORE`, so a store knows its mounts. */
  source: string;
  readOnly?: boolean;
  /** Largest READ request, in bytes. */
  maxRead?: number;
}

/**
 * Mounts the FUSE connection of descriptor `fd` (an open /dev/fuse) at `dir` (a
 * canonical path). The kernel sends INIT once this returns; read it from `fd`.
 */
export async function kernelMount(fd: number, dir: string, options: KernelMountOptions): Promise<MountEntry> {
  const opts = ["fd=3", "rootmode=40000", "user_id=0", "group_id=0", "allow_other", "default_permissions"];
  if (options.maxRead) opts.push(`max_read=${options.maxRead}`);
  if (options.readOnly) opts.push("ro");
  // -i: no mount.fuse.thinstack helper; -n: no /etc/mtab (utab) entry to go stale.
  const r = await run("mount", ["-i", "-n", "-t", FS_TYPE, "-o", opts.join(","), options.source, dir], { fds: [fd] });
  if (r.code !== 0) throw mountError(r, "mount", dir);
  const entry = (await mountTable()).filter((m) => m.mountPoint === dir && m.fsType === FS_TYPE).pop();
  if (!entry) throw storeError("EIO", "mount", dir, "mount reported success but the mount is not in /proc/self/mountinfo");
  return entry;
}

/** Bind-mounts `source` (a directory of a mount) at `target`; read-only with `readOnly`. */
export async function bindMount(source: string, target: string, readOnly = false): Promise<void> {
  const r = await run("mount", ["-n", "--bind", source, target]);
  if (r.code !== 0) throw mountError(r, "mount", target);
  if (readOnly) {
    const ro = await run("mount", ["-n", "-o", "remount,bind,ro", target]);
    if (ro.code !== 0) {
      await run("umount", ["-n", "-c", "-l", target]);
      throw mountError(ro, "mount", target);
    }
  }
}

/**
 * Unmounts `dir` (never canonicalized: that would look into the mount). EBUSY while it is
 * in use, unless `lazy` (then the kernel finishes when the last user goes); EINVAL when
 * nothing is mounted there.
 */
export async function kernelUnmount(dir: string, lazy = false): Promise<void> {
  const r = await run("umount", ["-n", "-c", ...(lazy ? ["-l"] : []), dir]);
  if (r.code !== 0) throw mountError(r, "umount", dir);
}

function mountError(r: Ran, syscall: string, dir: string) {
  const text = (r.stderr || r.stdout).trim().split("\n").pop() ?? "";
  if (/busy/i.test(text)) return storeError("EBUSY", syscall, dir, `it is in use (${text}); close what uses it, or unmount lazily`);
  if (/not mounted|no mount point/i.test(text)) return storeError("EINVAL", syscall, dir, "nothing is mounted there");
  if (/permission|not permitted|only root/i.test(text)) return storeError("EPERM", syscall, dir, `${text}; mounting needs root`);
  if (/no such file/i.test(text)) return storeError("ENOENT", syscall, dir, text);
  return storeError("EIO", syscall, dir, `${syscall} failed (exit ${r.code}): ${text}`);
}

/**
 * True when the FUSE mount at `dir` has no live server ("Transport endpoint is not
 * connected"). Asked from a child process with a timeout, so it is safe from a server.
 */
export async function isDead(dir: string): Promise<boolean> {
  const r = await run("stat", ["-f", "-c", "%T", dir], { timeoutMs: 10_000 });
  return r.code !== 0 && /not connected|aborted/i.test(r.stderr);
}

/** Aborts FUSE connection `minor` (fusectl's `abort`), mounting fusectl first if needed. */
export async function abortConnection(minor: number): Promise<void> {
  if (!existsSync(`${FUSECTL}/${minor}`)) {
    if (!(await mountTable()).some((m) => m.fsType === "fusectl")) await run("mount", ["-n", "-t", "fusectl", "fusectl", FUSECTL]);
  }
  await fs.writeFile(`${FUSECTL}/${minor}/abort`, "1").catch(() => {});
}

/**
 * Clears the dead mount `m`: aborts its connection (a server that hangs rather than died
 * has one still open), then unmounts it lazily.
 */
export async function clearMount(m: MountEntry): Promise<void> {
  await abortConnection(m.minor);
  await kernelUnmount(m.mountPoint, true).catch(() => {});
}

/**
 * Clears every thinstack mount without a live server whose source is `source` (any
 * source when omitted), binds of one too; returns the mount points cleared.
 *
 * @example
 * ```ts ignore
 * await clearDeadMounts(`thinstack:${storeDir}`); // before opening the store
 * ```
 */
export async function clearDeadMounts(source?: string): Promise<string[]> {
  const cleared: string[] = [];
  if (process.platform !== "linux") return cleared;
  const mine = (await mountTable()).filter((m) => m.fsType === FS_TYPE && (source === undefined || m.source === source));
  // Innermost first: a bind on top of a dead mount goes before it.
  for (const m of mine.reverse()) {
    if (!(await isDead(m.mountPoint))) continue;
    await clearMount(m);
    cleared.push(m.mountPoint);
  }
  return cleared;
}

/** Sets the read-ahead of connection `minor`'s bdi (the kernel starts it at 128 KiB). */
export async function setReadahead(major: number, minor: number, kib: number): Promise<void> {
  await fs.writeFile(`/sys/class/bdi/${major}:${minor}/read_ahead_kb`, String(kib)).catch(() => {});
}
