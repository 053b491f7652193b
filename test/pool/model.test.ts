// Model-based test of the pool: random sequences of device operations, commits and
// reopenings against an in-memory model of every device's bytes and of which blocks
// are shared. After every step each device reads as the model says, and the pool's used
// blocks equal the model's count of distinct live blocks.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Pool } from "../../src/pool/pool.ts";
import { hasCode } from "../../src/common/errors.ts";
import { runs, withTmp } from "../helpers/tmp.ts";
import { BS, Commit, CreateThin, Delete, type Moment, PoolModel, type Real, Reopen, Snapshot, touched, writeOrNoSpace } from "./model-commands.ts";

const POOL_BLOCKS = 24;
const MAX_DEVICE_BLOCKS = 4;

/** A device in the model: its bytes, and a token per block naming the pool block behind it. */
interface ModelDevice { bytes: Uint8Array; tokens: (number | undefined)[] }

class Model extends PoolModel<ModelDevice> {
  used(): number {
    const live = new Set<number>();
    for (const d of this.devices.values()) for (const t of d.tokens) if (t !== undefined) live.add(t);
    return live.size;
  }
  fresh(blocks: number): ModelDevice {
    return { bytes: new Uint8Array(blocks * BS), tokens: new Array(blocks).fill(undefined) };
  }
  copy(o: ModelDevice): ModelDevice {
    return { bytes: o.bytes.slice(), tokens: o.tokens.slice() };
  }
  /** Every device's bytes, and the used blocks; after a commit nothing is left pending to free. */
  async check(r: Real, moment: Moment): Promise<void> {
    if (moment === "commit") assert.equal(r.pool.status().pendingFreeBlocks, 0);
    const ids = this.ids();
    assert.deepEqual(r.pool.devices().map((d) => d.id), ids);
    for (const id of ids) {
      const want = this.devices.get(id)!.bytes;
      const got = await r.pool.device(id).read(0, want.byteLength);
      if (Buffer.compare(Buffer.from(got), Buffer.from(want)) !== 0) {
        const at = got.findIndex((b, i) => b !== want[i]);
        assert.fail(`device ${id} differs from the model at byte ${at}: ${got[at]} != ${want[at]}`);
      }
    }
    assert.equal(r.pool.status().dataBlocks.used, this.used(), "used blocks = distinct live blocks of the model");
  }
}

/** Writes `len` bytes of `fill` at `at` of device `id` in both; false if the pool had no space (then nothing changed). */
async function write(m: Model, r: Real, id: number, at: number, len: number, fill: number): Promise<boolean> {
  const d = m.devices.get(id)!;
  const data = new Uint8Array(len).fill(fill);
  if (!(await writeOrNoSpace(r, id, at, data))) return false;
  d.bytes.set(data, at);
  for (const b of touched(at, len)) d.tokens[b] = m.token();
  return true;
}

class Write implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number, readonly at: number, readonly len: number, readonly fill: number) {}
  check(m: Readonly<Model>) { return m.devices.size > 0; }
  async run(m: Model, r: Real) {
    const id = m.pick(this.k);
    const d = m.devices.get(id)!;
    const at = this.at % d.bytes.byteLength;
    await write(m, r, id, at, Math.min(this.len, d.bytes.byteLength - at), this.fill);
    await m.check(r, "step");
  }
  toString() { return `write(#${this.k}, ${this.at}, ${this.len}, ${this.fill})`; }
}

/**
 * Reads a device front to back in chunks (so the pool reads ahead), with writes to it or
 * to another device between some of the reads: every chunk must read as the model says,
 * never as the device was when its bytes were fetched ahead.
 */
