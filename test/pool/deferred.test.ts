// A deferred deletion whose background work fails: reported, listed in status (here and
// in the next process), kept pending, and retried at the next open.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { Pool } from "../../src/pool/pool.ts";
import type { CommitParticipant, DeferredDeleteError } from "../../src/pool/types.ts";
import { DELETE_ERRORS_FILE } from "../../src/pool/deleteerrors.ts";
import { withTmp } from "../helpers/tmp.ts";

const BS = 64 * 1024;

/** A participant whose commits fail from the `failFrom`th on (counting from 1), until `healed`. */
function flaky(failFrom: number) {
  const p = {
    calls: 0, healed: false,
    participant: {
      prepareCommit: () => {
        p.calls++;
        if (!p.healed && p.calls >= failFrom) return Promise.reject(Object.assign(new Error("EIO: injected commit failure"), { code: "EIO" }));
        return Promise.resolve({ files: [] });
      },
      liveFiles: () => [],
    } satisfies CommitParticipant,
  };
  return p;
}

/** A pool with device 1 (two blocks written) and device 2, committed; device 1 then deleted with `deferred` and a participant that fails its next commits. */
async function failedDeletion(dir: string): Promise<{ pool: Pool; reported: DeferredDeleteError[]; p: ReturnType<typeof flaky> }> {
  const pool = await Pool.create(dir, { dataSize: 16 * BS });
  await pool.createThin(1, 4 * BS);
  await pool.device(1).write(0, new Uint8Array(2 * BS).fill(1));
  await pool.createThin(2, 4 * BS);
  await pool.commit();
  const p = flaky(2); // the deletion's first commit (recording it as pending) works; the background one fails
  pool.attach("flaky", p.participant);
  const reported: DeferredDeleteError[] = [];
  pool.onDeferredDeleteError = (e) => reported.push(e);
  await pool.deleteDevice(1, { deferred: true });
  await pool.settle();
  return { pool, reported, p };
}

describe("deferred deletions that fail", () => {
  it("are reported, listed in status with the device and message, and retried at the next open", async () => {
    await withTmp(async (dir) => {
      const { pool, reported } = await failedDeletion(dir);
      assert.equal(reported.length, 1);
      assert.deepEqual([reported[0].device, reported[0].code], [1, "EIO"]);
      assert.match(reported[0].message, /injected commit failure/);
      assert.deepEqual(pool.status().deferredDeleteErrors, reported);
      // The next process sees it too, and the deletion is still recorded as pending.
      await assert.rejects(pool.close(), /injected commit failure/);
      const looker = await Pool.open(dir, { resumeDeletions: false });
      assert.deepEqual(looker.status().deferredDeleteErrors, reported);
      assert.equal(looker.status().deferredDeletes, 1);
      await looker.close();
      // An open that resumes deletions finishes it; the error goes with it.
      const again = await Pool.open(dir);
      await again.settle();
      assert.deepEqual(again.devices().map((d) => d.id), [2]);
      assert.deepEqual(again.status().deferredDeleteErrors, []);
      assert.equal(again.status().deferredDeletes, 0);
      assert.equal(again.status().dataBlocks.used, 0);
      await again.close();
      await assert.rejects(fs.stat(path.join(dir, DELETE_ERRORS_FILE)), { code: "ENOENT" });
      const last = await Pool.open(dir, { resumeDeletions: false });
      assert.deepEqual([last.status().deferredDeletes, last.status().deferredDeleteErrors.length, last.status().dataBlocks.used], [0, 0, 0]);
      await last.close();
    });
  });

  it("an error goes once a later commit of the same process records the device as gone", async () => {
    await withTmp(async (dir) => {
      const { pool, p } = await failedDeletion(dir);
      assert.equal(pool.status().deferredDeleteErrors.length, 1);
      p.healed = true;
      await pool.commit();
      assert.deepEqual(pool.status().deferredDeleteErrors, []);
      await pool.close();
      const again = await Pool.open(dir, { resumeDeletions: false });
      assert.deepEqual([again.devices().map((d) => d.id), again.status().deferredDeletes, again.status().deferredDeleteErrors.length], [[2], 0, 0]);
      await again.close();
    });
  });
});
