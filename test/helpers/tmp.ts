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

/** Runs configured for fast-check: FUZZ_RUNS (set by `npm run fuzz`) scales every property test up. */
export function runs(normal: number): number {
  const fuzz = Number(process.env.FUZZ_RUNS ?? "");
  return Number.isFinite(fuzz) && fuzz > 0 ? Math.max(fuzz, normal) : normal;
}
