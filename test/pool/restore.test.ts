// restore switches in new files with the root rename, as a commit does: cut short at any
// point, the store opens at its previous state; a file of a dumped name with other bytes
// (a live file of the store restored into) is never changed.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { LayerStore } from "../../src/layers/mod.ts";
import { dumpPool, restorePool } from "../../src/pool/dump.ts";
import { withTmp } from "../helpers/tmp.ts";

const BS = 64 * 1024;

/**
 * A store whose files are named the same whatever `tag` is, holding `tag` in every layer's
 * metadata (inline files, labels) and the same data blocks (restore restores metadata only).
 */
async function makeStore(dir: string, tag: string): Promise<void> {
  const store = await LayerStore.open(dir, { create: true, dataSize: 256 * BS, baseSize: 16 * BS });
  try {
    await store.prepare("base-x");
    await store.fs("base-x").writeFile("/tag", `base ${tag}\n`);
    await store.commit("base", "base-x");
    await store.prepare("ctr", "base");
    await store.fs("ctr").writeFile("/tag", `ctr ${tag}\n`);
    await store.fs("ctr").writeFile("/big", new Uint8Array(3 * BS).fill(0x42));
    await store.sync();
    await store.prepare("ctr2", "base");
    await store.update({ name: "ctr2", labels: { tag } });
  } finally {
    await store.close();
  }
}

/** What the store's layers hold. */
async function contents(dir: string): Promise<string[]> {
  const store = await LayerStore.open(dir);
  try {
    const big = await store.fs("ctr").readFile("/big");
    return [
      String(await store.fs("base").readFile("/tag", "utf8")), String(await store.fs("ctr").readFile("/tag", "utf8")),
      `big ${big.length} ${big[0]} ${big[big.length - 1]}`, JSON.stringify((await store.stat("ctr2")).labels),
    ];
  } finally {
    await store.close();
  }
}

/** Makes the `n`th open for writing of a file in `dir` fail with EIO while `fn` runs; returns how many there were. */
async function failingOpen(dir: string, n: number, fn: () => Promise<void>): Promise<number> {
  const real = fs.open;
  let count = 0;
  (fs as { open: unknown }).open = (file: string, flags?: string, ...rest: unknown[]) => {
    if (String(file).startsWith(dir + path.sep) && typeof flags === "string" && /[wa+]/.test(flags) && ++count === n) {
      return Promise.reject(Object.assign(new Error(`EIO: injected failure, open '${file}'`), { code: "EIO" }));
    }
    return (real as (...a: unknown[]) => unknown)(file, flags, ...rest);
  };
  try {
    await fn();
  } finally {
    (fs as { open: unknown }).open = real;
  }
  return count;
}

describe("restore", () => {
  it("cut short after any file, leaves the store as it was; let finish, it restores", async () => {
    await withTmp(async (tmp) => {
      const [a, b] = [path.join(tmp, "a"), path.join(tmp, "b")];
      await makeStore(a, "A");
      await makeStore(b, "B");
      const dumpA = await dumpPool(a);
      const dumpB = await dumpPool(b);
      const wantA = await contents(a);
      const wantB = await contents(b);
      assert.notDeepEqual(wantA, wantB);
      // The same names, other bytes: restoring b's dump over a in place would change a's live files.
      const names = (d: string) => [...d.matchAll(/<file name="([^"]+)"/g)].map((m) => m[1]);
      assert.deepEqual(names(dumpA), names(dumpB));
      assert.ok(names(dumpA).length >= 4);
      const meta = path.join(a, "metadata");
      const pristine = path.join(tmp, "pristine");
      await fs.cp(a, pristine, { recursive: true });
      let failed = 0;
      for (let n = 1; ; n++) {
        await fs.rm(a, { recursive: true });
        await fs.cp(pristine, a, { recursive: true });
        let error: unknown;
        const opens = await failingOpen(meta, n, () => restorePool(a, dumpB).catch((e) => void (error = e)));
        if (!error) {
          assert.ok(n > opens, `restore succeeded although open ${n} of ${opens} failed`);
          break;
        }
        failed++;
        assert.match(String((error as Error).message), /injected failure/);
        assert.equal(await dumpPool(a), dumpA, `restore cut short at open ${n}: the metadata is as it was`);
        assert.deepEqual(await contents(a), wantA, `restore cut short at open ${n}: the store opens as it was`);
      }
      assert.ok(failed >= names(dumpA).length, `cut short at ${failed} points`);
      // The restore that ran through: the store now holds b's state.
      assert.deepEqual(await contents(a), wantB);
      // Restoring a's own dump over it: every file is there with its bytes, and the dump comes back byte for byte.
      await restorePool(a, dumpA);
      assert.equal(await dumpPool(a), dumpA);
      await restorePool(a, dumpA);
      assert.equal(await dumpPool(a), dumpA);
      assert.deepEqual(await contents(a), wantA);
    });
  });

  it("is EBUSY while the pool is open in this process", async () => {
    await withTmp(async (dir) => {
      await makeStore(dir, "A");
      const dump = await dumpPool(dir);
      const store = await LayerStore.open(dir);
      try {
        await assert.rejects(restorePool(dir, dump), (e: Error & { code?: string }) => e.code === "EBUSY" && /already open in this process/.test(e.message));
      } finally {
        await store.close();
      }
    });
  });
});
