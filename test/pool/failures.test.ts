// The pool at its edges: a full pool whose writes commit by themselves to reclaim blocks,
// commits that fail, shrinking, processes that share a directory, and the flags and
// descriptors of the I/O workers. A "crash image" is a copy of the pool's directory taken
// while the pool is open: what a killed process leaves on disk.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { Pool } from "../../src/pool/pool.ts";
import { loaderArgs } from "../../src/common/workerargs.ts";
import { SpaceMap } from "../../src/pool/spacemap.ts";
import { runs, withTmp } from "../helpers/tmp.ts";
import { isDeno, spawnScript } from "../helpers/runtime.ts";

const BS = 64 * 1024;

/** Opens a crash image of the pool in `dir` (taken now), runs `fn` on it, and removes it. */
async function crashImage<T>(dir: string, fn: (pool: Pool) => Promise<T>): Promise<T> {
  const copy = `${dir}-crash`;
  execFileSync("cp", ["-a", dir, copy]);
  try {
    const pool = await Pool.open(copy);
    try {
      return await fn(pool);
    } finally {
      await pool.close();
    }
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
}

const fill = (n: number, v: number) => new Uint8Array(n).fill(v);

describe("a full pool", () => {
  it("reclaims by committing, plans the write again, and never overwrites what that commit holds", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 5 * BS });
      try {
        await pool.createThin(1, 5 * BS);
        const dev = pool.device(1);
        for (const vb of [0, 1, 3, 4]) await dev.write(vb * BS, fill(BS, 0xa0 + vb));
        await pool.commit();
        await dev.discard(BS, BS);
        await dev.discard(4 * BS, BS); // two blocks pending: free once a commit is in
        await dev.write(2 * BS, fill(BS, 0xb2)); // the last free block, fresh: writable in place until a commit
        assert.equal(pool.status().transactionId, 1);
        // vb 3 needs a new block and none is allocatable: the write commits (tx 2, vb 2 = 0xb2),
        // then both blocks must go to new blocks.
        await dev.write(2 * BS, fill(2 * BS, 0xcc));
        assert.equal(pool.status().transactionId, 2);
        assert.deepEqual(await dev.read(2 * BS, 2 * BS), fill(2 * BS, 0xcc));
        await crashImage(dir, async (again) => {
          assert.equal(again.status().transactionId, 2);
          assert.deepEqual(await again.device(1).read(2 * BS, BS), fill(BS, 0xb2), "the reclaim commit's block was overwritten");
          assert.deepEqual(await again.device(1).read(3 * BS, BS), fill(BS, 0xa3));
          assert.equal(again.status().dataBlocks.used, 3);
        });
      } finally {
        await pool.close();
      }
    });
  });

  it("crash images taken at random moments equal the last commit, explicit or made to reclaim blocks", async () => {
    const N = 4; // blocks per device
    for (let trial = 0; trial < runs(6); trial++) {
      await withTmp(async (dir) => {
        let seed = (trial * 2654435761 + 17) >>> 0 || 1;
        const rand = (n: number) => {
          seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
          return seed % n;
        };
        type Model = Map<number, Uint8Array>;
        const clone = (m: Model): Model => new Map([...m].map(([k, v]) => [k, v.slice()]));
        const pool = await Pool.create(dir, { dataSize: 10 * BS });
        let model: Model = new Map();
        let committed: Model = new Map();
        let nextId = 1;
        try {
          for (let step = 0; step < 40; step++) {
            const before = clone(model);
            const tx = pool.status().transactionId;
            const ids = [...model.keys()];
            const op = rand(10);
            let explicit = false;
            try {
              if (op === 0 || ids.length === 0) {
                const id = nextId++;
                await pool.createThin(id, N * BS);
                model.set(id, new Uint8Array(N * BS));
              } else if (op === 1 && ids.length < 5) {
                const origin = ids[rand(ids.length)];
                const id = nextId++;
                await pool.createSnapshot(id, origin);
                model.set(id, model.get(origin)!.slice());
              } else if (op <= 5) {
                const id = ids[rand(ids.length)];
                const at = rand(N * BS);
                const len = Math.min(N * BS - at, 1 + rand(2 * BS));
                const v = 1 + rand(255);
                await pool.device(id).write(at, fill(len, v));
                model.get(id)!.fill(v, at, at + len);
              } else if (op === 6) {
                const id = ids[rand(ids.length)];
                const at = rand(N * BS);
                const len = Math.min(N * BS - at, 1 + rand(2 * BS));
                await pool.device(id).discard(at, len);
                model.get(id)!.fill(0, at, at + len);
              } else if (op === 7 && ids.length > 1) {
                const id = ids[rand(ids.length)];
                await pool.deleteDevice(id);
                model.delete(id);
              } else {
                explicit = true;
                await pool.commit();
              }
            } catch (e) {
              if ((e as { code?: string }).code !== "ENOSPC") throw e;
              model = clone(before); // ENOSPC changes nothing
            }
            // A commit inside the operation (to reclaim blocks) holds the state before it.
            if (explicit) committed = clone(model);
            else if (pool.status().transactionId !== tx) committed = before;
            if (rand(3) === 0) {
              for (const id of model.keys()) assert.deepEqual(await pool.device(id).read(0, N * BS), model.get(id), `device ${id} at step ${step}`);
              await crashImage(dir, async (again) => {
                assert.deepEqual(again.devices().map((d) => d.id), [...committed.keys()].sort((a, b) => a - b), `devices at step ${step}`);
                for (const [id, bytes] of committed) {
                  assert.deepEqual(await again.device(id).read(0, N * BS), bytes, `trial ${trial} step ${step}: device ${id} differs from the last commit`);
                }
              });
            }
          }
        } finally {
          await pool.close();
        }
      });
    }
  });

  it("a discard that cannot zero its partial edges fails with ENOSPC and changes nothing", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 4 * BS });
      try {
        await pool.createThin(1, 4 * BS);
        const dev = pool.device(1);
        await dev.write(0, fill(4 * BS, 7));
        await pool.commit();
        // Zeroing the edges of blocks 0 and 3 needs two new blocks (redirect-on-write); none is free.
        const err = await dev.discard(100, 3 * BS).catch((e) => e);
        assert.equal(err.code, "ENOSPC");
        assert.equal(err.syscall, "discard");
        assert.deepEqual(await dev.read(0, 4 * BS), fill(4 * BS, 7));
        assert.equal(pool.status().dataBlocks.used, 4);
        // Whole blocks need nothing new.
        await dev.discard(BS, 2 * BS);
        assert.equal(pool.status().dataBlocks.used, 2);
      } finally {
        await pool.close();
      }
    });
  });

  it("holds a block freed in the open transaction back until a commit", () => {
    const space = new SpaceMap(2);
    const a = space.allocate();
    const b = space.allocate();
    space.committed();
    space.unref(a);
    assert.equal(space.allocatable, 0);
    assert.equal(space.allocate(), -1, "the freed block is still the last commit's");
    space.committed();
    assert.equal(space.allocate(), a);
    // A block allocated and freed within one transaction is free at once.
    space.unref(b);
    space.committed();
    const c = space.allocate();
    space.unref(c);
    assert.equal(space.allocate(), c);
  });

  it("a write into a full pool whose only free block was freed in the open transaction commits before it reuses it", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 4 * BS });
      try {
        await pool.createThin(1, 8 * BS);
        const dev = pool.device(1);
        await dev.write(0, fill(4 * BS, 1));
        await pool.commit();
        const freed = pool.lookup(1, 0)!;
        await dev.discard(0, BS);
        await dev.write(5 * BS, fill(BS, 2));
        assert.equal(pool.lookup(1, 5), freed);
        assert.equal(pool.status().transactionId, 2, "the block was reused without the commit that frees it");
      } finally {
        await pool.close();
      }
    });
  });

  it("never hands out stale data: reused blocks read as zeros where the new owner did not write", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 8 * BS }); // small: every block is reused
      try {
        await pool.createThin(1, 8 * BS);
        await pool.device(1).write(0, fill(8 * BS, 0x5a));
        await pool.commit();
        await pool.deleteDevice(1);
        await pool.commit();
        await pool.createThin(2, 8 * BS);
        const dev = pool.device(2);
        for (let i = 0; i < 8; i++) await dev.write(i * BS + 1000, new Uint8Array([1]));
        assert.equal(pool.status().dataBlocks.used, 8);
        const got = await dev.read(0, 8 * BS);
        for (let i = 0; i < got.length; i++) {
          if (got[i] !== (i % BS === 1000 ? 1 : 0)) assert.fail(`byte ${i} reads ${got[i]}`);
        }
      } finally {
        await pool.close();
      }
    });
  });
});

