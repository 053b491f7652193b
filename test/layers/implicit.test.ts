// A commit the pool makes without the store asking (an application's pool.commit(), those
// of a deferred deletion, one that reclaims blocks) carries the store's tables as they are.
// The store allows it only between its operations; these properties let fc.scheduler()
// start a store operation at any point of such a commit, and check that what it committed
// is the store between two operations: opened from a copy taken right after the commit,
// every file is whole or absent and fsck finds nothing.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import fc from "fast-check";
import { BlockIo } from "../../src/pool/blockio.ts";
import { LayerStore } from "../../src/layers/mod.ts";
import { runs, withTmp } from "../helpers/tmp.ts";

const BS = 64 * 1024;
const APP_DEVICE = 77_777;
const fill = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (seed + i * 7) & 0xff);

describe("implicit commits (fc.scheduler)", () => {
  it("a store operation that starts while the pool commits by itself is not committed half-done", async () => {
    const io = BlockIo.acquire();
    const { run, read } = io;
    try {
      await withTmp(async (tmp) => {
        let round = 0;
        await fc.assert(
          fc.asyncProperty(
            fc.scheduler(),
            fc.integer({ min: 1, max: 3 * BS }), fc.integer({ min: 3000, max: 3 * BS }), fc.nat(255),
            fc.constantFrom("writeFile", "appendFile", "rename", "rm"),
            fc.constantFrom("pool.commit", "deferred deletion"),
            async (s, preLen, len, seed, op, trigger) => {
              const dir = path.join(tmp, `s${round++}`);
              const store = await LayerStore.open(dir, { create: true, dataSize: 256 * BS, baseSize: 64 * BS });
              const copy = `${dir}-copy`;
              try {
                await store.prepare("ctr");
                // A device of the application's own, beside the store's.
                await store.pool.createThin(APP_DEVICE, 4 * BS);
                await store.pool.device(APP_DEVICE).write(0, fill(BS, seed));
                const ctr = store.fs("ctr");
                await ctr.writeFile("/old", fill(len, seed ^ 1));
                await store.sync();
                // Every worker task from here on starts when the scheduler says so.
                Object.assign(io, {
                  run: (task: Parameters<typeof run>[0]) => s.schedule(Promise.resolve(), "task").then(() => run.call(io, task)),
                  read: (task: Parameters<typeof read>[0]) => s.schedule(Promise.resolve(), "read").then(() => read.call(io, task)),
                });
                // Finished, its writes still queued: the commit first waits for them.
                await ctr.writeFile("/pre", fill(preLen, seed));
                const commit = trigger === "pool.commit"
                  ? store.pool.commit()
                  : store.pool.deleteDevice(APP_DEVICE, { deferred: true }).then(() => store.pool.settle());
                const operation = s.schedule(Promise.resolve(), "the store operation starts").then(() => {
                  switch (op) {
                    case "writeFile": return ctr.writeFile("/new", fill(len, seed ^ 2));
                    case "appendFile": return ctr.appendFile("/old", fill(len, seed ^ 3));
                    case "rename": return ctr.rename("/old", "/moved");
                    default: return ctr.rm("/old");
                  }
                });
                await s.waitFor(commit);
                // What that commit made durable, as a crash right now would leave it.
                await fs.cp(dir, copy, { recursive: true });
                await s.waitAll();
                await operation;
                Object.assign(io, { run, read });
                const again = await LayerStore.open(copy);
                try {
                  const f = again.fs("ctr");
                  const bytesOf = (p: string) => f.readFile(p).then((b) => Buffer.from(b as Uint8Array), () => undefined);
                  assert.deepEqual(await bytesOf("/pre"), Buffer.from(fill(preLen, seed)), "the file written before the commit");
                  const old = await bytesOf("/old");
                  const states: (Uint8Array | undefined)[] = [fill(len, seed ^ 1)];
                  if (op === "appendFile") states.push(new Uint8Array([...fill(len, seed ^ 1), ...fill(len, seed ^ 3)]));
                  if (op === "rename" || op === "rm") states.push(undefined);
                  assert.ok(states.some((w) => w === undefined ? old === undefined : old !== undefined && Buffer.from(w).equals(old)), `/old is neither as before nor as after ${op}`);
                  const nw = await bytesOf("/new");
                  assert.ok(nw === undefined || Buffer.from(fill(len, seed ^ 2)).equals(nw), "/new is half-written");
                  const moved = await bytesOf("/moved");
                  assert.ok(moved === undefined || Buffer.from(fill(len, seed ^ 1)).equals(moved), "/moved is not /old");
                  assert.ok(!(old && moved), "a rename committed half-done: both names");
                  assert.deepEqual((await again.fsck()).problems, []);
                } finally {
                  await again.close();
                }
              } finally {
                Object.assign(io, { run, read });
                await s.waitAll().catch(() => {});
                await store.close();
                await fs.rm(dir, { recursive: true, force: true });
                await fs.rm(copy, { recursive: true, force: true });
              }
            },
          ),
          { numRuns: runs(20), includeErrorInReport: true },
        );
      });
    } finally {
      Object.assign(io, { run, read });
      delete (io as { run?: unknown }).run;
      delete (io as { read?: unknown }).read;
      await BlockIo.release();
    }
  });
});
