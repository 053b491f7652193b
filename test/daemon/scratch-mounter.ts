/**
 * A TEST-ONLY LayerMounter: each layer is "served" as an empty directory of the host
 * under `dir`, unrelated to the layer's files. It exercises the gRPC surface (mounts
 * returned, released before Commit and Remove, restored after a restart) until the FUSE
 * mount lands; what is written through its directories never reaches the store.
 *
 * @module
 */
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { LayerMounter, MountKind, MountTarget } from "../../src/daemon/mounter.ts";

/** What the scratch mounter did, for assertions. */
export interface ScratchLog {
  ensured: string[];
  released: string[];
  restored: MountTarget[][];
  closed: number;
}

/** A scratch mounter over `dir` (made if missing). */
export function scratchMounter(dir: string, log: ScratchLog = { ensured: [], released: [], restored: [], closed: 0 }): LayerMounter & { log: ScratchLog } {
  const served = new Map<string, MountKind>();
  // The same key always gets the same directory, across restarts (as the interface asks).
  const dirOf = (key: string) => path.join(dir, createHash("sha256").update(key).digest("hex").slice(0, 16));
  return {
    log,
    async ensure(key, kind) {
      const d = dirOf(key);
      await fs.mkdir(d, { recursive: true, mode: 0o755 });
      served.set(key, kind);
      log.ensured.push(key);
      return d;
    },
    async release(key) {
      if (!served.delete(key)) return;
      await fs.rm(dirOf(key), { recursive: true, force: true });
      log.released.push(key);
    },
    async restore(layers) {
      log.restored.push(layers);
      for (const l of layers) {
        if (await fs.stat(dirOf(l.key)).then(() => true, () => false)) served.set(l.key, l.kind);
      }
    },
    served: () => [...served.keys()],
    async close() {
      log.closed++;
      served.clear();
    },
  };
}
