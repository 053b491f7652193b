/**
 * Layer gzip (src/interchange/gzip.ts) on node:zlib's threads and in a worker thread of
 * ours: both gunzip to their input; under Node both give the bytes node:zlib gives in
 * one call at level 6, however the input is cut up, and the worker's bytes never depend
 * on the cuts (Deno's node:zlib gives other bytes for other write sizes); the level is the
 * one asked for, and one outside 1..9 is EINVAL; failures of the
 * input reach the reader; a reader that stops early or stops reading holds neither a
 * worker nor memory beyond a few MiB.
 */
import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { test } from "node:test";
import zlib from "node:zlib";
import fc from "fast-check";
import { CHUNK_SIZE, giveChunk, takeChunk } from "../../src/interchange/chunks.ts";
import { gzip, type GzipMode } from "../../src/interchange/gzip.ts";
import { isDeno } from "../helpers/runtime.ts";
import { runs } from "../helpers/tmp.ts";

const MODES: GzipMode[] = ["zlib", "worker"];

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c.slice());
  return new Uint8Array(Buffer.concat(parts));
}

/** `bytes` cut at `cuts` (offsets, any order), as a stream; pieces are copies, as a tar writer's would be. */
async function* pieces(bytes: Uint8Array, cuts: number[]): AsyncGenerator<Uint8Array> {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const to of [...at, bytes.length]) {
    if (to > from) yield bytes.slice(from, to);
    from = Math.max(from, to);
  }
}

/** Bytes that deflate partly: runs of text between random stretches. */
function mixed(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (i >> 12) % 3 === 0 ? x & 0xff : 97 + ((i * 7) % 13);
  }
  return out;
}

/** What gzipSync makes of `bytes` where that is the reference (Node: streaming or not, node:zlib gives the same bytes). */
function reference(bytes: Uint8Array): Uint8Array | undefined {
  return isDeno ? undefined : new Uint8Array(zlib.gzipSync(bytes, { level: 6 }));
}

for (const mode of MODES) {
  test(`gzip (${mode}): the input back on gunzip; under Node the bytes of zlib.gzipSync at level 6, whatever the input's pieces`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 3 * CHUNK_SIZE }), fc.integer(), fc.array(fc.nat(), { maxLength: 12 }), async (length, seed, cuts) => {
        const bytes = mixed(length, seed);
        const out = await collect(gzip(pieces(bytes, cuts), { mode }));
        assert.deepEqual(new Uint8Array(zlib.gunzipSync(out)), bytes);
        const want = reference(bytes);
        if (want) assert.deepEqual(out, want);
      }),
      { numRuns: runs(12) },
    );
  });

  if (mode === "worker") {
    // Deno's node:zlib gives other bytes for other write sizes; the worker always writes 1 MiB pieces.
    test("gzip (worker): the same bytes however the input is cut, under both runtimes", async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 3 * CHUNK_SIZE }), fc.integer(), fc.array(fc.nat(), { maxLength: 12 }), async (length, seed, cuts) => {
          const bytes = mixed(length, seed);
          assert.deepEqual(await collect(gzip(pieces(bytes, cuts), { mode })), await collect(gzip(pieces(bytes, [4096, 65536 + 7]), { mode })));
        }),
        { numRuns: runs(6) },
      );
    });
  }

  test(`gzip (${mode}): incompressible input of several MiB in chunks.ts chunks round-trips`, async () => {
    const all = new Uint8Array(5 * CHUNK_SIZE + 12345);
    randomFillSync(all);
    async function* chunks() {
      for (let at = 0; at < all.length; at += CHUNK_SIZE) {
        const c = takeChunk().subarray(0, Math.min(CHUNK_SIZE, all.length - at));
        c.set(all.subarray(at, at + c.length));
        yield c;
      }
    }
    const out: Uint8Array[] = [];
    for await (const c of gzip(chunks(), { mode })) {
      out.push(c.slice());
      giveChunk(c);
    }
    const joined = Buffer.concat(out);
    assert.deepEqual(new Uint8Array(zlib.gunzipSync(joined)), all);
    const want = reference(all);
    if (want) assert.deepEqual(new Uint8Array(joined), want);
  });

  test(`gzip (${mode}): a failing input fails the reader with its error, and the next stream works`, async () => {
    async function* failing() {
      yield mixed(3 * CHUNK_SIZE, 7);
      throw Object.assign(new Error("disk gone"), { code: "EIO" });
    }
    await assert.rejects(collect(gzip(failing(), { mode })), { message: "disk gone" });
    const bytes = mixed(100_000, 3);
    assert.deepEqual(new Uint8Array(zlib.gunzipSync(await collect(gzip(pieces(bytes, [10, 5000]), { mode })))), bytes);
  });

  test(`gzip (${mode}): a reader that stops early closes the input, and one that stops reading holds the input back`, async () => {
    let pulled = 0;
    let closed = false;
    async function* endless() {
      try {
        for (;;) {
          const c = new Uint8Array(CHUNK_SIZE);
          randomFillSync(c);
          pulled += c.length;
          yield c;
        }
      } finally {
        closed = true;
      }
    }
    const it = gzip(endless(), { mode });
    const first = await it.next();
    assert.ok(first.value && first.value.length > 0);
    // Let deflate run as far as it may while nobody reads: until the input stops moving.
    for (let still = 0, last = -1, t = 0; still < 6 && t < 200; t++) {
      await new Promise((r) => setTimeout(r, 50));
      still = pulled === last ? still + 1 : 0;
      last = pulled;
    }
    const bound = 32 * CHUNK_SIZE;
    assert.ok(pulled < bound, `${pulled} bytes of input were taken while the reader waited (bound ${bound})`);
    await it.return(undefined);
    assert.ok(closed, "the input was closed");
    const bytes = mixed(70_000, 9);
    assert.deepEqual(new Uint8Array(zlib.gunzipSync(await collect(gzip(pieces(bytes, [1]), { mode })))), bytes);
  });
}

test("gzip: another level gives that level's bytes (under Node those of zlib.gzipSync), in both modes; a level outside 1..9 is EINVAL", async () => {
  const bytes = mixed(3 * CHUNK_SIZE + 99, 11);
  for (const level of [1, 9]) {
    const outs = await Promise.all(MODES.map(async (mode) => await collect(gzip(pieces(bytes, [70_000]), { level, mode }))));
    for (const out of outs) assert.deepEqual(new Uint8Array(zlib.gunzipSync(out)), bytes);
    if (!isDeno) for (const out of outs) assert.deepEqual(out, new Uint8Array(zlib.gzipSync(bytes, { level })));
  }
  const six = await collect(gzip(pieces(bytes, [5]), { mode: "worker" }));
  assert.notDeepEqual(await collect(gzip(pieces(bytes, [5]), { level: 1, mode: "worker" })), six);
  for (const level of [0, 10, 1.5, Number.NaN]) assert.throws(() => gzip(pieces(bytes, []), { level }), { code: "EINVAL" });
});
