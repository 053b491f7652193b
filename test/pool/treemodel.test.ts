// Model-based test of the pool's multi-level block maps (model.test.ts keeps every map in
// one leaf: devices of 4 blocks). Devices of thousands of blocks (and one of 2^21) written
// sparsely at far-apart blocks, snapshots of snapshots, discards, deletions, commits and
// reopenings, with the real 1,024-slot nodes (2 and 3 levels) and with 8-slot nodes (a
// test-only fanout: 4 and 5 levels from the same devices), so inner nodes are shared,
// copied on write, pruned and reference counted. After every step the maps must agree with
// the model: each device maps exactly the model's blocks, two mappings share a pool block
// exactly when the model says they share one, and the pool's used blocks are the model's
// distinct blocks; the bytes are compared at every commit and reopening and for every block
// a step touched. Each run ends with thin_check's check, a dump/restore round trip and the
// deletion of every device (no block and no map node left in use).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import fc from "fast-check";
import { Pool } from "../../src/pool/pool.ts";
import { checkPool } from "../../src/pool/check.ts";
import { dumpPool, restorePool } from "../../src/pool/dump.ts";
import { MapForest } from "../../src/pool/maptree.ts";
import { SpaceMap } from "../../src/pool/spacemap.ts";
import { hasCode } from "../../src/common/errors.ts";
import { runs, withTmp } from "../helpers/tmp.ts";
import { BS, Commit, CreateThin, Delete, type Moment, PoolModel, type Real, Reopen, Snapshot, touched, writeOrNoSpace } from "./model-commands.ts";

const POOL_BLOCKS = 48;
const ZERO = new Uint8Array(BS);

/** A device in the model: per mapped block, a token naming the pool block behind it, and its bytes. */
interface ModelDevice { blocks: number; tokens: Map<number, number>; bytes: Map<number, Uint8Array> }

class Model extends PoolModel<ModelDevice> {
  constructor(readonly fanout: number) {
    super();
  }
  distinct(): Map<number, [number, number]> {
    const out = new Map<number, [number, number]>(); // token -> one (device, vb) that maps it
    for (const [id, d] of this.devices) for (const [vb, t] of d.tokens) if (!out.has(t)) out.set(t, [id, vb]);
    return out;
  }
  fresh(blocks: number): ModelDevice {
    return { blocks, tokens: new Map(), bytes: new Map() };
  }
  copy(o: ModelDevice): ModelDevice {
    return { blocks: o.blocks, tokens: new Map(o.tokens), bytes: new Map(o.bytes) };
  }
  /** The maps after every step; the bytes too at commits and reopenings. */
  check(r: Real, moment: Moment): Promise<void> {
    return check(this, r, moment !== "step");
  }
}

/** Blocks where the trees branch: node edges at every level, the ends, the middle. */
function hotBlocks(blocks: number, fanout: number): number[] {
  const out = new Set([0, 1, blocks - 1, blocks - 2, Math.floor(blocks / 2)]);
  for (let span = fanout; span < blocks; span *= fanout) for (const d of [-1, 0, 1]) out.add(span + d);
  for (let span = fanout; 3 * span < blocks; span *= fanout) out.add(3 * span + 1);
  return [...out].filter((b) => b >= 0 && b < blocks).sort((a, b) => a - b);
}

/** A block of a device: one of its hot blocks, or any. */
type BlockPick = { hot: number } | { any: number };
const blockPick: fc.Arbitrary<BlockPick> = fc.oneof(
  { weight: 3, arbitrary: fc.nat().map((hot) => ({ hot })) },
  { weight: 1, arbitrary: fc.nat().map((any) => ({ any })) },
);
function blockOf(p: BlockPick, d: ModelDevice, fanout: number): number {
  if ("any" in p) return p.any % d.blocks;
  const hot = hotBlocks(d.blocks, fanout);
  return hot[p.hot % hot.length];
}

async function readBlock(r: Real, id: number, vb: number): Promise<Uint8Array> {
  return await r.pool.device(id).read(vb * BS, BS);
}

function same(got: Uint8Array, want: Uint8Array, what: string): void {
  if (Buffer.compare(Buffer.from(got), Buffer.from(want)) !== 0) {
    const at = got.findIndex((b, i) => b !== want[i]);
    assert.fail(`${what} differs from the model at byte ${at}: ${got[at]} != ${want[at]}`);
  }
}

