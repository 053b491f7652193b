/**
 * Model-based property test: random trees of layers, random file operations on random
 * layers, commits, removals, syncs, close and reopen — against an in-memory model of
 * layered trees (each layer a flat tree, a child starting as a copy of its parent).
 * Every call must succeed or fail (with the same code) as the model does; every layer's
 * visible tree must equal the model's; committed layers never change; the pool's used
 * blocks must be exactly those the live file data occupies, and zero once every layer
 * is removed.
 *
 * FUZZ_RUNS scales the number of runs (`npm run fuzz`, see runs() in test/helpers/tmp.ts);
 * FUZZ_OPS sets the most operations per run (80).
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import { test } from "node:test";
import fc from "fast-check";
import { LayerStore, type LayerFs } from "../../src/layers/mod.ts";
import { describeLayer, plain, tempDir } from "./helpers.ts";
import { MemFs } from "./memfs.ts";
import { countFromEnv, runs } from "../helpers/tmp.ts";

const stats = new Map<string, number>();
const RUNS = runs(100);
const MAX_OPS = countFromEnv("FUZZ_OPS") ?? 80;

type Kind = "active" | "view" | "committed";
interface ModelLayer { kind: Kind; parent: string; tree: MemFs }

/** Bytes of a given length from a seed: cheap to shrink, distinct per write. */
function pattern(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const name = fc.constantFrom("a", "b", "c");
const pathOf = (depth: number) => fc.array(name, { minLength: depth, maxLength: depth }).map((cs) => "/" + cs.join("/"));
const path = fc.oneof({ arbitrary: pathOf(1), weight: 5 }, { arbitrary: pathOf(2), weight: 5 }, { arbitrary: pathOf(3), weight: 2 });
/** A path: given, or picked among the layer's existing paths at run time (most calls need one). */
type PathArg = string | { pick: number };
const existing = fc.oneof({ arbitrary: path as fc.Arbitrary<PathArg>, weight: 1 }, { arbitrary: fc.nat().map((pick): PathArg => ({ pick })), weight: 3 });
const anyPath = fc.oneof({ arbitrary: path as fc.Arbitrary<PathArg>, weight: 2 }, { arbitrary: fc.nat().map((pick): PathArg => ({ pick })), weight: 1 });
const size = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 120 }), weight: 4 },
  { arbitrary: fc.integer({ min: 1500, max: 9000 }), weight: 2 },
  { arbitrary: fc.integer({ min: 60_000, max: 140_000 }), weight: 1 },
);
const data = fc.record({ seed: fc.nat(), len: size });

type FsOp<P = PathArg> =
  | { op: "writeFile"; path: P; data: { seed: number; len: number } }
  | { op: "appendFile"; path: P; data: { seed: number; len: number } }
  | { op: "writeAt"; path: P; at: number; data: { seed: number; len: number } }
  | { op: "truncate"; path: P; len: number }
  | { op: "mkdir"; path: P; recursive: boolean; mode: number }
  | { op: "rm"; path: P; recursive: boolean; force: boolean }
  | { op: "unlink" | "rmdir"; path: P }
  | { op: "rename" | "link"; from: P; to: P }
  | { op: "symlink"; target: string; path: P }
  | { op: "chmod"; path: P; mode: number }
  | { op: "chown"; path: P; uid: number; gid: number }
  | { op: "mkfifo"; path: P };

const fsOp: fc.Arbitrary<FsOp> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("writeFile" as const), path: anyPath, data }), weight: 6 },
  { arbitrary: fc.record({ op: fc.constant("appendFile" as const), path: existing, data }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("writeAt" as const), path: existing, at: fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 0, max: 200_000 })), data }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant("truncate" as const), path: existing, len: fc.oneof(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 200_000 })) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("mkdir" as const), path: anyPath, recursive: fc.boolean(), mode: fc.constantFrom(0o755, 0o700, 0o777) }), weight: 5 },
  { arbitrary: fc.record({ op: fc.constant("rm" as const), path: existing, recursive: fc.boolean(), force: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constantFrom("unlink" as const, "rmdir" as const), path: existing }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constantFrom("rename" as const, "link" as const), from: existing, to: anyPath }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant("symlink" as const), target: fc.oneof(path, name), path: anyPath }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("chmod" as const), path: existing, mode: fc.constantFrom(0o644, 0o600, 0o755, 0o4755) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("chown" as const), path: existing, uid: fc.integer({ min: 0, max: 3 }), gid: fc.integer({ min: 0, max: 3 }) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("mkfifo" as const), path: anyPath }), weight: 1 },
);

