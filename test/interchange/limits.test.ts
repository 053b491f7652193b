/**
 * Bounded memory on untrusted archives: metadata over METADATA_LIMIT (manifests,
 * configs, indexes, docker-save manifest.json / repositories / layer JSON, tar extended
 * headers, global PAX headers together) is refused with EFBIG naming the entry and the
 * limit, before it is read. The archives are crafted here as streams or sparse files, so
 * the tests hold little: a tar source counts the bytes pulled from it, and a refused
 * header's data is never pulled.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, it } from "node:test";
import zlib from "node:zlib";
import { writeChunks } from "../../src/interchange/hostio.ts";
import { readImage } from "../../src/interchange/imageread.ts";
import { METADATA_LIMIT } from "../../src/interchange/limits.ts";
import { encodePax } from "../../src/interchange/pax.ts";
import { readTar } from "../../src/interchange/tarread.ts";
import { type TarWriter, writeTar } from "../../src/interchange/tarwrite.ts";
import { withTmp } from "../helpers/tmp.ts";

const MiB = 2 ** 20;
const utf8 = new TextEncoder();

/** The message every refusal carries: the size and the limit. */
const LIMIT_TEXT = /over the 4 MiB \(4194304-byte\) limit on metadata read into memory; refused/;

/** A ustar header block. */
function header(name: string, size: number, type: string): Uint8Array {
  const b = new Uint8Array(512);
  const put = (at: number, s: string) => b.set(utf8.encode(s), at);
  put(0, name);
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, `${size.toString(8).padStart(11, "0")}\0`);
  put(136, "00000000000\0");
  put(156, type);
  put(257, "ustar\x0000");
  b.fill(0x20, 148, 156);
  put(148, `${b.reduce((a, c) => a + c, 0).toString(8).padStart(6, "0")}\0 `);
  return b;
}

/** `data` padded to whole blocks. */
function padded(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(data.length / 512) * 512);
  out.set(data);
  return out;
}

/** `n` zero bytes, in 64 KiB chunks made as they are asked for. */
function* zeros(n: number): Generator<Uint8Array> {
  for (let left = n; left > 0; left -= 64 * 1024) yield new Uint8Array(Math.min(left, 64 * 1024));
}

/** A stream of `parts` (made lazily) that counts the bytes pulled from it. */
function counted(parts: () => Iterable<Uint8Array>): { source: AsyncIterable<Uint8Array>; pulled: () => number } {
  let n = 0;
  return {
    source: (async function* () {
      for (const p of parts()) {
        n += p.length;
        yield p;
      }
    })(),
    pulled: () => n,
  };
}

async function readAll(source: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const e of readTar(source)) for await (const _ of e.body) { /* drained */ }
}

