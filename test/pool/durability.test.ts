/**
 * Durability under power loss: a seeded workload on a pool (create, writes, discards,
 * snapshots, deletions, resizes, trims, commits) runs with its file operations recorded;
 * then, at many cut points, the pool's directory is rebuilt from only what a disk must
 * have kept (test/helpers/crashfs.ts: strict POSIX, and torn states keeping a random part
 * of the rest), and must open at a commit at least as new as the last one that returned,
 * holding exactly that commit's bytes and block count, with a clean check.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { Pool } from "../../src/pool/pool.ts";
import { checkPool } from "../../src/pool/check.ts";
import { startRecording } from "../../src/pool/fileops.ts";
import { chooseCuts, Recording, seeded, snapshot } from "../helpers/crashfs.ts";
import { runs, tmpDir } from "../helpers/tmp.ts";

const BS = 64 * 1024;
const SIZE = 16 * BS;

interface Expected { digest: string; used: number; devices: number[] }

interface ModelDevice { bytes: Uint8Array; tokens: (number | undefined)[] }

function expectedOf(devices: Map<number, ModelDevice>): Expected {
  const h = createHash("sha256");
  const ids = [...devices.keys()].sort((a, b) => a - b);
  for (const id of ids) h.update(`${id}:`).update(devices.get(id)!.bytes);
  const live = new Set<number>();
  for (const d of devices.values()) for (const t of d.tokens) if (t !== undefined) live.add(t);
  return { digest: h.digest("hex"), used: live.size, devices: ids };
}

/** Runs the workload of `seed` on a pool in `root/pool`, recorded into `logDir`; returns what each transaction holds. */
async function workload(root: string, logDir: string, seed: number, steps: number): Promise<Map<number, Expected>> {
  const rand = seeded(seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const dir = path.join(root, "pool");
  const rec = startRecording(root, logDir);
  const expected = new Map<number, Expected>();
  const devices = new Map<number, ModelDevice>();
  let token = 1;
  let pool: Pool | undefined;
  try {
    expected.set(0, expectedOf(devices));
    rec.mark("committing", 0);
    // Room for 4 devices of 16 blocks and as many pending frees: no write runs short and
    // commits by itself (a commit the model would not know of).
    pool = await Pool.create(dir, { dataSize: 160 * BS });
    rec.mark("committed", 0);
    let dirty = false; // a change since the last commit: close commits only then
    const commit = async (how: "commit" | "close") => {
      if (how === "close" && !dirty) return await pool!.close();
      dirty = false;
      const tx = pool!.status().transactionId + 1;
      expected.set(tx, expectedOf(devices));
      rec.mark("committing", tx);
      if (how === "close") await pool!.close();
      else await pool!.commit();
      rec.mark("committed", tx);
    };
    for (let step = 0; step < steps; step++) {
      const ids = [...devices.keys()];
      const op = pick(20);
      dirty = true; // unless this step is a commit, which clears it
      if (ids.length === 0 || (op < 2 && ids.length < 4)) {
        const id = ids.length ? Math.max(...ids) + 1 : 1;
        await pool.createThin(id, SIZE);
        devices.set(id, { bytes: new Uint8Array(SIZE), tokens: new Array(SIZE / BS).fill(undefined) });
        continue;
      }
      const id = ids[pick(ids.length)];
      const d = devices.get(id)!;
      if (op < 12) {
        const at = pick(SIZE);
        const len = Math.min(SIZE - at, 1 + pick(2 * BS));
        const data = new Uint8Array(len).fill(1 + pick(255));
        await pool.device(id).write(at, data);
        d.bytes.set(data, at);
        for (let b = Math.floor(at / BS); b <= Math.floor((at + len - 1) / BS); b++) d.tokens[b] = token++;
      } else if (op < 14) {
        const b = pick(SIZE / BS);
        await pool.device(id).discard(b * BS, BS);
        d.bytes.fill(0, b * BS, (b + 1) * BS);
        d.tokens[b] = undefined;
      } else if (op < 15 && ids.length < 4) {
        const nid = Math.max(...ids) + 1;
        await pool.createSnapshot(nid, id);
        devices.set(nid, { bytes: d.bytes.slice(), tokens: d.tokens.slice() });
      } else if (op < 16 && ids.length > 1) {
        await pool.deleteDevice(id);
        devices.delete(id);
      } else if (op < 17) {
        // Grow the data file: the next commit records it (a shrink commits first, itself).
        await pool.resize((pool.status().dataBlocks.total + 8) * BS);
      } else if (op < 18) {
        await commit("commit");
        await pool.trim(); // holes in blocks no commit references
      } else {
        await commit("commit");
      }
    }
    await commit("close");
    pool = undefined;
  } finally {
    rec.stop();
    await pool?.close().catch(() => {});
  }
  return expected;
}

/** Opens the replayed pool and checks it against the model; returns the transaction it opened at. */
async function verify(dir: string, expected: Map<number, Expected>, atLeast: number, atMost: number, what: string): Promise<number> {
  let pool: Pool;
  try {
    pool = await Pool.open(dir);
  } catch (e) {
    if (atLeast < 0) return -1; // Pool.create had not returned: no pool is fine
    throw new Error(`${what}: the pool does not open (commit ${atLeast} had returned): ${(e as Error).message}`);
  }
  try {
    const tx = pool.status().transactionId;
    assert.ok(tx >= atLeast && tx <= atMost, `${what}: opened at transaction ${tx}; commit ${atLeast} had returned, ${atMost} had started`);
    const want = expected.get(tx)!;
    const ids = pool.devices().map((d) => d.id);
    assert.deepEqual(ids, want.devices, `${what}: devices at transaction ${tx}`);
    const h = createHash("sha256");
    for (const id of ids) h.update(`${id}:`).update(await pool.device(id).read(0, SIZE));
    assert.equal(h.digest("hex"), want.digest, `${what}: bytes at transaction ${tx}`);
    assert.equal(pool.status().dataBlocks.used, want.used, `${what}: used blocks at transaction ${tx}`);
    return tx;
  } finally {
    await pool.close();
    const report = await checkPool(dir);
    assert.deepEqual(report.faults, [], `${what}: check after reopening`);
  }
}

describe("durability under power loss (recorded file operations, replayed at cut points)", () => {
  it("every cut opens at a commit at least as new as the last that returned, with its bytes", async () => {
    // Cut points: tens in npm test, FUZZ_RUNS / 4 (hundreds) in npm run fuzz.
    const total = Math.max(40, Math.ceil(runs(40) / 4));
    const perWorkload = 150;
    let replays = 0;
    let torn = 0;
    for (let w = 0; w * perWorkload < total; w++) {
      const seed = 1 + Math.floor(Math.random() * 2 ** 31);
      const root = await tmpDir("thinstack-dur-");
      const logDir = await tmpDir("thinstack-log-");
      const work = await tmpDir("thinstack-replay-");
      try {
        const initial = await snapshot(root);
        const expected = await workload(root, logDir, seed, 80);
        const rec = Recording.read(initial, logDir);
        const rand = seeded(seed ^ 0x5bd1e995);
        const cuts = chooseCuts(rec, Math.min(perWorkload, total - w * perWorkload), rand);
        for (const cut of cuts) {
          const returned = rec.marksBefore(cut, "committed");
          const started = rec.marksBefore(cut, "committing");
          const atLeast = returned.length ? Math.max(...returned) : -1;
          const atMost = started.length ? Math.max(...started) : -1;
          for (const mode of ["strict", "torn"] as const) {
            const out = path.join(work, `${cut}-${mode}`);
            await fs.mkdir(out);
            const kept = await rec.materialize(cut, out, mode === "strict" ? undefined : () => {
              const r = rand();
              return r < 0.4 ? "all" : r < 0.55 ? "part" : "none";
            }, rand);
            if (kept) torn++;
            await verify(path.join(out, "pool"), expected, atLeast, atMost, `seed ${seed}, cut ${cut} of ${rec.last} (${mode})`);
            await fs.rm(out, { recursive: true, force: true });
            replays++;
          }
        }
      } finally {
        for (const d of [root, logDir, work]) await fs.rm(d, { recursive: true, force: true });
      }
    }
    assert.ok(replays >= 2 * Math.min(total, 40), `replayed ${replays} states`);
    assert.ok(torn > 0, "some replays kept operations that were not durable");
  });
});
