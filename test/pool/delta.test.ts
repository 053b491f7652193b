/**
 * thin_delta (Pool.delta): random writes, snapshots, discards, deletions, commits and
 * reopenings on a model of block ownership — which block token each virtual block of
 * each device maps, a new token for every write, tokens copied by snapshots — and after
 * every step the delta of every pair of devices equals the model's answer.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Pool } from "../../src/pool/pool.ts";
import type { DeltaKind, DeltaRange } from "../../src/pool/delta.ts";
import { runs, withTmp } from "../helpers/tmp.ts";
import { BS, Commit, CreateThin, Delete, PoolModel, type Real, Reopen, Snapshot, writeOrNoSpace } from "./model-commands.ts";

const POOL_BLOCKS = 512;
/** A one-level device and a two-level one (more than 1,024 blocks). */
const SIZES = [8, 2100];

/** Device id → token per virtual block (undefined: unmapped). */
type Tokens = (number | undefined)[];

class Model extends PoolModel<Tokens> {
  fresh(blocks: number): Tokens {
    return new Array(blocks).fill(undefined);
  }
  copy(o: Tokens): Tokens {
    return o.slice();
  }
  /** The delta of every pair of devices, both ways, with and without the same ranges. */
  async check(r: Real): Promise<void> {
    const ids = this.ids();
    for (const a of ids) {
      for (const b of ids) {
        for (const same of [false, true]) {
          assert.deepEqual(await r.pool.delta(a, b, { same }), modelDelta(this.devices.get(a)!, this.devices.get(b)!, same), `delta(${a}, ${b}${same ? ", same" : ""})`);
        }
      }
    }
  }
}

/** The model's delta: thin_delta's ranges from the tokens. */
function modelDelta(a: Tokens, b: Tokens, same: boolean): DeltaRange[] {
  const out: DeltaRange[] = [];
  for (let vb = 0; vb < Math.max(a.length, b.length); vb++) {
    const x = a[vb];
    const y = b[vb];
    let kind: DeltaKind | undefined;
    if (x !== undefined && y !== undefined) kind = x === y ? (same ? "same" : undefined) : "different";
    else if (x !== undefined) kind = "left_only";
    else if (y !== undefined) kind = "right_only";
    if (!kind) continue;
    const last = out[out.length - 1];
    if (last && last.kind === kind && last.begin + last.length === vb) last.length++;
    else out.push({ kind, begin: vb, length: 1 });
  }
  return out;
}

/** A write of `blocks` blocks from `vb` (whole, or a few bytes into each: a copy-on-write copies the rest). */
class Write implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number, readonly vb: number, readonly blocks: number, readonly partial: boolean) {}
  check(m: Readonly<Model>) { return m.devices.size > 0; }
  async run(m: Model, r: Real) {
    const id = m.pick(this.k);
    const tokens = m.devices.get(id)!;
    const vb = this.vb % tokens.length;
    const n = Math.min(this.blocks, tokens.length - vb);
    const at = vb * BS + (this.partial ? 100 : 0);
    const len = this.partial ? (n - 1) * BS + 10 : n * BS;
    // Refused for want of space: nothing changed.
    if (await writeOrNoSpace(r, id, at, new Uint8Array(len).fill(vb & 0xff))) {
      for (let b = vb; b < vb + n; b++) tokens[b] = m.token();
    }
    await m.check(r);
  }
  toString() { return `write(#${this.k}, vb ${this.vb}, ${this.blocks} blocks${this.partial ? ", partial" : ""})`; }
}

/** A discard of whole blocks: they are unmapped. */
class Discard implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number, readonly vb: number, readonly blocks: number) {}
  check(m: Readonly<Model>) { return m.devices.size > 0; }
  async run(m: Model, r: Real) {
    const id = m.pick(this.k);
    const tokens = m.devices.get(id)!;
    const vb = this.vb % tokens.length;
    const n = Math.min(this.blocks, tokens.length - vb);
    await r.pool.device(id).discard(vb * BS, n * BS);
    for (let b = vb; b < vb + n; b++) tokens[b] = undefined;
    await m.check(r);
  }
  toString() { return `discard(#${this.k}, vb ${this.vb}, ${this.blocks} blocks)`; }
}