describe("tar extended headers", () => {
  it("a PAX header over the limit is refused at its header block, naming it, its size and the limit; its data is never pulled", async () => {
    const size = 64 * MiB;
    const { source, pulled } = counted(function* () {
      yield header("PaxHeaders/big", size, "x");
      yield* zeros(size);
    });
    await assert.rejects(readAll(source), (e: Error & { code?: string }) => {
      assert.equal(e.code, "EFBIG");
      assert.match(e.message, /^EFBIG: file too large, untar '<stream>: 'PaxHeaders\/big' at byte 0': this PAX extended header: 67108864 bytes \(64 MiB\), over/);
      assert.match(e.message, LIMIT_TEXT);
      return true;
    });
    assert.ok(pulled() < MiB, `${pulled()} bytes pulled`);
  });

  it("a GNU long name over the limit is refused the same way", async () => {
    const { source } = counted(function* () {
      yield header("././@LongLink", 8 * MiB, "L");
      yield* zeros(8 * MiB);
    });
    await assert.rejects(readAll(source), { code: "EFBIG", message: /'\.\/\.\/@LongLink' at byte 0': this GNU long name: 8388608 bytes/ });
  });

  it("global PAX headers, each within the limit, are refused once they add up to more, before the one that passes it is buffered", async () => {
    const one = padded(encodePax([["comment", "x".repeat(MiB - 32)]])); // just under 1 MiB, in whole blocks
    const { source, pulled } = counted(function* () {
      for (let i = 0; i < 16; i++) {
        yield header(`pax_global_header_${i}`, one.length, "g");
        for (let at = 0; at < one.length; at += 64 * 1024) yield one.subarray(at, at + 64 * 1024);
      }
      yield header("file", 0, "0");
      yield new Uint8Array(1024);
    });
    await assert.rejects(readAll(source), (e: Error & { code?: string }) => {
      assert.equal(e.code, "EFBIG");
      // The fifth header brings the total past 4 MiB.
      assert.match(e.message, new RegExp(`'pax_global_header_4' at byte ${4 * (512 + one.length)}': the global PAX headers up to this one: ${5 * one.length} bytes`));
      assert.match(e.message, LIMIT_TEXT);
      return true;
    });
    // A stream reads a chunk or two ahead of the parser: not the fifth header's data.
    assert.ok(pulled() < 4 * (512 + one.length) + 512 + 4 * 64 * 1024, `${pulled()} bytes pulled: the fifth header's data is not`);
  });

  it("within the limit, global and local records still apply (the refusal is not a blanket one)", async () => {
    const global = padded(encodePax([["uid", "4242"]]));
    const local = padded(encodePax([["mtime", "1234.5"], ["SCHILY.xattr.user.k", "v"]]));
    const seen: [string, number, number, string][] = [];
    const src = (async function* () {
      yield header("g", global.length, "g");
      yield global;
      yield header("x", local.length, "x");
      yield local;
      yield header("a", 0, "0");
      yield header("b", 0, "0");
      yield new Uint8Array(1024);
    })();
    for await (const e of readTar(src)) seen.push([e.name, e.uid, e.mtimeMs, [...(e.xattrs?.keys() ?? [])].join()]);
    assert.deepEqual(seen, [["a", 4242, 1234500, "user.k"], ["b", 4242, 0, ""]]);
  });
});

/** Writes a tar file of `add`'s entries, streamed. */
async function tarFile(file: string, add: (w: TarWriter) => Promise<void>, gzip = false): Promise<void> {
  if (!gzip) {
    await writeChunks(file, writeTar(add));
    return;
  }
  await pipeline(Readable.from(writeTar(add)), zlib.createGzip(), fs.createWriteStream(file));
}

const attrs = { mode: 0o644, uid: 0, gid: 0, mtimeMs: 0 };

async function addFile(w: TarWriter, name: string, data: Uint8Array | number): Promise<void> {
  if (typeof data === "number") await w.add({ ...attrs, name, type: "file", size: data }, zeros(data));
  else await w.add({ ...attrs, name, type: "file", size: data.length }, [data]);
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const json = (v: unknown) => utf8.encode(JSON.stringify(v));

/** An OCI layout directory whose files are given (blobs by content), plus sparse ones by size. */
async function layout(dir: string, files: Record<string, Uint8Array>, sparse: Record<string, number> = {}): Promise<void> {
  await fsp.mkdir(path.join(dir, "blobs", "sha256"), { recursive: true });
  await fsp.writeFile(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  for (const [name, bytes] of Object.entries(files)) await fsp.writeFile(path.join(dir, name), bytes);
  for (const [name, size] of Object.entries(sparse)) {
    await fsp.writeFile(path.join(dir, name), "");
    await fsp.truncate(path.join(dir, name), size);
  }
}

const indexOf = (manifests: unknown[]) => json({ schemaVersion: 2, manifests });
const desc = (mediaType: string, digest: string, size: number) => ({ mediaType, digest: `sha256:${digest}`, size });
const FAKE = "ab".repeat(32);

describe("image metadata", () => {
  it("OCI layout: an index.json of 1 TiB (sparse) is refused by its size, not read", async () => {
    await withTmp(async (dir) => {
      await layout(dir, {}, { "index.json": 2 ** 40 });
      await assert.rejects(readImage(dir), (e: Error & { code?: string }) => {
        assert.equal(e.code, "EFBIG");
        assert.match(e.message, new RegExp(`^EFBIG: file too large, import '${dir}:index\\.json': this metadata file: 1099511627776 bytes \\(1048576 MiB\\), over`));
        assert.match(e.message, LIMIT_TEXT);
        return true;
      });
    });
  });

  it("OCI layout: a manifest, a config and a nested index over the limit are refused, each by name", async () => {
    await withTmp(async (dir) => {
      const big = METADATA_LIMIT + 1;
      const manifestType = "application/vnd.oci.image.manifest.v1+json";
      // The manifest itself too big.
      await layout(path.join(dir, "m"), { "index.json": indexOf([desc(manifestType, FAKE, big)]) }, { [`blobs/sha256/${FAKE}`]: big });
      await assert.rejects(readImage(path.join(dir, "m")), { code: "EFBIG", message: new RegExp(`/m:blobs/sha256/${FAKE}': this metadata file: ${big} bytes`) });
      // A small manifest naming a config too big.
      const manifest = json({ schemaVersion: 2, mediaType: manifestType, config: desc("application/vnd.oci.image.config.v1+json", FAKE, big), layers: [] });
      await layout(path.join(dir, "c"), { "index.json": indexOf([desc(manifestType, sha(manifest), manifest.length)]), [`blobs/sha256/${sha(manifest)}`]: manifest }, { [`blobs/sha256/${FAKE}`]: big });
      await assert.rejects(readImage(path.join(dir, "c")), { code: "EFBIG", message: new RegExp(`/c:blobs/sha256/${FAKE}': this metadata file`) });
      // A nested index too big.
      await layout(path.join(dir, "n"), { "index.json": indexOf([desc("application/vnd.oci.image.index.v1+json", FAKE, big)]) }, { [`blobs/sha256/${FAKE}`]: big });
      await assert.rejects(readImage(path.join(dir, "n")), { code: "EFBIG", message: new RegExp(`/n:blobs/sha256/${FAKE}'`) });
    });
  });

  it("OCI layout: nested indexes each within the limit, named again and again, are refused once they add up", async () => {
    await withTmp(async (dir) => {
      const nested = json({ schemaVersion: 2, manifests: [], annotations: { pad: "x".repeat(MiB) } });
      const d = desc("application/vnd.oci.image.index.v1+json", sha(nested), nested.length);
      await layout(dir, { "index.json": indexOf(Array(100).fill(d)), [`blobs/sha256/${sha(nested)}`]: nested });
      await assert.rejects(readImage(dir), (e: Error & { code?: string }) => {
        assert.equal(e.code, "EFBIG");
        assert.match(e.message, new RegExp(`:blobs/sha256/${sha(nested)}': the image indexes read so far: \\d+ bytes \\(4\\.\\d+ MiB\\)`));
        return true;
      });
    });
  });

  it("docker save: manifest.json over the limit, in a plain tar, is refused by its size in the index", async () => {
    await withTmp(async (dir) => {
      const file = path.join(dir, "save.tar");
      await tarFile(file, (w) => addFile(w, "manifest.json", 5 * MiB));
      await assert.rejects(readImage(file), { code: "EFBIG", message: new RegExp(`'${file}:manifest\\.json': this metadata member: 5242880 bytes \\(5 MiB\\), over the 4 MiB \\(4194304-byte\\) limit`) });
    });
  });

  it("docker save, old format, gzipped: repositories over the limit is refused, and so is a layer's json", async () => {
    await withTmp(async (dir) => {
      const a = path.join(dir, "repos.tar.gz");
      await tarFile(a, (w) => addFile(w, "repositories", 6 * MiB), true);
      await assert.rejects(readImage(a), { code: "EFBIG", message: new RegExp(`'${a}:repositories': this metadata member: 6291456 bytes`) });
      const b = path.join(dir, "layer-json.tar");
      const id = "cd".repeat(32);
      await tarFile(b, async (w) => {
        await addFile(w, "repositories", json({ evil: { latest: id } }));
        await addFile(w, `${id}/json`, 5 * MiB);
        await addFile(w, `${id}/layer.tar`, new Uint8Array(1024));
      });
      await assert.rejects(readImage(b), { code: "EFBIG", message: new RegExp(`'${b}:${id}/json': this metadata member`) });
    });
  });

  it("docker save, old format: a chain of layer JSON files, each within the limit, is refused once they add up", async () => {
    await withTmp(async (dir) => {
      const file = path.join(dir, "chain.tar");
      const ids = Array.from({ length: 8 }, (_, i) => String(i).repeat(64));
      await tarFile(file, async (w) => {
        await addFile(w, "repositories", json({ evil: { latest: ids[0] } }));
        for (let i = 0; i < ids.length; i++) {
          await addFile(w, `${ids[i]}/json`, json({ id: ids[i], ...(i + 1 < ids.length ? { parent: ids[i + 1] } : {}), pad: "x".repeat(MiB) }));
        }
      });
      await assert.rejects(readImage(file), { code: "EFBIG", message: new RegExp(`:${ids[3]}/json': the layer JSON files read so far: \\d+ bytes`) });
    });
  });
});