/** The maps against the model; with `data`, every distinct block's bytes too. */
async function check(m: Model, r: Real, data: boolean): Promise<void> {
  assert.deepEqual(r.pool.devices().map((d) => d.id), m.ids());
  const blockOfToken = new Map<number, number>();
  const tokenOfBlock = new Map<number, number>();
  for (const id of m.ids()) {
    const d = m.devices.get(id)!;
    assert.equal(r.pool.usage(id).mapped, d.tokens.size, `device ${id} maps as many blocks as the model`);
    for (const [vb, t] of d.tokens) {
      const b = r.pool.lookup(id, vb);
      assert.ok(b !== undefined, `device ${id} block ${vb} is mapped`);
      if (blockOfToken.has(t)) assert.equal(b, blockOfToken.get(t), `device ${id} block ${vb} shares its pool block as the model says`);
      if (tokenOfBlock.has(b)) assert.equal(tokenOfBlock.get(b), t, `device ${id} block ${vb} shares pool block ${b} the model says it does not`);
      blockOfToken.set(t, b);
      tokenOfBlock.set(b, t);
    }
  }
  assert.equal(r.pool.status().dataBlocks.used, blockOfToken.size, "used blocks = distinct live blocks of the model");
  if (!data) return;
  for (const [, [id, vb]] of m.distinct()) same(await readBlock(r, id, vb), m.devices.get(id)!.bytes.get(vb) ?? ZERO, `device ${id} block ${vb}`);
  // And a block the model says is unmapped reads as zeros.
  for (const id of m.ids()) {
    const d = m.devices.get(id)!;
    const vb = hotBlocks(d.blocks, m.fanout).find((b) => !d.tokens.has(b));
    if (vb !== undefined) same(await readBlock(r, id, vb), ZERO, `unmapped block ${vb} of device ${id}`);
  }
}

class Write implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number, readonly block: BlockPick, readonly at: number, readonly len: number, readonly fill: number) {}
  check(m: Readonly<Model>) { return m.devices.size > 0; }
  async run(m: Model, r: Real) {
    const id = m.pick(this.k);
    const d = m.devices.get(id)!;
    const at = blockOf(this.block, d, m.fanout) * BS + this.at;
    const len = Math.min(this.len, d.blocks * BS - at);
    const bytes = Uint8Array.from({ length: len }, (_, i) => (this.fill + i) & 0xff);
    if (!(await writeOrNoSpace(r, id, at, bytes))) return await check(m, r, false);
    for (const b of touched(at, len)) {
      const block = (d.bytes.get(b) ?? ZERO).slice();
      const from = Math.max(at, b * BS);
      const to = Math.min(at + len, (b + 1) * BS);
      block.set(bytes.subarray(from - at, to - at), from - b * BS);
      d.bytes.set(b, block);
      d.tokens.set(b, m.token());
    }
    await check(m, r, false);
    for (const b of touched(at, len)) same(await readBlock(r, id, b), d.bytes.get(b)!, `device ${id} block ${b} after the write`);
  }
  toString() { return `write(#${this.k}, ${JSON.stringify(this.block)}, +${this.at}, ${this.len}, ${this.fill})`; }
}

class Discard implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number, readonly block: BlockPick, readonly at: number, readonly len: number) {}
  check(m: Readonly<Model>) { return m.devices.size > 0; }
  async run(m: Model, r: Real) {
    const id = m.pick(this.k);
    const d = m.devices.get(id)!;
    const at = blockOf(this.block, d, m.fanout) * BS + this.at;
    const len = Math.min(this.len, d.blocks * BS - at);
    try {
      await r.pool.device(id).discard(at, len);
    } catch (e) {
      // Zeroing the partial edge of a shared or committed block needs a new block.
      if (!hasCode(e, "ENOSPC")) throw e;
      return await check(m, r, false);
    }
    for (const b of touched(at, len)) {
      const whole = at <= b * BS && at + len >= (b + 1) * BS;
      if (whole) {
        d.tokens.delete(b);
        d.bytes.delete(b);
      } else if (d.tokens.has(b)) {
        const block = d.bytes.get(b)!.slice();
        block.fill(0, Math.max(at, b * BS) - b * BS, Math.min(at + len, (b + 1) * BS) - b * BS);
        d.bytes.set(b, block);
        d.tokens.set(b, m.token());
      }
    }
    await check(m, r, false);
    for (const b of touched(at, len)) same(await readBlock(r, id, b), d.bytes.get(b) ?? ZERO, `device ${id} block ${b} after the discard`);
  }
  toString() { return `discard(#${this.k}, ${JSON.stringify(this.block)}, +${this.at}, ${this.len})`; }
}