class StreamRead implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number, readonly chunk: number, readonly writes: { step: number; k: number; ahead: number; len: number; fill: number }[]) {}
  check(m: Readonly<Model>) { return m.devices.size > 0; }
  async run(m: Model, r: Real) {
    const id = m.pick(this.k);
    const size = m.devices.get(id)!.bytes.byteLength;
    for (let at = 0, step = 0; at < size; step++) {
      const len = Math.min(this.chunk, size - at);
      const got = await r.pool.device(id).read(at, len);
      const want = m.devices.get(id)!.bytes.subarray(at, at + len);
      if (Buffer.compare(Buffer.from(got), Buffer.from(want)) !== 0) {
        assert.fail(`device ${id} read [${at}, +${len}) differs from the model at byte ${at + got.findIndex((b, i) => b !== want[i])}`);
      }
      at += len;
      for (const w of this.writes.filter((x) => x.step === step)) {
        // Into the part not read yet (the part fetched ahead), or into another device.
        const target = m.pick(w.k);
        const tsize = m.devices.get(target)!.bytes.byteLength;
        const wat = target === id && at < size ? at + (w.ahead % (size - at)) : w.ahead % tsize;
        await write(m, r, target, wat, Math.min(w.len, tsize - wat), w.fill);
      }
    }
    await m.check(r, "step");
  }
  toString() { return `streamRead(#${this.k}, chunks of ${this.chunk}, writes ${JSON.stringify(this.writes)})`; }
}

class Discard implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number, readonly at: number, readonly len: number) {}
  check(m: Readonly<Model>) { return m.devices.size > 0; }
  async run(m: Model, r: Real) {
    const id = m.pick(this.k);
    const d = m.devices.get(id)!;
    const at = this.at % d.bytes.byteLength;
    const len = Math.min(this.len, d.bytes.byteLength - at);
    try {
      await r.pool.device(id).discard(at, len);
    } catch (e) {
      // Zeroing a partial block of a shared or committed block needs a new block.
      if (!hasCode(e, "ENOSPC")) throw e;
      return await m.check(r, "step");
    }
    d.bytes.fill(0, at, at + len);
    for (const b of touched(at, len)) {
      const whole = at <= b * BS && at + len >= (b + 1) * BS;
      if (whole) d.tokens[b] = undefined;
      else if (d.tokens[b] !== undefined) d.tokens[b] = m.token();
    }
    await m.check(r, "step");
  }
  toString() { return `discard(#${this.k}, ${this.at}, ${this.len})`; }
}

const id = fc.integer({ min: 0, max: 12 });
const offset = fc.integer({ min: 0, max: MAX_DEVICE_BLOCKS * BS - 1 });
const length = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 3 * BS }));
const commands = [
  fc.tuple(id, fc.integer({ min: 1, max: MAX_DEVICE_BLOCKS })).map(([i, b]) => new CreateThin<Model>(i, b)),
  fc.tuple(id, fc.nat()).map(([i, k]) => new Snapshot<Model>(i, k)),
  fc.tuple(id, fc.nat()).map(([i, k]) => new Snapshot<Model>(i, k)),
  ...Array.from({ length: 4 }, () =>
    fc.tuple(fc.nat(), offset, length, fc.integer({ min: 1, max: 255 })).map(([k, a, l, f]) => new Write(k, a, l, f))),
  fc.tuple(fc.nat(), offset, length).map(([k, a, l]) => new Discard(k, a, l)),
  fc.tuple(
    fc.nat(),
    fc.constantFrom(4096, BS, 100_000, 256 * 1024),
    fc.array(fc.record({
      step: fc.integer({ min: 0, max: 8 }), k: fc.nat(), ahead: fc.nat(), len: fc.integer({ min: 1, max: 2 * BS }), fill: fc.integer({ min: 1, max: 255 }),
    }), { maxLength: 3 }),
  ).map(([k, c, w]) => new StreamRead(k, c, w)),
  fc.nat().map((k) => new Delete<Model>(k)),
  fc.constant(new Commit<Model>()),
  fc.constant(new Reopen<Model>()),
];

describe("pool model", () => {
  it("matches the model for random device operations, commits and reopenings", async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 60 }), async (cmds) => {
        await withTmp(async (dir) => {
          const real: Real = { pool: await Pool.create(dir, { dataSize: POOL_BLOCKS * BS }), dir };
          try {
            // Every run starts with two devices, so short sequences still exercise sharing.
            const model = new Model();
            for (const [id, blocks] of [[100, MAX_DEVICE_BLOCKS], [101, 2]]) {
              await real.pool.createThin(id, blocks * BS);
              model.devices.set(id, model.fresh(blocks));
            }
            await fc.asyncModelRun(() => ({ model, real }), cmds);
            // Deleting every device returns the pool to zero used blocks.
            for (const d of real.pool.devices()) await real.pool.deleteDevice(d.id);
            assert.equal(real.pool.status().dataBlocks.used, 0);
          } finally {
            await real.pool.close();
          }
        });
      }),
      { numRuns: runs(100) },
    );
  });
});
