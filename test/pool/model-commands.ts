/**
 * What the pool's model-based tests share (model.test.ts, treemodel.test.ts,
 * delta.test.ts): the real side (a pool and its directory), a model of devices by id with
 * a token per pool block (a new token for every block written, tokens copied by
 * snapshots), and the commands whose effect on the model is the same in every test:
 * createThin, createSnapshot, delete, commit and close+open. Each test keeps its own
 * device model (`fresh`, `copy`), its own `check` of the pool against it, and its own
 * writes and discards.
 *
 * @module
 */
import assert from "node:assert/strict";
import type fc from "fast-check";
import { hasCode } from "../../src/common/errors.ts";
import { Pool } from "../../src/pool/pool.ts";

/** The pool's block size in these tests. */
export const BS = 64 * 1024;

/** The pool under test and its directory (a reopening replaces `pool`). */
export interface Real { pool: Pool; dir: string }

/** When a check runs: after a device operation, after a commit, after a reopening. */
export type Moment = "step" | "commit" | "reopen";

/** A model of the pool's devices: `D` per device id, and the tokens that name pool blocks. */
export abstract class PoolModel<D> {
  devices = new Map<number, D>();
  #next = 1;
  /** A token for a pool block never seen before. */
  token(): number {
    return this.#next++;
  }
  /** The device ids, in order. */
  ids(): number[] {
    return [...this.devices.keys()].sort((a, b) => a - b);
  }
  /** The `k`th device (modulo their number): commands name devices by position, so they stay valid. */
  pick(k: number): number {
    const ids = this.ids();
    return ids[k % ids.length];
  }
  /** A new device of `blocks` blocks, nothing mapped. */
  abstract fresh(blocks: number): D;
  /** A snapshot of `origin`: the same tokens and bytes, its own copy of them. */
  abstract copy(origin: D): D;
  /** Asserts the pool agrees with the model at `moment`. */
  abstract check(r: Real, moment: Moment): Promise<void>;
}

/** Any device model (the commands only move devices as a whole). */
type AnyModel = PoolModel<unknown>;

/** The blocks a byte range touches. */
export function* touched(at: number, len: number): Generator<number> {
  if (len > 0) for (let b = Math.floor(at / BS); b <= Math.floor((at + len - 1) / BS); b++) yield b;
}

/**
 * Writes `bytes` at `at` of device `id`; false if the pool refused it with ENOSPC, which it
 * may only do when fewer blocks were free than the write touches (and then nothing changed).
 */
export async function writeOrNoSpace(r: Real, id: number, at: number, bytes: Uint8Array): Promise<boolean> {
  const { total, used } = r.pool.status().dataBlocks;
  try {
    await r.pool.device(id).write(at, bytes);
    return true;
  } catch (e) {
    if (!hasCode(e, "ENOSPC")) throw e;
    const n = [...touched(at, bytes.byteLength)].length;
    assert.ok(total - used < n, `ENOSPC with ${total - used} free blocks for a write over ${n}`);
    return false;
  }
}

/** createThin(id, blocks): a new device, nothing mapped. */
export class CreateThin<M extends AnyModel> implements fc.AsyncCommand<M, Real> {
  constructor(readonly id: number, readonly blocks: number) {}
  check(m: Readonly<M>) {
    return !m.devices.has(this.id);
  }
  async run(m: M, r: Real) {
    await r.pool.createThin(this.id, this.blocks * BS);
    m.devices.set(this.id, m.fresh(this.blocks));
    await m.check(r, "step");
  }
  toString() {
    return `createThin(${this.id}, ${this.blocks} blocks)`;
  }
}

/** createSnapshot(id, the kth device): shares every block of its origin. */
export class Snapshot<M extends AnyModel> implements fc.AsyncCommand<M, Real> {
  constructor(readonly id: number, readonly k: number) {}
  check(m: Readonly<M>) {
    return m.devices.size > 0 && !m.devices.has(this.id);
  }
  async run(m: M, r: Real) {
    const origin = m.pick(this.k);
    await r.pool.createSnapshot(this.id, origin);
    m.devices.set(this.id, m.copy(m.devices.get(origin)));
    await m.check(r, "step");
  }
  toString() {
    return `createSnapshot(${this.id}, #${this.k})`;
  }
}

/** deleteDevice(the kth device): its blocks no other device shares go back to the pool. */
export class Delete<M extends AnyModel> implements fc.AsyncCommand<M, Real> {
  constructor(readonly k: number) {}
  check(m: Readonly<M>) {
    return m.devices.size > 0;
  }
  async run(m: M, r: Real) {
    const id = m.pick(this.k);
    await r.pool.deleteDevice(id);
    m.devices.delete(id);
    await m.check(r, "step");
  }
  toString() {
    return `delete(#${this.k})`;
  }
}

/** commit(): changes nothing the model sees. */
export class Commit<M extends AnyModel> implements fc.AsyncCommand<M, Real> {
  check() {
    return true;
  }
  async run(m: M, r: Real) {
    await r.pool.commit();
    await m.check(r, "commit");
  }
  toString() {
    return "commit()";
  }
}

/** close() then open(): the maps are rebuilt from what was committed (close commits), shared nodes shared again. */
export class Reopen<M extends AnyModel> implements fc.AsyncCommand<M, Real> {
  check() {
    return true;
  }
  async run(m: M, r: Real) {
    await r.pool.close();
    r.pool = await Pool.open(r.dir);
    await m.check(r, "reopen");
  }
  toString() {
    return "close()+open()";
  }
}
