// Kills a child process doing random writes and commits with SIGKILL at random moments,
// then reopens the pool: it must equal the last commit, bytes and accounting.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Pool } from "../../src/pool/pool.ts";
import { runs, withTmp } from "../helpers/tmp.ts";
import { spawnScript } from "../helpers/runtime.ts";

const BS = 64 * 1024;
const child = new URL("./crash-child.ts", import.meta.url).pathname;

async function trial(dir: string, seed: number, killAfterMs: number): Promise<void> {
  // Room for 6 devices of 16 blocks and as many pending frees: no write runs out of space, which
  // would commit by itself to reclaim blocks (a commit the child could not announce).
  const pool = await Pool.create(dir, { dataSize: 200 * BS });
  await pool.createThin(1, 16 * BS);
  await pool.commit();
  await pool.close();

  const proc = spawnScript(child, [dir, String(seed)]);
  const expected = new Map<number, { digest: string; used: number }>([[1, { digest: "", used: 0 }]]);
  let out = "";
  let err = "";
  proc.stderr!.on("data", (c) => (err += c));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on("data", (c) => {
      out += c;
      if (out.includes("ready\n")) resolve();
    });
    exited.then((code) => reject(new Error(`child exited with ${code} before it was ready: ${err}`)));
  });
  await new Promise((r) => setTimeout(r, killAfterMs));
  proc.kill("SIGKILL");
  const code = await exited;
  assert.equal(code, null, `the child should die of the signal, not exit: ${err}`);
  for (const line of out.split("\n")) {
    const m = /^committing (\d+) (\w+) (\d+)$/.exec(line);
    if (m) expected.set(Number(m[1]), { digest: m[2], used: Number(m[3]) });
  }

  const again = await Pool.open(dir);
  try {
    const tx = again.status().transactionId;
    const want = expected.get(tx);
    assert.ok(want, `reopened at transaction ${tx}, which the child never started to commit`);
    if (tx === 1) return; // the state the parent committed
    const h = createHash("sha256");
    for (const d of again.devices()) h.update(`${d.id}:`).update(await again.device(d.id).read(0, d.size));
    assert.equal(h.digest("hex"), want.digest, `bytes at transaction ${tx} differ from what was committed`);
    assert.equal(again.status().dataBlocks.used, want.used, `used blocks at transaction ${tx}`);
    // The reopened pool works on: write, commit, reopen.
    await again.device(again.devices()[0].id).write(0, new Uint8Array(10).fill(7));
    await again.commit();
  } finally {
    await again.close();
  }
}

describe("crash consistency", () => {
  it("reopens at exactly the last commit after SIGKILL at random moments", async () => {
    const trials = runs(6);
    for (let i = 0; i < trials; i++) {
      const seed = 1 + Math.floor(Math.random() * 2 ** 31);
      const delay = 100 + Math.floor(Math.random() * 900);
      await withTmp((dir) => trial(dir, seed, delay)).catch((e) => {
        throw new Error(`trial ${i} (seed ${seed}, killed after ${delay} ms): ${e.message}`);
      });
    }
  });
});
