/**
 * Low water marks (dm-thin's low_water_mark): events when free data or metadata space
 * crosses its mark, both ways, delivered to listeners and logged in the pool directory.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { Pool } from "../../src/pool/pool.ts";
import { EVENT_LOG, type LoggedEvent, PoolEvents, readEventLog } from "../../src/pool/events.ts";
import type { LowWaterEvent } from "../../src/pool/types.ts";
import { withTmp } from "../helpers/tmp.ts";

const BS = 64 * 1024;
const MiB = 1024 * 1024;
const block = new Uint8Array(BS).fill(7);

async function logged(dir: string): Promise<LoggedEvent[]> {
  const out: LoggedEvent[] = [];
  for await (const e of readEventLog(dir)) out.push(e);
  return out;
}

/** The crossing of each event, as "data below" and the like. */
const crossings = (events: LowWaterEvent[]) => events.map((e) => `${e.space} ${e.crossed}`);

describe("low water marks", () => {
  it("data: one event going under the mark, one coming back over it, and again after re-arming", async () => {
    await withTmp(async (dir) => {
      // 16 blocks, the mark at 25% free: under it from 13 blocks used (3 free).
      const pool = await Pool.create(dir, { dataSize: MiB, settings: { lowWaterMarkPercent: 25, metadataLowWaterMarkPercent: 0, minFreeSpacePercent: 0 } });
      const events: LowWaterEvent[] = [];
      pool.on("lowWater", (e) => events.push(e));
      try {
        await pool.createThin(1, 2 * MiB);
        for (let b = 0; b < 12; b++) await pool.device(1).write(b * BS, block);
        assert.equal(events.length, 0, "4 of 16 free is not under 25%");
        await pool.device(1).write(12 * BS, block);
        assert.deepEqual(events, [{ space: "data", crossed: "below", markPercent: 25, freePercent: 18.75, free: 3, used: 13, total: 16, unit: "blocks" }]);
        await pool.device(1).write(13 * BS, block);
        await pool.commit();
        assert.equal(events.length, 1, "no second warning while still under the mark");
        await pool.device(1).discard(8 * BS, 6 * BS); // 8 used, 8 free
        assert.deepEqual(crossings(events), ["data below", "data above"]);
        assert.deepEqual(events[1], { space: "data", crossed: "above", markPercent: 25, freePercent: 50, free: 8, used: 8, total: 16, unit: "blocks" });
        for (let b = 8; b < 13; b++) await pool.device(1).write(b * BS, block);
        assert.deepEqual(crossings(events), ["data below", "data above", "data below"], "re-armed: it warns again");
        // The mark itself moving across the free space counts as a crossing.
        await pool.configure({ lowWaterMarkPercent: 10 });
        assert.deepEqual(crossings(events), ["data below", "data above", "data below", "data above"]);
        await pool.configure({ lowWaterMarkPercent: 40 });
        assert.equal(events.length, 5);
      } finally {
        await pool.close();
      }
      // Every event is in the log, in order, with its time and process.
      const log = await logged(dir);
      assert.deepEqual(log.map((e) => e.type === "lowWater" ? `${e.space} ${e.crossed}` : e.type), [...crossings(events)]);
      for (const e of log) {
        assert.equal(e.pid, process.pid);
        assert.ok(!Number.isNaN(Date.parse(e.time)), e.time);
      }
      // The settings are stored with the pool.
      const again = await Pool.open(dir);
      assert.equal(again.status().settings.lowWaterMarkPercent, 40);
      assert.equal(again.status().settings.metadataLowWaterMarkPercent, 0);
      await again.close();
    });
  });

  it("the state is stored with the pool: still under the mark after a reopen, no second warning; back over it, one event", async () => {
    await withTmp(async (dir) => {
      const settings = { lowWaterMarkPercent: 25, metadataLowWaterMarkPercent: 0, minFreeSpacePercent: 0 };
      const pool = await Pool.create(dir, { dataSize: MiB, settings });
      await pool.createThin(1, 2 * MiB);
      await pool.device(1).write(0, new Uint8Array(13 * BS));
      await pool.close();
      const again = await Pool.open(dir);
      const events: LowWaterEvent[] = [];
      again.on("lowWater", (e) => events.push(e));
      try {
        await again.device(1).write(13 * BS, block);
        await again.commit();
        assert.equal(events.length, 0, "the pool was under the mark already");
        await again.device(1).discard(0, 10 * BS);
        assert.deepEqual(crossings(events), ["data above"]);
      } finally {
        await again.close();
      }
      assert.deepEqual((await logged(dir)).map((e) => e.type === "lowWater" && e.crossed), ["below", "above"], "the log: one warning, one all-clear");
    });
  });

  it("metadata: the mark is crossed at the commits that grow and shrink the metadata", async () => {
    // The same work on a pool with room to spare gives the metadata sizes before and after.
    const work = async (pool: Pool) => {
      for (let id = 1; id <= 40; id++) {
        await pool.createThin(id, 4096 * MiB);
        await pool.device(id).write(id * 1024 * BS, block.subarray(0, 512)); // a leaf node of its own
      }
      await pool.commit();
    };
    const sizes = await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 8 * MiB });
      const before = pool.status().metadataBytes.used;
      await work(pool);
      const after = pool.status().metadataBytes.used;
      await pool.close();
      return { before, after };
    });
    assert.ok(sizes.after > sizes.before * 2, JSON.stringify(sizes));
    await withTmp(async (dir) => {
      // Half of this is between the two: over half free before, under half after.
      const metadataSize = sizes.before + sizes.after;
      const pool = await Pool.create(dir, { dataSize: 8 * MiB, metadataSize, settings: { metadataLowWaterMarkPercent: 50, lowWaterMarkPercent: 0 } });
      const events: LowWaterEvent[] = [];
      pool.on("lowWater", (e) => events.push(e));
      try {
        await pool.createThin(999, MiB);
        assert.equal(events.length, 0);
        await work(pool);
        assert.deepEqual(crossings(events), ["metadata below"]);
        assert.equal(events[0].unit, "bytes");
        assert.equal(events[0].total, metadataSize);
        assert.equal(events[0].used, pool.status().metadataBytes.used);
        for (let id = 1; id <= 40; id++) await pool.deleteDevice(id);
        assert.deepEqual(crossings(events), ["metadata below"], "metadata shrinks only when a commit writes the smaller state");
        await pool.commit();
        assert.deepEqual(crossings(events), ["metadata below", "metadata above"]);
      } finally {
        await pool.close();
      }
    });
  });

  it("fires whether or not autoextend is on: under the mark, the pool grows, back over it", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, {
        dataSize: MiB, settings: { lowWaterMarkPercent: 25, metadataLowWaterMarkPercent: 0, minFreeSpacePercent: 0, autoextendThreshold: 80, autoextendPercent: 50 },
      });
      const seen: string[] = [];
      pool.on("lowWater", (e) => seen.push(`${e.space} ${e.crossed}`));
      pool.on("autoextend", (e) => seen.push(`autoextend ${e.fromBlocks}->${e.toBlocks}`));
      let legacy = 0;
      pool.onAutoextend = () => legacy++;
      try {
        await pool.createThin(1, 2 * MiB);
        for (let b = 0; b < 13; b++) await pool.device(1).write(b * BS, block);
        assert.deepEqual(seen, ["data below", "autoextend 16->24", "data above"]);
        assert.equal(legacy, 1, "onAutoextend still hears it");
      } finally {
        await pool.close();
      }
      assert.deepEqual((await logged(dir)).map((e) => e.type), ["lowWater", "autoextend", "lowWater"]);
    });
  });

  it("a listener that throws stops neither the pool nor the other listeners; on() returns its own removal", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: MiB, settings: { lowWaterMarkPercent: 90, minFreeSpacePercent: 0 } });
      let heard = 0;
      let removed = 0;
      pool.on("lowWater", () => { throw new Error("listener bug"); });
      pool.on("lowWater", () => heard++);
      const stop = pool.on("lowWater", () => removed++);
      stop();
      try {
        await pool.createThin(1, MiB);
        await pool.device(1).write(0, new Uint8Array(4 * BS));
        assert.equal(heard, 1);
        assert.equal(removed, 0);
      } finally {
        await pool.close();
      }
    });
  });

  it("refuses marks outside 0..100", async () => {
    await withTmp(async (dir) => {
      await assert.rejects(Pool.create(dir, { dataSize: MiB, settings: { lowWaterMarkPercent: 101 } }), { code: "EINVAL", message: /low water mark '101' must be a percentage from 0 to 100/ });
      const pool = await Pool.create(dir, { dataSize: MiB });
      try {
        assert.equal(pool.status().settings.lowWaterMarkPercent, 20, "the default");
        await assert.rejects(pool.configure({ metadataLowWaterMarkPercent: -1 }), { code: "EINVAL", message: /metadata low water mark/ });
      } finally {
        await pool.close();
      }
    });
  });
});

