/**
 * Punching holes in the data file, so blocks the pool no longer uses stop taking disk
 * space (the seed's loop-lvm caveat: freed blocks may not be freed on the host).
 * Neither Node nor Deno's own API has fallocate(2), so:
 * - under Deno, FFI calls libc's `open`, `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`
 *   and `close` directly (node:fs descriptors are Deno resource ids there, not OS descriptors);
 * - under Node, util-linux's `fallocate --punch-hole` runs once per contiguous range, a few at a time.
 *
 * @module
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { storeError } from "../common/errors.ts";

const run = promisify(execFile);
const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;
const O_RDWR = 2;

/** A byte range of a file. */
export interface ByteRange { offset: number; length: number }

/** How holes were punched. */
export type PunchMethod = "ffi" | "fallocate(1)";

interface DenoFfi {
  dlopen(lib: string, symbols: Record<string, { parameters: string[]; result: string }>): {
    symbols: Record<string, (...args: unknown[]) => number | bigint>;
    close(): void;
  };
  build: { os: string };
}
declare const Deno: DenoFfi | undefined;

/** Punches every range out of `file`. Ranges must be free: their bytes read as zeros afterwards. */
export async function punchHoles(file: string, ranges: ByteRange[]): Promise<PunchMethod> {
  if (typeof Deno !== "undefined" && Deno.build.os === "linux") {
    punchWithFfi(file, ranges);
    return "ffi";
  }
  const queue = ranges.slice();
  const worker = async () => {
    for (let r = queue.shift(); r; r = queue.shift()) {
      try {
        await run("fallocate", ["--punch-hole", "--keep-size", "--offset", String(r.offset), "--length", String(r.length), file]);
      } catch (e) {
        const err = e as { code?: string; stderr?: string; message: string };
        if (err.code === "ENOENT") {
          throw storeError("ENOENT", "fallocate", file, "util-linux 'fallocate' is not installed; install util-linux, or run under Deno");
        }
        throw storeError("EIO", "fallocate", file, (err.stderr || err.message).trim());
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, ranges.length) }, worker));
  return "fallocate(1)";
}

function punchWithFfi(file: string, ranges: ByteRange[]): void {
  const libc = Deno!.dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32"], result: "i32" },
    fallocate: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
  });
  try {
    const fd = libc.symbols.open(new TextEncoder().encode(file + "\0"), O_RDWR) as number;
    if (fd < 0) throw storeError("EIO", "open", file, "libc open failed");
    try {
      for (const r of ranges) {
        const rc = libc.symbols.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, BigInt(r.offset), BigInt(r.length));
        if (rc !== 0) throw storeError("EIO", "fallocate", file, "fallocate(PUNCH_HOLE) failed; the file system may not support holes");
      }
    } finally {
      libc.symbols.close(fd);
    }
  } finally {
    libc.close();
  }
}