/** Replaces picks by paths of the model tree (sorted, so runs replay the same). */
function concrete(o: FsOp, tree: MemFs): FsOp<string> {
  const paths = [...tree.nodes.keys()].filter((p) => p !== "/").sort();
  const at = (p: PathArg) => (typeof p === "string" ? p : paths.length ? paths[p.pick % paths.length] : "/a");
  const out = { ...o } as Record<string, unknown>;
  for (const k of ["path", "from", "to"]) if (k in out) out[k] = at(out[k] as PathArg);
  return out as FsOp<string>;
}

type Op =
  | { t: "prepare" | "view"; parent: number; noParent: boolean }
  | { t: "commit" | "remove"; layer: number }
  | { t: "fs"; layer: number; fsOp: FsOp }
  | { t: "sync" | "reopen" };

const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant("prepare" as const), parent: fc.nat(), noParent: fc.boolean() }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant("view" as const), parent: fc.nat(), noParent: fc.boolean() }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("commit" as const), layer: fc.nat() }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("remove" as const), layer: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("fs" as const), layer: fc.nat(), fsOp }), weight: 50 },
  { arbitrary: fc.record({ t: fc.constant("sync" as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("reopen" as const) }), weight: 1 },
);

/** Runs one fs op on a target (the layer or the model); returns the error code or "ok". */
async function runFsOp(t: LayerFs | MemFs, o: FsOp<string>): Promise<string> {
  try {
    switch (o.op) {
      case "writeFile": await t.writeFile(o.path, pattern(o.data.seed, o.data.len)); break;
      case "appendFile": await t.appendFile(o.path, pattern(o.data.seed, o.data.len)); break;
      case "writeAt":
        if (t instanceof MemFs) await t.writeAt(o.path, o.at, pattern(o.data.seed, o.data.len));
        else {
          const fh = await t.open(o.path, "r+");
          try {
            await fh.write(pattern(o.data.seed, o.data.len), 0, o.data.len, o.at);
          } finally {
            await fh.close();
          }
        }
        break;
      case "truncate": await t.truncate(o.path, o.len); break;
      case "mkdir": await t.mkdir(o.path, { recursive: o.recursive, mode: o.mode }); break;
      case "rm": await t.rm(o.path, { recursive: o.recursive, force: o.force }); break;
      case "unlink": await t.unlink(o.path); break;
      case "rmdir": await t.rmdir(o.path); break;
      case "rename": await t.rename(o.from, o.to); break;
      case "link": await t.link(o.from, o.to); break;
      case "symlink": await t.symlink(o.target, o.path); break;
      case "chmod": await t.chmod(o.path, o.mode); break;
      case "chown": await t.chown(o.path, o.uid, o.gid); break;
      case "mkfifo": await t.mknod(o.path, 0o010644); break;
    }
    return "ok";
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (!code) throw e;
    return code;
  }
}

async function checkAll(store: LayerStore, model: Map<string, ModelLayer>, when: string): Promise<void> {
  for (const [key, m] of model) {
    assert.deepEqual(plain(await describeLayer(store.fs(key))), plain(m.tree.describe()), `${when}: layer ${key}`);
  }
  const report = await store.fsck();
  assert.deepEqual(report.problems, [], `${when}: fsck`);
}

