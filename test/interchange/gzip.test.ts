/**
 * Layer gzip (src/interchange/gzip.ts), blocks deflated on node:zlib's threads or in
 * worker threads of ours: both gunzip (node:zlib and the gzip program) to their input;
 * both give the same bytes, however the input is cut up; under Node those bytes are the
 * format's, built here from node:zlib's one-call raw deflate of each 1 MiB block with
 * the 32 KiB before it as dictionary (Deno's node:zlib ignores dictionaries, so there
 * only the sameness is checked); the CRC-32 combination is zlib's; the level is the one
 * asked for, and one outside 1..9 is EINVAL; failures of the input reach the reader; a
 * reader that stops early or stops reading holds neither a worker nor memory beyond a
 * few MiB.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomFillSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import zlib from "node:zlib";
import fc from "fast-check";
import { CHUNK_SIZE, giveChunk, takeChunk } from "../../src/interchange/chunks.ts";
import { crc32, crc32Combine } from "../../src/interchange/crc32.ts";
import { dictionaryWorks } from "../../src/interchange/deflateblock.ts";
import { gzip, GZIP_BLOCK, type GzipMode } from "../../src/interchange/gzip.ts";
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

/**
 * The format, written out in one piece where node:zlib honours dictionaries (Node): a
 * gzip header, each block's raw deflate with the 32 KiB before it as dictionary, a sync
 * flush after every block but the last (an empty last block when the input ends on a
 * block's end), then CRC-32 and length.
 */
function reference(bytes: Uint8Array, level = 6): Uint8Array | undefined {
  if (!dictionaryWorks()) return undefined;
  const parts: Uint8Array[] = [Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, level === 9 ? 2 : level === 1 ? 4 : 0, 3)];
  for (let at = 0;; at += GZIP_BLOCK) {
    const block = bytes.subarray(at, at + GZIP_BLOCK);
    const last = at + GZIP_BLOCK > bytes.length;
    const dictionary = bytes.subarray(Math.max(0, at - 32768), at);
    parts.push(zlib.deflateRawSync(block, { level, finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH, ...(at ? { dictionary } : {}) }));
    if (last) break;
  }
  const trailer = new Uint8Array(8);
  new DataView(trailer.buffer).setUint32(0, zlib.crc32(bytes), true);
  new DataView(trailer.buffer).setUint32(4, bytes.length, true);
  parts.push(trailer);
  return new Uint8Array(Buffer.concat(parts));
}

/** Whether the gzip program reads `gz` back to `bytes` (undefined where there is no gzip program). */
function gzipProgramReads(gz: Uint8Array, bytes: Uint8Array): boolean | undefined {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "thinstack-gzip-"));
  try {
    const file = path.join(dir, "blob.gz");
    fs.writeFileSync(file, gz);
    let out: Buffer;
    try {
      out = execFileSync("gzip", ["-dc", file], { maxBuffer: 1 << 28, stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") return undefined;
      throw e;
    }
    return Buffer.compare(out, bytes) === 0;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test("crc32Combine gives the CRC-32 of the two pieces together (zlib's crc32_combine)", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), fc.uint8Array({ maxLength: 3000 }), (a, b) => {
      const whole = new Uint8Array([...a, ...b]);
      assert.equal(crc32Combine(crc32(a), crc32(b), b.length), crc32(whole));
    }),
    { numRuns: runs(100) },
  );
  // Long pieces: the length's high bits matter too.
  const big = new Uint8Array(3 * GZIP_BLOCK + 5);
  randomFillSync(big);
  const at = GZIP_BLOCK + 17;
  assert.equal(crc32Combine(crc32(big.subarray(0, at)), crc32(big.subarray(at)), big.length - at), crc32(big));
});

test("gzip: both modes give the same bytes, blocks on the block size's boundaries and off them; gunzip and the gzip program read them", async () => {
  for (const length of [0, 1, GZIP_BLOCK, GZIP_BLOCK + 1, 2 * GZIP_BLOCK + 40_000]) {
    const bytes = mixed(length, length + 1);
    const [a, b] = await Promise.all(MODES.map(async (mode) => await collect(gzip(pieces(bytes, [65536 + 3, 700_000, GZIP_BLOCK]), { mode }))));
    assert.deepEqual(a, b, `the modes differ for ${length} bytes`);
    assert.deepEqual(new Uint8Array(zlib.gunzipSync(a)), bytes);
    const want = reference(bytes);
    if (want) assert.deepEqual(a, want, `the bytes are not the format's for ${length} bytes`);
    const program = gzipProgramReads(a, bytes);
    if (program !== undefined) assert.ok(program, `the gzip program did not read back ${length} bytes`);
  }
});

for (const mode of MODES) {
  test(`gzip (${mode}): the input back on gunzip; under Node the format's bytes (reference above), whatever the input's pieces`, async () => {
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

  {
    // Blocks are cut from the input at fixed offsets, whatever its pieces.
    test(`gzip (${mode}): the same bytes however the input is cut, under both runtimes`, async () => {
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

test("gzip: another level gives that level's bytes (under Node the format's), the same in both modes; a level outside 1..9 is EINVAL", async () => {
  const bytes = mixed(3 * CHUNK_SIZE + 99, 11);
  for (const level of [1, 9]) {
    const outs = await Promise.all(MODES.map(async (mode) => await collect(gzip(pieces(bytes, [70_000]), { level, mode }))));
    for (const out of outs) assert.deepEqual(new Uint8Array(zlib.gunzipSync(out)), bytes);
    assert.deepEqual(outs[0], outs[1]);
    const want = reference(bytes, level);
    if (want) for (const out of outs) assert.deepEqual(out, want);
  }
  const six = await collect(gzip(pieces(bytes, [5]), { mode: "worker" }));
  assert.notDeepEqual(await collect(gzip(pieces(bytes, [5]), { level: 1, mode: "worker" })), six);
  for (const level of [0, 10, 1.5, Number.NaN]) assert.throws(() => gzip(pieces(bytes, []), { level }), { code: "EINVAL" });
});
