/**
 * Punching holes in the data file, so blocks the pool no longer uses stop taking disk
 * space (the seed's loop-lvm caveat: freed blocks may not be freed on the host).
 * Neither Node nor Deno's own API has fallocate(2), so:
 * - under Deno, FFI calls libc's `open`, `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`
 *   and `close` directly (node:fs descriptors are Deno resource ids there, not OS descriptors);
 * - under Node, util-linux's `fallocate --punch-hole` runs once per contiguous range.
 *
 * Both run inside the I/O workers (a `punch` step of a task), like every other access to
 * the data file, so neither a synchronous FFI call nor process spawning holds up the main
 * thread.
 *
 * @module
 */
import { execFileSync } from "node:child_process";

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

/** A punch failure with the code to report (an error's own `code` does not cross the worker boundary). */
export class PunchError extends Error {
  constructor(readonly code: "ENOENT" | "EIO", readonly syscall: string, message: string) {
    super(message);
  }
}

/** The method this runtime uses. */
export function punchMethod(): PunchMethod {
  return typeof Deno !== "undefined" && Deno.build.os === "linux" ? "ffi" : "fallocate(1)";
}

/**
 * Punches every range out of `file`, synchronously (it runs in a worker). Ranges must be
 * free: their bytes read as zeros afterwards. Throws {@linkcode PunchError}.
 */
export function punchHolesSync(file: string, ranges: ByteRange[]): void {
  if (punchMethod() === "ffi") return punchWithFfi(file, ranges);
  for (const r of ranges) {
    try {
      execFileSync("fallocate", ["--punch-hole", "--keep-size", "--offset", String(r.offset), "--length", String(r.length), file], { stdio: ["ignore", "ignore", "pipe"] });
    } catch (e) {
      const err = e as { code?: string; stderr?: Uint8Array; message: string };
      if (err.code === "ENOENT") throw new PunchError("ENOENT", "fallocate", "util-linux 'fallocate' is not installed; install util-linux, or run under Deno");
      throw new PunchError("EIO", "fallocate", (err.stderr ? new TextDecoder().decode(err.stderr) : "").trim() || err.message);
    }
  }
}

function punchWithFfi(file: string, ranges: ByteRange[]): void {
  const libc = Deno!.dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32"], result: "i32" },
    fallocate: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
  });
  try {
    const fd = libc.symbols.open(new TextEncoder().encode(file + "\0"), O_RDWR) as number;
    if (fd < 0) throw new PunchError("EIO", "open", "libc open failed");
    try {
      for (const r of ranges) {
        const rc = libc.symbols.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, BigInt(r.offset), BigInt(r.length));
        if (rc !== 0) throw new PunchError("EIO", "fallocate", "fallocate(PUNCH_HOLE) failed; the file system may not support holes");
      }
    } finally {
      libc.symbols.close(fd);
    }
  } finally {
    libc.close();
  }
}
