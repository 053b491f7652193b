/** Temporary directories for tests, removed afterwards. */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";

/** Makes a fresh temporary directory. */
export async function tmpDir(prefix = "thinstack-test-"): Promise<string> {
  return await fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Runs `fn` with a fresh temporary directory and removes it afterwards. */
export async function withTmp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await tmpDir();
  try {
    return await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * The number of runs of a property test: `normal`, or FUZZ_RUNS (set by `npm run fuzz`)
 * when that is more. Never 0: a FUZZ_RUNS that is set but not a whole number of at least
 * 1 (empty, 0, "abc") is an error, as is a `normal` under 1, so a typo cannot turn a
 * property test into one that checks nothing.
 */
export function runs(normal: number): number {
  if (!Number.isSafeInteger(normal) || normal < 1) throw new Error(`runs(${normal}): a property test needs at least 1 run`);
  const fuzz = countFromEnv("FUZZ_RUNS");
  return fuzz === undefined ? normal : Math.max(fuzz, normal);
}

/** A count from environment variable `name`: undefined when unset; an error unless a whole number of at least 1. */
export function countFromEnv(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isSafeInteger(n) || n < 1) {
    throw new Error(`${name}='${raw}' must be a whole number, 1 or more (leave it unset for the normal count)`);
  }
  return n;
}
