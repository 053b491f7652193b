/**
 * Direct mode's data device (the seed's direct-lvm): a raw block device instead of the
 * sparse data file. What a pool needs from it:
 * - its size, read from sysfs (`/sys/dev/block/MAJ:MIN/size`, 512-byte sectors): `stat`
 *   gives a block device a size of 0, and neither runtime's API has lseek;
 * - that nothing else uses it when a pool is made on it (not mounted, no swap, no
 *   device-mapper or md holders, no partitions, no file system or partition table
 *   signature that blkid knows), as Docker's direct-lvm setup refuses a used device;
 * - an exclusive claim while the pool is open (`open(O_EXCL)` on a block device, which is
 *   how the kernel keeps a device to one user: a mount, mkfs or a second pool on it then
 *   fails with EBUSY). The claim is held by the main thread only; the I/O workers open the
 *   device by path without O_EXCL, which a claim allows. Deno's node:fs turns O_EXCL into
 *   "create new" (EEXIST on an existing path), so under Deno the claim is made through FFI.
 *
 * @module
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import { storeError } from "../common/errors.ts";

const O_RDWR = 2;
const O_EXCL = 0o200;
const O_CLOEXEC = 0o2000000;

/** `MAJ:MIN` of a device number, as sysfs and mountinfo name devices. */
export function devName(rdev: number): string {
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  return `${major}:${minor}`;
}

/** The device's sysfs directory, or ENOTBLK/ENOENT for a path that is not a block device. */
async function sysDir(device: string, syscall: string): Promise<string> {
  const st = await fsp.stat(device).catch(() => undefined);
  if (!st) throw storeError("ENOENT", syscall, device, "no such data device; give the path of a block device (such as /dev/loop0 or /dev/vg/thindata)");
  if (!st.isBlockDevice()) {
    throw storeError("ENOTBLK", syscall, device,
      `the data device must be a block device, and this is ${st.isFile() ? "a regular file" : st.isDirectory() ? "a directory" : "not one"}; attach a file with 'losetup --find --show FILE', or leave out the data device for a data file`);
  }
  return `/sys/dev/block/${devName(st.rdev)}`;
}

/** Bytes of the block device `device` (its current size: it follows an lvextend or `losetup -c`). */
export async function blockDeviceSize(device: string, syscall = "open"): Promise<number> {
  const dir = await sysDir(device, syscall);
  const sectors = Number((await fsp.readFile(`${dir}/size`, "utf8")).trim());
  if (!Number.isSafeInteger(sectors)) throw storeError("EIO", syscall, device, `sysfs gives no size for the device (${dir}/size)`);
  return sectors * 512;
}

/**
 * Checks that `device` is a block device nothing uses, for a new pool, and returns its
 * size in bytes. ENOTBLK for anything else; EBUSY, naming the user, for a device that is
 * mounted, swap, held by another device (device-mapper, md), partitioned, or that holds a
 * signature blkid recognizes (a file system, LVM, a partition table).
 */
export async function checkNewDataDevice(device: string): Promise<number> {
  const syscall = "create";
  const dir = await sysDir(device, syscall);
  const busy = (what: string, hint: string) => storeError("EBUSY", syscall, device, `the data device ${what}; ${hint}`);
  const real = await fsp.realpath(device);
  const majmin = dir.slice(dir.lastIndexOf("/") + 1);
  for (const line of (await fsp.readFile("/proc/self/mountinfo", "utf8")).split("\n")) {
    const f = line.split(" ");
    if (f[2] === majmin) throw busy(`is mounted on '${f[4].replace(/\\040/g, " ")}'`, "unmount it first, or pick another device");
  }
  const swaps = await fsp.readFile("/proc/swaps", "utf8").catch(() => "");
  for (const line of swaps.split("\n").slice(1)) {
    const name = line.split(/\s+/)[0];
    if (name && (name === device || name === real)) throw busy("is in use as swap", `'swapoff ${name}' first, or pick another device`);
  }
  const holders = await fsp.readdir(`${dir}/holders`).catch(() => [] as string[]);
  if (holders.length) throw busy(`is held by ${holders.join(", ")} (device-mapper or md)`, "remove those first ('dmsetup ls', 'lsblk'), or pick another device");
  const entries = await fsp.readdir(dir).catch(() => [] as string[]);
  const parts: string[] = [];
  for (const e of entries) if (await fsp.stat(`${dir}/${e}/partition`).then(() => true, () => false)) parts.push(e);
  if (parts.length) throw busy(`has partitions (${parts.join(", ")})`, "give one of its partitions, or remove the partition table if it is not needed ('wipefs -a')");
  const signature = await blkidSignature(device);
  if (signature) throw busy(`holds ${signature}`, `if its contents are not needed, wipe it with 'wipefs -a ${device}' first`);
  // Another program's exclusive claim (a pool open on it, mkfs running): EBUSY here.
  claimDevice(device, syscall)();
  const size = await blockDeviceSize(device, syscall);
  if (size === 0) throw noMedia(device, syscall);
  return size;
}