describe("commits that fail", () => {
  it("leave every change pending: the next commit writes its files again instead of naming unsynced ones", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 16 * BS });
      try {
        let fail = true;
        pool.attach("test", {
          prepareCommit: () => {
            if (fail) {
              fail = false;
              return Promise.reject(new Error("participant failed"));
            }
            return Promise.resolve({ files: [] });
          },
          liveFiles: () => [],
        });
        await pool.createThin(1, 4 * BS);
        await pool.device(1).write(0, fill(BS, 1));
        await assert.rejects(pool.commit(), /participant failed/);
        assert.equal(pool.status().transactionId, 0);
        const afterFailure = new Set(fs.readdirSync(path.join(dir, "metadata")));
        await pool.commit();
        const named = fs.readdirSync(path.join(dir, "metadata")).filter((f) => f !== "pool.cbor");
        assert.ok(named.length >= 2, `a device record and a node segment: ${named}`);
        for (const f of named) assert.ok(!afterFailure.has(f), `'${f}' was written by the failed commit and never synced`);
        await crashImage(dir, async (again) => {
          assert.equal(again.status().transactionId, 1);
          assert.deepEqual(await again.device(1).read(0, BS), fill(BS, 1));
        });
      } finally {
        await pool.close();
      }
    });
  });
});

