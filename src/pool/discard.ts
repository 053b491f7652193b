/**
 * Discarding ranges of a block device (direct mode's `trim`, where loop mode punches
 * holes in the data file): the BLKDISCARD ioctl tells the device the range is unused —
 * an SSD or thin LUN reclaims it, a loop device punches the hole in its backing file.
 * - under Deno, FFI calls libc's `open` and `ioctl(BLKDISCARD, [offset, length])`;
 * - under Node, util-linux's `blkdiscard --force --offset --length` runs once per range
 *   (`--force`: the pool's own exclusive claim on the device would make it refuse).
 *
 * Both run inside the I/O workers (a `discard` step of a task), opening the device by path.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { storeError } from "../common/errors.ts";
import type { ByteRange } from "./punch.ts";

/** BLKDISCARD, _IO(0x12, 119). */
const BLKDISCARD = 0x1277n;
const O_RDWR = 2;

/** How free ranges of a data device were discarded. */
export type DiscardMethod = "ioctl(BLKDISCARD)" | "blkdiscard(8)";

interface DenoFfi {
  dlopen(lib: string, symbols: Record<string, { parameters: string[]; result: string }>): {
    symbols: Record<string, (...args: unknown[]) => unknown>;
    close(): void;
  };
  UnsafePointerView: new (p: unknown) => { getInt32(): number };
  build: { os: string };
}
declare const Deno: DenoFfi | undefined;

/** The method this runtime uses. */
export function discardMethod(): DiscardMethod {
  return typeof Deno !== "undefined" && Deno.build.os === "linux" ? "ioctl(BLKDISCARD)" : "blkdiscard(8)";
}

/** Discards every range of the block device `device`, synchronously (it runs in a worker). */
export function discardSync(device: string, ranges: ByteRange[]): void {
  if (discardMethod() === "ioctl(BLKDISCARD)") return discardWithFfi(device, ranges);
  for (const r of ranges) {
    try {
      execFileSync("blkdiscard", ["--force", "--offset", String(r.offset), "--length", String(r.length), device], { stdio: ["ignore", "ignore", "pipe"] });
    } catch (e) {
      const err = e as { code?: string; stderr?: Uint8Array; message: string };
      if (err.code === "ENOENT") throw storeError("EIO", "blkdiscard", device, "util-linux 'blkdiscard' is not installed; install util-linux, or run under Deno");
      const text = (err.stderr ? new TextDecoder().decode(err.stderr) : "").replace(/blkdiscard: Operation forced, data will be lost!\s*/, "").trim();
      throw storeError("EIO", "blkdiscard", device, discardHint(text || err.message));
    }
  }
}

function discardHint(text: string): string {
  return /not supported/i.test(text) ? `${text}: the device does not take discards; trim cannot give its space back` : text;
}

function discardWithFfi(device: string, ranges: ByteRange[]): void {
  const libc = Deno!.dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32"], result: "i32" },
    ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    __errno_location: { parameters: [], result: "pointer" },
  });
  const errno = () => new Deno!.UnsafePointerView(libc.symbols.__errno_location()).getInt32();
  try {
    const fd = libc.symbols.open(new TextEncoder().encode(device + "\0"), O_RDWR) as number;
    if (fd < 0) throw storeError("EIO", "open", device, `opening the data device failed (errno ${errno()})`);
    try {
      const arg = new BigUint64Array(2);
      for (const r of ranges) {
        arg[0] = BigInt(r.offset);
        arg[1] = BigInt(r.length);
        if (libc.symbols.ioctl(fd, BLKDISCARD, new Uint8Array(arg.buffer)) !== 0) {
          const e = errno();
          throw storeError("EIO", "ioctl", device, e === 95 ? "BLKDISCARD: operation not supported: the device does not take discards; trim cannot give its space back" : `BLKDISCARD failed (errno ${e})`);
        }
      }
    } finally {
      libc.symbols.close(fd);
    }
  } finally {
    libc.close();
  }
}
