/**
 * Loop devices for direct-mode tests: a sparse file the test makes, attached with
 * `losetup --find --show`, always detached afterwards (even when the test fails).
 * Needs root, /dev/loop-control and util-linux; {@linkcode loopSkip} says why not.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { tmpDir } from "./tmp.ts";

/** A reason to skip loop-device tests here, or false when they can run. */
export const loopSkip: string | false = (() => {
  if (process.getuid?.() !== 0) return "direct mode needs root to attach loop devices (CI runs as root)";
  if (!fs.existsSync("/dev/loop-control")) return "no /dev/loop-control: this kernel has no loop devices";
  try {
    execFileSync("losetup", ["--version"], { stdio: "ignore" });
    execFileSync("blkdiscard", ["--version"], { stdio: "ignore" });
  } catch {
    return "util-linux's losetup and blkdiscard are not installed";
  }
  return false;
})();

/** An attached loop device and its backing file. */
export interface Loop {
  /** `/dev/loopN`. */
  device: string;
  /** The sparse file behind it. */
  file: string;
  /** Bytes the backing file takes on disk (st_blocks × 512). */
  allocated(): number;
  /** Grows (or shrinks) the backing file to `size` bytes and tells the loop device (`losetup -c`). */
  resize(size: number): void;
}

/** Runs `fn` with a fresh loop device over a sparse file of `size` bytes, detached afterwards. */
export async function withLoop<T>(size: number, fn: (loop: Loop) => Promise<T>): Promise<T> {
  const dir = await tmpDir("thinstack-loop-");
  const file = path.join(dir, "backing.img");
  await fsp.writeFile(file, "");
  await fsp.truncate(file, size);
  let device: string | undefined;
  try {
    device = execFileSync("losetup", ["--find", "--show", file], { encoding: "utf8" }).trim();
    const loop: Loop = {
      device,
      file,
      allocated: () => fs.statSync(file).blocks * 512,
      resize(to) {
        fs.truncateSync(file, to);
        execFileSync("losetup", ["-c", device!]);
      },
    };
    return await fn(loop);
  } finally {
    if (device) detach(device);
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** `losetup -d`, retried briefly: a descriptor a worker is letting go of can hold it a moment. */
function detach(device: string): void {
  for (let i = 0; ; i++) {
    try {
      execFileSync("losetup", ["-d", device], { stdio: ["ignore", "ignore", "pipe"] });
      return;
    } catch (e) {
      if (i >= 20) throw e;
      execFileSync("sleep", ["0.1"]);
    }
  }
}