describe("resize", () => {
  it("a shrink is committed before the data file is cut, so a crash after it reopens", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 32 * BS });
      try {
        await pool.createThin(1, 4 * BS);
        await pool.device(1).write(0, fill(BS, 9));
        await pool.resize(16 * BS);
        assert.equal(fs.statSync(pool.dataFile).size, 16 * BS);
        await crashImage(dir, async (again) => {
          assert.deepEqual(again.status().dataBlocks, { used: 1, total: 16 });
          assert.deepEqual(await again.device(1).read(0, BS), fill(BS, 9));
        });
      } finally {
        await pool.close();
      }
    });
  });
});

describe("one process per pool", () => {
  it("an open pool is EBUSY to other processes; a killed holder's lock is taken over", async () => {
    await withTmp(async (dir) => {
      await (await Pool.create(dir, { dataSize: 16 * BS })).close();
      const holder = spawnScript(new URL("./holder-child.ts", import.meta.url).pathname, [dir]);
      try {
        let out = "";
        let err = "";
        holder.stderr!.on("data", (c) => (err += c));
        await new Promise<void>((resolve, reject) => {
          holder.stdout!.on("data", (c) => {
            out += c;
            if (out.includes("open\n")) resolve();
          });
          holder.on("exit", (code) => reject(new Error(`the holder exited with ${code}: ${err}`)));
        });
        const e = await Pool.open(dir).catch((x) => x);
        assert.equal(e.code, "EBUSY");
        assert.match(e.message, new RegExp(`in use by process ${holder.pid}`));
        const exited = new Promise((r) => holder.on("exit", r));
        holder.kill("SIGKILL");
        await exited;
        const pool = await Pool.open(dir);
        await pool.close();
      } finally {
        holder.kill("SIGKILL");
      }
    });
  });
});

describe("I/O workers", () => {
  it("get the process's module-loading flags only (V8 and process flags stop a worker from starting)", () => {
    assert.deepEqual(
      loaderArgs(["--max-old-space-size=2048", "--import", "tsx", "--expose-gc", "--title=x", "--conditions=dev", "-r", "./a.cjs", "--enable-source-maps"]),
      ["--import", "tsx", "--conditions=dev", "-r", "./a.cjs"],
    );
  });

  it("work in a process started with V8 flags", { skip: isDeno && "Node flags: the child runs under Node only" }, async () => {
    await withTmp(async (dir) => {
      const out = execFileSync(process.execPath, ["--max-old-space-size=512", "--expose-gc", "--import", "tsx", new URL("./flags-child.ts", import.meta.url).pathname, path.join(dir, "p")], { encoding: "utf8" });
      assert.equal(out.trim(), "5");
    });
  });

  it("let go of a closed pool's data file, so its space is freed while other pools stay open", { skip: !fs.existsSync("/proc/self/fd") && "needs /proc" }, async () => {
    await withTmp(async (root) => {
      const a = await Pool.create(path.join(root, "a"), { dataSize: 16 * BS });
      try {
        const bdir = path.join(root, "b");
        const b = await Pool.create(bdir, { dataSize: 16 * BS });
        await b.createThin(1, 16 * BS);
        await b.device(1).write(0, fill(16 * BS, 1));
        await b.commit();
        await b.close();
        const holders = () => fs.readdirSync("/proc/self/fd").filter((f) => {
          try {
            return fs.readlinkSync(`/proc/self/fd/${f}`).startsWith(bdir);
          } catch {
            return false;
          }
        });
        // Idle workers close unused descriptors within seconds; wait for it, with a generous limit.
        for (let i = 0; i < 100 && holders().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(holders(), [], "a worker still holds the closed pool's data file");
      } finally {
        await a.close();
      }
    });
  });
});

describe("lookup", () => {
  it("refuses a virtual block outside the device with EINVAL", async () => {
    await withTmp(async (dir) => {
      const pool = await Pool.create(dir, { dataSize: 16 * BS });
      try {
        await pool.createThin(1, 4 * BS);
        for (const vb of [4, 1024, -1, 1.5, NaN]) assert.throws(() => pool.lookup(1, vb), { code: "EINVAL" }, String(vb));
        assert.equal(pool.lookup(1, 3), undefined);
      } finally {
        await pool.close();
      }
    });
  });
});

describe("size limits", () => {
  it("a data size past 2^31 blocks is EINVAL at create and resize, before the file changes", async () => {
    await withTmp(async (dir) => {
      await assert.rejects(Pool.create(path.join(dir, "big"), { dataSize: 2 ** 31 * BS + BS }), { code: "EINVAL" });
      const pool = await Pool.create(path.join(dir, "p"), { dataSize: 16 * BS });
      try {
        await assert.rejects(pool.resize(2 ** 31 * BS + BS), (e: Error & { code?: string }) => e.code === "EINVAL" && /larger blocks allow more/.test(e.message));
        assert.equal(fs.statSync(pool.dataFile).size, 16 * BS);
        assert.equal(pool.status().dataBlocks.total, 16);
      } finally {
        await pool.close();
      }
    });
  });
});