/** ENOENT for a block device of no bytes: a loop device with no file attached, a drive with no medium. */
export function noMedia(device: string, syscall: string): Error {
  return storeError("ENOENT", syscall, device, "the data device has no bytes (a loop device with no file attached?); attach its file again ('losetup DEVICE FILE')");
}

/** What blkid (util-linux) finds on the device, as words; undefined for nothing or no blkid. */
function blkidSignature(device: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile("blkid", ["-p", "-o", "export", device], (err, stdout) => {
      // Exit 2: nothing found. No blkid (ENOENT) or another failure: nothing to go by.
      if (err) return resolve(undefined);
      const tags = Object.fromEntries(String(stdout).split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
      if (tags.TYPE) return resolve(`a signature blkid reads as '${tags.TYPE}'${tags.LABEL ? ` (label '${tags.LABEL}')` : ""}`);
      if (tags.PTTYPE) return resolve(`a partition table ('${tags.PTTYPE}')`);
      resolve(undefined);
    });
  });
}

interface DenoFfi {
  dlopen(lib: string, symbols: Record<string, { parameters: string[]; result: string }>): {
    symbols: Record<string, (...args: unknown[]) => unknown>;
    close(): void;
  };
  UnsafePointerView: new (p: unknown) => { getInt32(): number };
}
declare const Deno: DenoFfi | undefined;

const ERRNO_CODES: Record<number, string> = { 1: "EPERM", 2: "ENOENT", 6: "ENXIO", 13: "EACCES", 16: "EBUSY", 30: "EROFS" };

/**
 * Claims `device` for this process (open with O_EXCL) until the returned function is
 * called. EBUSY when it is mounted or claimed by another (another pool open on it).
 */
export function claimDevice(device: string, syscall = "open"): () => void {
  const failed = (code: string) => {
    if (code === "EBUSY") {
      return storeError("EBUSY", syscall, device,
        "the data device is in use: mounted, held by another open pool, or opened exclusively by another program (see 'lsblk' and 'mount'); stop that first");
    }
    if (code === "EACCES" || code === "EPERM") return storeError("EACCES", syscall, device, "no permission to open the data device for writing; run as root or give the user access");
    if (code === "ENOENT" || code === "ENXIO") return storeError("ENOENT", syscall, device, "the data device is gone (a loop device detached?); attach it again at this path ('losetup DEVICE FILE' for a loop device)");
    return storeError("EIO", syscall, device, `opening the data device failed (${code})`);
  };
  if (typeof Deno !== "undefined") {
    const libc = Deno.dlopen("libc.so.6", {
      open: { parameters: ["buffer", "i32"], result: "i32" },
      close: { parameters: ["i32"], result: "i32" },
      __errno_location: { parameters: [], result: "pointer" },
    });
    const fd = libc.symbols.open(new TextEncoder().encode(device + "\0"), O_RDWR | O_EXCL | O_CLOEXEC) as number;
    if (fd < 0) {
      const errno = new Deno.UnsafePointerView(libc.symbols.__errno_location()).getInt32();
      libc.close();
      throw failed(ERRNO_CODES[errno] ?? `errno ${errno}`);
    }
    return () => {
      libc.symbols.close(fd);
      libc.close();
    };
  }
  let fd: number;
  try {
    fd = fs.openSync(device, fs.constants.O_RDWR | fs.constants.O_EXCL);
  } catch (e) {
    throw failed(String((e as { code?: string }).code));
  }
  return () => fs.closeSync(fd);
}