async function runOps(ops: Op[], blockSize = 65536): Promise<void> {
  const dir = await tempDir("model-");
  const open = (create: boolean) => LayerStore.open(dir, { create, blockSize, dataSize: 2 * 2 ** 30, baseSize: 256 * 2 ** 20, cache: { entries: 64, listings: 8 } });
  let store = await open(true);
  const model = new Map<string, ModelLayer>();
  let n = 0;
  const keys = (f: (m: ModelLayer) => boolean) => [...model].filter(([, m]) => f(m)).map(([k]) => k);
  try {
    for (const [i, o] of ops.entries()) {
      const step = `op ${i} ${JSON.stringify(o)}`;
      if (o.t === "prepare" || o.t === "view") {
        const committed = keys((m) => m.kind === "committed");
        const parent = o.noParent || committed.length === 0 ? "" : committed[o.parent % committed.length];
        const key = `${o.t === "prepare" ? "A" : "V"}${++n}`;
        await (o.t === "prepare" ? store.prepare(key, parent || undefined) : store.view(key, parent || undefined));
        model.set(key, { kind: o.t === "prepare" ? "active" : "view", parent, tree: parent ? model.get(parent)!.tree.clone() : new MemFs() });
      } else if (o.t === "commit") {
        const active = keys((m) => m.kind === "active");
        if (active.length === 0) continue;
        const key = active[o.layer % active.length];
        const name = `C${++n}`;
        await store.commit(name, key);
        const m = model.get(key)!;
        model.delete(key);
        model.set(name, { ...m, kind: "committed" });
        for (const other of model.values()) if (other.parent === key) other.parent = name;
      } else if (o.t === "remove") {
        const all = [...model.keys()];
        if (all.length === 0) continue;
        const key = all[o.layer % all.length];
        const busy = [...model.values()].some((m) => m.parent === key);
        const got = await store.remove(key).then(() => "ok", (e) => e.code);
        assert.equal(got, busy ? "EBUSY" : "ok", step);
        if (!busy) model.delete(key);
      } else if (o.t === "fs") {
        const all = [...model.keys()];
        if (all.length === 0) continue;
        // Mostly active layers; now and then a read-only one, which must refuse.
        const active = keys((m) => m.kind === "active");
        const key = active.length && o.layer % 16 !== 0 ? active[o.layer % active.length] : all[o.layer % all.length];
        const m = model.get(key)!;
        const fsop = concrete(o.fsOp, m.tree);
        const got = await runFsOp(store.fs(key), fsop);
        const want = m.kind === "active" ? await runFsOp(m.tree, fsop) : "EROFS";
        assert.equal(got, want, `${step} ${JSON.stringify(fsop)} on ${key}`);
        if (process.env.FUZZ_STATS) stats.set(`${fsop.op}:${got}`, (stats.get(`${fsop.op}:${got}`) ?? 0) + 1);
        if (m.kind === "active") {
          assert.deepEqual(plain(await describeLayer(store.fs(key))), plain(m.tree.describe()), `${step}: layer ${key}`);
        }
      } else if (o.t === "sync") {
        await store.sync();
      } else {
        await store.close();
        store = await open(false);
        await checkAll(store, model, `${step} (after reopen)`);
      }
    }
    await checkAll(store, model, "end");
    // Removing every layer, children first, gives every block back.
    while (model.size > 0) {
      for (const key of [...model.keys()]) {
        if ([...model.values()].some((m) => m.parent === key)) continue;
        await store.remove(key);
        model.delete(key);
      }
    }
    assert.equal(store.pool.status().dataBlocks.used, 0, "blocks left after removing every layer");
  } finally {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

test("layers match the model (random layer trees and file operations)", async () => {
  // FUZZ_REPLAY='[...]' replays a counterexample (without the leading prepare) alone.
  if (process.env.FUZZ_REPLAY) return await runOps([{ t: "prepare", parent: 0, noParent: true }, ...JSON.parse(process.env.FUZZ_REPLAY)]);
  // Every run starts with a layer to work in.
  const first: Op = { t: "prepare", parent: 0, noParent: true };
  const blockSize = fc.constantFrom(65536, 65536, 131072, 262144);
  await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: MAX_OPS, size: "max" }), blockSize, (ops, bs) => runOps([first, ...ops], bs)), { numRuns: RUNS, includeErrorInReport: true });
  if (process.env.FUZZ_STATS) console.log(Object.fromEntries([...stats].sort()));
});