const id = fc.integer({ min: 0, max: 6 });
// Blocks near the leaf boundaries of a two-level device, and the first few of any.
const vblock = fc.oneof(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1020, max: 1030 }), fc.integer({ min: 2040, max: 2099 }));
const commands = [
  fc.tuple(id, fc.constantFrom(...SIZES)).map(([i, s]) => new CreateThin<Model>(i, s)),
  fc.tuple(id, fc.nat()).map(([i, k]) => new Snapshot<Model>(i, k)),
  fc.tuple(id, fc.nat()).map(([i, k]) => new Snapshot<Model>(i, k)),
  ...Array.from({ length: 4 }, () => fc.tuple(fc.nat(), vblock, fc.integer({ min: 1, max: 3 }), fc.boolean()).map(([k, v, n, p]) => new Write(k, v, n, p))),
  fc.tuple(fc.nat(), vblock, fc.integer({ min: 1, max: 4 })).map(([k, v, n]) => new Discard(k, v, n)),
  fc.nat().map((k) => new Delete<Model>(k)),
  fc.constant(new Commit<Model>()),
  fc.constant(new Reopen<Model>()),
];

describe("delta", () => {
  it("matches the model of block ownership for random writes, snapshots, discards, deletions, commits and reopenings", async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 40 }), async (cmds) => {
        await withTmp(async (dir) => {
          const real: Real = { pool: await Pool.create(dir, { dataSize: POOL_BLOCKS * BS, settings: { minFreeSpacePercent: 0 } }), dir };
          try {
            await fc.asyncModelRun(() => ({ model: new Model(), real }), cmds);
          } finally {
            await real.pool.close();
          }
        });
      }),
      { numRuns: runs(25) },
    );
  });

  it("reports a snapshot's one changed block among a large shared origin, and same ranges when asked", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 64 * 1024 * 1024 });
      try {
        await pool.createThin(1, 4096 * BS);
        await pool.device(1).write(0, new Uint8Array(300 * BS).fill(1));
        await pool.device(1).write(2000 * BS, new Uint8Array(10 * BS).fill(2));
        await pool.createSnapshot(2, 1);
        assert.deepEqual(await pool.delta(1, 2), [], "a snapshot is its origin");
        await pool.device(2).write(150 * BS + 7, new Uint8Array(3).fill(9));
        await pool.device(2).write(3000 * BS, new Uint8Array(BS).fill(9));
        await pool.device(1).discard(2005 * BS, 5 * BS);
        assert.deepEqual(await pool.delta(1, 2), [
          { kind: "different", begin: 150, length: 1 },
          { kind: "right_only", begin: 2005, length: 5 },
          { kind: "right_only", begin: 3000, length: 1 },
        ]);
        assert.deepEqual(await pool.delta(2, 1), [
          { kind: "different", begin: 150, length: 1 },
          { kind: "left_only", begin: 2005, length: 5 },
          { kind: "left_only", begin: 3000, length: 1 },
        ]);
        assert.deepEqual(await pool.delta(1, 2, { same: true }), [
          { kind: "same", begin: 0, length: 150 },
          { kind: "different", begin: 150, length: 1 },
          { kind: "same", begin: 151, length: 149 },
          { kind: "same", begin: 2000, length: 5 },
          { kind: "right_only", begin: 2005, length: 5 },
          { kind: "right_only", begin: 3000, length: 1 },
        ]);
        // Devices of different heights: the small one maps the start of the large one's space.
        await pool.createThin(3, 4 * BS);
        await pool.device(3).write(0, new Uint8Array(2 * BS).fill(1));
        assert.deepEqual(await pool.delta(3, 1), [{ kind: "different", begin: 0, length: 2 }, { kind: "right_only", begin: 2, length: 298 }, { kind: "right_only", begin: 2000, length: 5 }]);
        await assert.rejects(pool.delta(1, 77), { code: "ENOENT", message: /device 77/ });
      } finally {
        await pool.close();
      }
    });
  });
});
