// Kills a child process doing random writes and commits with SIGKILL, at random moments
// and inside a commit's window (everything synced, the root not yet renamed), then
// reopens the pool: it must be at least at the last commit that returned, or the one
// being made, and equal what that commit held, bytes and accounting.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Pool } from "../../src/pool/pool.ts";
import { runs, withTmp } from "../helpers/tmp.ts";
import { spawnScript } from "../helpers/runtime.ts";

const BS = 64 * 1024;
const child = new URL("./crash-child.ts", import.meta.url).pathname;

/**
 * How a trial ended: the transaction it reopened at, whether the kill landed in the window
 * it waited for, and the commit the child was inside (announced, not yet returned), if any.
 */
interface Outcome { tx: number; inWindow: boolean; inCommit?: number }

/**
 * Runs the child and kills it `killAfterMs` after it is ready, or (with `pauseAt`) as soon
 * as it says it is in the window of the commit of transaction `pauseAt`.
 */
async function trial(dir: string, seed: number, killAfterMs: number, pauseAt?: number): Promise<Outcome> {
  // Room for 6 devices of 16 blocks and as many pending frees: no write runs out of space, which
  // would commit by itself to reclaim blocks (a commit the child could not announce).
  const pool = await Pool.create(dir, { dataSize: 200 * BS });
  await pool.createThin(1, 16 * BS);
  await pool.commit();
  await pool.close();

  const proc = spawnScript(child, [dir, String(seed), ...(pauseAt === undefined ? [] : [String(pauseAt)])]);
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
  if (pauseAt === undefined) await new Promise((r) => setTimeout(r, killAfterMs));
  else {
    await new Promise<void>((resolve, reject) => {
      const seen = () => out.includes(`window ${pauseAt}\n`);
      if (seen()) return resolve();
      proc.stdout!.on("data", () => seen() && resolve());
      exited.then((code) => reject(new Error(`child exited with ${code} before its commit window: ${err}`)));
    });
  }
  proc.kill("SIGKILL");
  const code = await exited;
  assert.equal(code, null, `the child should die of the signal, not exit: ${err}`);
  let returned = 1; // the parent's own commit
  let started = 1;
  for (const line of out.split("\n")) {
    const m = /^committing (\d+) (\w+) (\d+)$/.exec(line);
    if (m) expected.set(started = Number(m[1]), { digest: m[2], used: Number(m[3]) });
    const c = /^committed (\d+)$/.exec(line);
    if (c) returned = Number(c[1]);
  }
  const inWindow = pauseAt !== undefined && out.includes(`window ${pauseAt}\n`);
  const inCommit = started > returned ? started : undefined;

  const again = await Pool.open(dir);
  const tx = again.status().transactionId;
  try {
    const want = expected.get(tx);
    assert.ok(want, `reopened at transaction ${tx}, which the child never started to commit`);
    assert.ok(tx >= returned, `reopened at transaction ${tx}, older than transaction ${returned}, whose commit had returned`);
    assert.ok(tx <= started, `reopened at transaction ${tx}, newer than any commit the child started`);
    // Killed before the rename: the commit in its window is not in.
    if (inWindow) assert.equal(tx, pauseAt! - 1, `killed in the window of commit ${pauseAt}, reopened at ${tx}`);
    if (tx === 1) return { tx, inWindow, inCommit }; // the state the parent committed
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
  return { tx, inWindow, inCommit };
}

describe("crash consistency", () => {
  it("reopens at least at the last commit that returned after SIGKILL at random moments", async (t) => {
    const trials = runs(6);
    // Kills that landed inside a commit() call, by whether the root had switched.
    let before = 0;
    let after = 0;
    for (let i = 0; i < trials; i++) {
      const seed = 1 + Math.floor(Math.random() * 2 ** 31);
      const delay = 100 + Math.floor(Math.random() * 900);
      const r = await withTmp((dir) => trial(dir, seed, delay)).catch((e) => {
        throw new Error(`trial ${i} (seed ${seed}, killed after ${delay} ms): ${e.message}`);
      });
      if (r.inCommit !== undefined) r.tx === r.inCommit ? after++ : before++;
    }
    // Where random kills land is up to the scheduler: counted, not asserted.
    t.diagnostic(`${before + after} of ${trials} random kills landed inside commit(): ${before} before the root switch, ${after} after it`);
  });

  it("reopens at the commit before after SIGKILL inside a commit's window (data and new files synced, root not renamed)", async (t) => {
    const trials = runs(6);
    let landed = 0;
    for (let i = 0; i < trials; i++) {
      const seed = 1 + Math.floor(Math.random() * 2 ** 31);
      const pauseAt = 2 + Math.floor(Math.random() * 6);
      const r = await withTmp((dir) => trial(dir, seed, 0, pauseAt)).catch((e) => {
        throw new Error(`trial ${i} (seed ${seed}, killed in the window of commit ${pauseAt}): ${e.message}`);
      });
      if (r.inWindow && r.tx === pauseAt - 1) landed++;
    }
    t.diagnostic(`${landed} of ${trials} kills landed inside a commit's window`);
    assert.equal(landed, trials, "every kill landed in the window it waited for");
  });
});