describe("the event log", () => {
  it("rotates at its limit, keeping the newest lines, and a reader follows it across the rotation", async () => {
    await withTmp(async (dir) => {
      const events = new PoolEvents(dir, 2000);
      const ac = new AbortController();
      const seen: number[] = [];
      const reader = (async () => {
        for await (const e of readEventLog(dir, { follow: true, signal: ac.signal, pollMs: 20 })) {
          if (e.type === "autoextend") seen.push(e.fromBlocks);
          if (seen.length === 100) ac.abort();
        }
      })();
      for (let i = 0; i < 100; i++) {
        events.emit("autoextend", { fromBlocks: i, toBlocks: i + 1, usedBlocks: i });
        if (i % 10 === 9) {
          // Ten lines (under one rotation's worth), then wait for the reader to see them:
          // a rotation happens while it follows, never two between its looks.
          await events.flush();
          // (A loaded machine can delay the reader for seconds: wait for it, not for a fixed time.)
          for (let t = 0; seen.length < i + 1 && t < 6000; t++) await new Promise((r) => setTimeout(r, 20));
          assert.equal(seen.length, i + 1, "the reader keeps up between rotations");
        }
      }
      await events.flush();
      const timeout = setTimeout(() => ac.abort(), 10_000);
      await reader;
      clearTimeout(timeout);
      assert.deepEqual(seen, Array.from({ length: 100 }, (_, i) => i), "every line once, in order");
      const current = (await fs.stat(path.join(dir, EVENT_LOG))).size;
      const rotated = (await fs.stat(path.join(dir, `${EVENT_LOG}.1`))).size;
      assert.ok(current <= 2000 && rotated <= 2000, `${current} and ${rotated} bytes`);
      const kept = await logged(dir);
      const last = kept.at(-1)!;
      assert.equal(last.type === "autoextend" ? last.fromBlocks : undefined, 99, "the newest line is kept");
      assert.ok(kept.length < 100, "the oldest lines are gone");
    });
  });
});