const id = fc.integer({ min: 0, max: 9 });
const blocks = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1500, max: 6000 }) }, { weight: 1, arbitrary: fc.constant(2 ** 21 + 3) });
const commands = [
  fc.tuple(id, blocks).map(([i, b]) => new CreateThin<Model>(i, b)),
  ...Array.from({ length: 3 }, () => fc.tuple(id, fc.nat()).map(([i, k]) => new Snapshot<Model>(i, k))),
  ...Array.from({ length: 5 }, () =>
    fc.tuple(fc.nat(), blockPick, fc.nat(BS - 1), fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 2 * BS })), fc.integer({ min: 1, max: 255 }))
      .map(([k, b, a, l, f]) => new Write(k, b, a, l, f))),
  ...Array.from({ length: 2 }, () =>
    fc.tuple(fc.nat(), blockPick, fc.nat(BS - 1), fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: BS, max: 5 * BS })))
      .map(([k, b, a, l]) => new Discard(k, b, a, l))),
  fc.nat().map((k) => new Delete<Model>(k)),
  fc.constant(new Commit<Model>()),
  fc.constant(new Reopen<Model>()),
];

/** The deepest map tree a dump names. */
const maxHeight = (dump: string) => Math.max(0, ...[...dump.matchAll(/<device [^>]*height="(\d+)"/g)].map((x) => Number(x[1])));

describe("pool model, multi-level trees", () => {
  for (const [levelBits, heights] of [[10, "2 and 3"], [3, "4 to 8"]] as const) {
    it(`matches the model with ${2 ** levelBits}-slot nodes (trees of ${heights} levels)`, async () => {
      let deepest = 0;
      await fc.assert(
        fc.asyncProperty(fc.commands(commands, { maxCommands: 50 }), async (cmds) => {
          await withTmp(async (dir) => {
            const options = { dataSize: POOL_BLOCKS * BS, ...(levelBits === 10 ? {} : { mapLevelBits: levelBits }) };
            const real: Real = { pool: await Pool.create(dir, options), dir };
            try {
              // Every run starts with two devices written at their hot blocks, so short runs share inner nodes.
              const model = new Model(2 ** levelBits);
              for (const [id, n] of [[100, 5000], [101, 3000]]) await new CreateThin<Model>(id, n).run(model, real);
              for (const hot of [0, 3, 5]) await new Write(0, { hot }, 100, 200, hot + 1).run(model, real);
              await new Snapshot<Model>(102, 0).run(model, real);
              await fc.asyncModelRun(() => ({ model, real }), cmds);
              await real.pool.commit();
              await check(model, real, true);
              assert.deepEqual((await checkPool(dir)).faults, []);
              const dump = await dumpPool(dir);
              deepest = Math.max(deepest, maxHeight(dump));
              const copy = path.join(dir, "restored");
              await fs.mkdir(copy);
              await restorePool(copy, dump);
              assert.equal(await dumpPool(copy), dump, "dump, restore, dump");
              // Deleting every device returns the pool to zero used blocks.
              for (const d of real.pool.devices()) await real.pool.deleteDevice(d.id);
              assert.equal(real.pool.status().dataBlocks.used, 0);
              await real.pool.commit();
              assert.deepEqual((await checkPool(dir)).faults, []);
              // No node outlives the devices: no segment stays live (a leaked node would keep its
              // segment). The previous root keeps the files of the commit before until the next one.
              await real.pool.commit();
              assert.deepEqual((await fs.readdir(path.join(dir, "metadata"))).sort(), ["pool.cbor", "pool.prev.cbor"]);
            } finally {
              await real.pool.close();
            }
          });
        }),
        { numRuns: runs(25) },
      );
      assert.ok(deepest >= (levelBits === 10 ? 2 : 4), `the runs built trees of ${deepest} levels`);
    });
  }

  it("slots of virtual blocks past 2^32 are exact (the slot arithmetic is 32-bit)", () => {
    for (const bits of [10, 3]) {
      const forest = new MapForest(new SpaceMap(16), 1, bits);
      const fanout = 2 ** bits;
      const m = { root: null, height: forest.heightFor(2 ** 45) };
      const vbs = [0, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + fanout + 1, 2 ** 44 + 12345, 2 ** 45 - 1];
      vbs.forEach((vb, i) => forest.set(m, vb, i));
      vbs.forEach((vb, i) => assert.equal(forest.lookup(m, vb), i, `block ${vb} with ${fanout}-slot nodes`));
      assert.deepEqual([...forest.entries(m)].map(([vb, b]) => [vb, b]), vbs.map((vb, i) => [vb, i]));
    }
  });
});
