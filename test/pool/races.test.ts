// Races between concurrent pool operations, under fast-check's scheduler.
//
// Writes are write-behind (src/pool/inflight.ts): a write returns with its tasks queued,
// and two workers may run queued tasks in any order. These properties let fc.scheduler()
// pick the order in which tasks start, so an ordering rule that is missing shows up as a
// wrong byte, whatever the machine's timing.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Inflight } from "../../src/pool/inflight.ts";
import type { IoOp } from "../../src/pool/iotask.ts";
import { BlockIo } from "../../src/pool/blockio.ts";
import { Pool } from "../../src/pool/pool.ts";
import { runs, withTmp } from "../helpers/tmp.ts";

const BS = 64 * 1024;

describe("races (fc.scheduler)", () => {
  it("a queued task starts only after every earlier task on any of its blocks has finished", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(fc.uniqueArray(fc.nat(5), { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 12 }),
        async (s, blockSets) => {
          const inflight = new Inflight(BS, "data");
          const started: number[] = [];
          const finished: number[] = [];
          let clock = 0;
          const tasks = blockSets.map((blocks, i) => {
            const ops: IoOp[] = blocks.map((b) => ({ op: "write", pos: b * BS + 10, at: 0, len: 100 }));
            return inflight.schedule(ops, async () => {
              started[i] = clock++;
              await s.schedule(Promise.resolve(), `task ${i} on blocks ${blocks}`);
              finished[i] = clock++;
            });
          });
          await s.waitFor(Promise.all(tasks));
          await inflight.drain();
          for (let j = 0; j < blockSets.length; j++) {
            for (let i = 0; i < j; i++) {
              if (blockSets[i].some((b) => blockSets[j].includes(b))) {
                assert.ok(started[j] > finished[i], `task ${j} started before task ${i}, which shares a block, finished`);
              }
            }
          }
          assert.equal(inflight.size, 0);
        },
      ),
      { numRuns: runs(200) },
    );
  });

  type Op =
    | { kind: "write"; dev: 1 | 2; offset: number; length: number; seed: number }
    | { kind: "read"; dev: 1 | 2; offset: number; length: number }
    | { kind: "discard"; dev: 1 | 2; offset: number; length: number }
    | { kind: "resnapshot" }
    | { kind: "commit" };

  const SIZE = 4 * BS;
  const range = fc.tuple(fc.nat(SIZE - 1), fc.integer({ min: 1, max: BS + BS / 2 }))
    .map(([offset, length]) => ({ offset, length: Math.min(length, SIZE - offset) }));
  const dev = fc.constantFrom<1 | 2>(1, 2);
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.tuple(dev, range, fc.nat(255)).map(([d, r, seed]) => ({ kind: "write" as const, dev: d, ...r, seed })) },
    { weight: 3, arbitrary: fc.tuple(dev, range).map(([d, r]) => ({ kind: "read" as const, dev: d, ...r })) },
    { weight: 1, arbitrary: fc.tuple(dev, range).map(([d, r]) => ({ kind: "discard" as const, dev: d, ...r })) },
    { weight: 1, arbitrary: fc.constant({ kind: "resnapshot" as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: "commit" as const }) },
  );
  const fill = (length: number, seed: number) => Uint8Array.from({ length }, (_, i) => (seed + i * 13) & 0xff);

  it("operations issued without waiting read as if run one by one, whatever order the workers run their tasks in", async () => {
    const io = BlockIo.acquire();
    const run = io.run;
    const read = io.read;
    try {
      await withTmp(async (dir) => {
        const pool = await Pool.create(dir, { dataSize: 64 * BS });
        try {
          await fc.assert(
            fc.asyncProperty(fc.scheduler(), fc.array(op, { minLength: 1, maxLength: 25 }), async (s, ops) => {
              // Every worker task starts when the scheduler says so (the pool's own ordering aside).
              Object.assign(io, {
                run: (task: Parameters<typeof run>[0]) => s.schedule(Promise.resolve(), "task").then(() => run.call(io, task)),
                read: (task: Parameters<typeof read>[0]) => s.schedule(Promise.resolve(), "read").then(() => read.call(io, task)),
              });
              for (const id of [2, 1]) if (pool.devices().some((d) => d.id === id)) await pool.deleteDevice(id);
              await pool.createThin(1, SIZE);
              await pool.createSnapshot(2, 1);
              const model: Record<1 | 2, Uint8Array> = { 1: new Uint8Array(SIZE), 2: new Uint8Array(SIZE) };
              const devs = { 1: pool.device(1), 2: pool.device(2) };
              const done: Promise<void>[] = [];
              for (const o of ops) {
                // The pool runs operations in the order they are called: the model follows that order.
                switch (o.kind) {
                  case "write": {
                    const bytes = fill(o.length, o.seed);
                    // The caller may reuse its buffer once write resolves, tasks still queued.
                    done.push(devs[o.dev].write(o.offset, bytes).then(() => void bytes.fill(0xee)));
                    model[o.dev].set(fill(o.length, o.seed), o.offset);
                    break;
                  }
                  case "read": {
                    const want = model[o.dev].slice(o.offset, o.offset + o.length);
                    done.push(devs[o.dev].read(o.offset, o.length).then((got) => assert.deepEqual(got, want, `read ${JSON.stringify(o)}`)));
                    break;
                  }
                  case "discard":
                    done.push(devs[o.dev].discard(o.offset, o.length));
                    model[o.dev].fill(0, o.offset, o.offset + o.length);
                    break;
                  case "resnapshot":
                    done.push(pool.deleteDevice(2), pool.createSnapshot(2, 1));
                    model[2] = model[1].slice();
                    break;
                  case "commit":
                    done.push(pool.commit());
                    break;
                }
              }
              try {
                await s.waitFor(Promise.all(done));
              } finally {
                // Release whatever is still scheduled (read-ahead, or the rest after a failure).
                await s.waitAll();
                await Promise.allSettled(done);
                Object.assign(io, { run, read });
              }
              assert.deepEqual(await pool.device(1).read(0, SIZE), model[1]);
              assert.deepEqual(await pool.device(2).read(0, SIZE), model[2]);
            }).beforeEach(() => Object.assign(io, { run, read })),
            { numRuns: runs(60) },
          );
        } finally {
          Object.assign(io, { run, read });
          await pool.close();
        }
      });
    } finally {
      delete (io as { run?: unknown }).run;
      delete (io as { read?: unknown }).read;
      await BlockIo.release();
    }
  });
});
