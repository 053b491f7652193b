/**
 * Interchange benchmarks: layer tarballs in and out of a ImageStore, against GNU tar on
 * plain directories of the same disk (results as JSON lines, see bench/lib.ts;
 * `npm run bench -- --only interchange` runs both runtimes).
 *
 * 1. Import a rootfs tarball: `store.apply()` into a fresh active layer of a fresh store,
 *    then `store.commit()` (a pool commit: data fdatasynced, metadata switched
 *    atomically), against `tar -xf` into a fresh directory then sync(1) of the files
 *    and directories it wrote (each side makes its own files durable, nothing else). Two
 *    tarballs: the alpine minirootfs of ../shared/images (gzipped; skipped with a note if
 *    absent), and one this bench generates (≥ 200 MB, ≥ 5,000 entries: a directory tree
 *    of mostly small files, some of MBs, a few symlinks and hard links; deterministic
 *    content). 3 runs, the sides' order alternating; ratio = median of per-run
 *    tar time / thinstack time (thinstack's speed relative to tar's). Goal ≥ 0.5.
 * 2. Space after that import: pool data blocks used × block size + metadata bytes
 *    (pool.status()) against the content bytes (sum of regular-file sizes in the
 *    tarball). Goal ≤ 1.3.
 * 3. A committed 1 GiB layer (a few dozen files of 1 to 64 MiB, plus small ones; made by
 *    importImage of an OCI layout built around a generated tar, which also gives the
 *    image record exportImage needs): `store.diff()` streamed to a file, `exportImage`
 *    as OCI (gzipped layers) and as docker-save (plain tar), against `tar -cf` (and
 *    `tar -czf` for the gzipped one) of the same tree checked out to a plain directory;
 *    the diff also written by a loop of the caller's own (which keeps every chunk). And
 *    an image of 4 layers of 64 MiB exported as OCI (layers gzipped at once) against
 *    `tar -czf` of each layer's files, all at once and one after the other.
 *    MiB/s of layer content; ratio = median of per-run tar time / thinstack time.
 *    diff and tar -cf get 6 more alternating pairs: they swing most from sample to sample.
 * 4. Peak RSS of the process (process.memoryUsage().rss sampled every 50 ms) while diffing
 *    the 1 GiB layer and a 256 MiB one, right after an untimed warm-up diff: the ratio
 *    1 GiB / 256 MiB shows whether memory grows with the layer. Goal ≤ 1.1 (flat; the
 *    growth over the start, a few MiB either way, is in the row's detail: as a ratio of
 *    two such small numbers it was noise).
 *
 *   node --import tsx bench/interchange.bench.ts       deno run -A bench/interchange.bench.ts
 *   BENCH_QUICK=1 for a small, fast run (20 MB / 500 files, 64 MiB and 16 MiB layers).
 *   BENCH_SECTIONS=import or diff runs one part.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import zlib from "node:zlib";
import tarStream from "tar-stream";
import { writeChunks } from "../src/interchange/hostio.ts";
import { PARALLEL } from "../src/interchange/ociwrite.ts";
import { ImageStore } from "../src/images/mod.ts";
import {
  emit, finish, GiB, KiB, median, MiB, mibps, note, patternBytes, prng, progress, quick, repoRoot, runtime, syncAll,
  timeMs, withScratchDir,
} from "./lib.ts";

const B = "interchange";
const RUNS = 3;
/** Extra diff / tar -cf pairs after the runs (the two rows that swing most). */
const PAIRS = quick ? 2 : 6;
const ALPINE = path.join(repoRoot, "..", "shared", "images", "alpine-minirootfs-3.20.3-x86_64.tar.gz");
/** The generated rootfs: at least this many content bytes and this many files. */
const ROOTFS_BYTES = quick ? 20e6 : 220e6;
const ROOTFS_FILES = quick ? 500 : 5600;
/** The big layer and the small one of the memory comparison. */
const BIG = quick ? 64 * MiB : GiB;
const MID = quick ? 16 * MiB : 256 * MiB;
const SAMPLE_MS = 50;
/** The image of several layers: how many, and the content bytes of each. */
const MULTI_LAYERS = 4;
const MULTI_BYTES = quick ? 8 * MiB : 64 * MiB;
const STORE_DATA = 8 * GiB;

const sizeLabel = (n: number) => (n >= GiB ? `${n / GiB} GiB` : `${n / MiB} MiB`);
const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

// ---------------------------------------------------------------------------------------
// Helpers: processes, tarballs, disk usage, memory sampling.

/** Runs `cmd args`, rejecting on a non-zero exit (with its stderr). */
function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")}: exit ${code}: ${err.trim()}`))));
  });
}

/** Output of `cmd args`. */
function output(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd}: exit ${code}: ${err.trim()}`))));
  });
}

/**
 * fsyncs `paths` (relative to `dir`) and `dir` itself with sync(1), as many to a command
 * as the argument list takes: a baseline that makes its own files durable and nothing
 * else, as the pool's commit does (`sync -f` would flush the whole file system, other
 * processes' writes included).
 */
async function syncFiles(dir: string, paths: string[]): Promise<void> {
  const all = [dir, ...paths.map((p) => path.join(dir, p))];
  for (let i = 0; i < all.length;) {
    const batch: string[] = [];
    for (let chars = 0; i < all.length && chars < 100_000; i++) {
      batch.push(all[i]);
      chars += all[i].length + 1;
    }
    await run("sync", ["--", ...batch]);
  }
}

/** Writes `chunks` to a new file as a caller's own code would: one awaited FileHandle.write per chunk, chunks kept. */
async function ownLoop(file: string, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  const fh = await fs.open(file, "wx");
  try {
    for await (const c of chunks) await fh.write(c);
  } finally {
    await fh.close();
  }
}

/** Bytes `path` takes on disk (du: allocated blocks, every hard link counted once). */
async function diskUsage(p: string): Promise<number> {
  return Number((await output("du", ["-s", "-B1", p])).split(/\s/)[0]);
}

/** What a tarball holds: entries, regular files and their bytes, and what extracting it writes. */
interface TarStats {
  entries: number;
  files: number;
  contentBytes: number;
  /** Relative paths of the regular files, hard links and directories it makes (what `sync FILE...` flushes on tar's side). */
  written: string[];
}

async function tarStats(file: string): Promise<TarStats> {
  const stats: TarStats = { entries: 0, files: 0, contentBytes: 0, written: [] };
  const extract = tarStream.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      stats.entries++;
      if (header.type === "file" || header.type === "contiguous-file") {
        stats.files++;
        stats.contentBytes += header.size ?? 0;
      }
      // Symlinks are left out: sync(1) would follow them (out of the tree, for absolute ones).
      if (["file", "contiguous-file", "link", "directory"].includes(header.type ?? "")) stats.written.push(header.name);
      stream.on("end", next);
      stream.resume();
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  const head = new Uint8Array(2);
  const fh = await fs.open(file);
  await fh.read(head, 0, 2, 0);
  await fh.close();
  const src = createReadStream(file);
  if (head[0] === 0x1f && head[1] === 0x8b) src.pipe(zlib.createGunzip()).pipe(extract);
  else src.pipe(extract);
  await done;
  return stats;
}

/** One file of a generated tarball. */
type GenEntry =
  | { type: "dir"; name: string }
  | { type: "file"; name: string; size: number; seed: number }
  | { type: "symlink" | "link"; name: string; linkname: string };

const MTIME = new Date(1_700_000_000_000);
type FileEntry = Extract<GenEntry, { type: "file" }>;

/** Adds one regular file to `pack`, its bytes in 1 MiB chunks, waiting whenever the pack is full. */
function fileEntry(pack: tarStream.Pack, base: { name: string; mtime: Date; uid: number; gid: number }, e: FileEntry): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const sink = pack.entry({ ...base, type: "file", size: e.size, mode: 0o644 }, (err) => (err ? reject(err) : resolve()));
    (async () => {
      for (let at = 0, k = 0; at < e.size; at += MiB, k++) {
        const n = Math.min(MiB, e.size - at);
        if (!sink.write(patternBytes(n, (e.seed * 4099 + k) >>> 0 || 1))) {
          await new Promise<void>((r) => sink.once("drain", () => r()));
        }
      }
      (sink as unknown as { end(): void }).end();
    })().catch(reject);
  });
}

/**
 * Writes `entries` as a tar at `file` with tar-stream, content streamed in 1 MiB chunks
 * of seeded bytes (backpressure all the way to the file). Returns the tar's sha256 and size.
 */
async function writeGenTar(file: string, entries: GenEntry[]): Promise<{ digest: string; size: number }> {
  const pack = tarStream.pack();
  const hash = createHash("sha256");
  const fh = await fs.open(file, "w");
  let size = 0;
  const produce = async () => {
    try {
      for (const e of entries) {
        const base = { name: e.name, mtime: MTIME, uid: 0, gid: 0 };
        if (e.type === "dir") {
          pack.entry({ ...base, type: "directory", mode: 0o755 });
        } else if (e.type === "symlink" || e.type === "link") {
          pack.entry({ ...base, type: e.type, linkname: e.linkname, mode: 0o777 });
        } else {
          await fileEntry(pack, base, e as FileEntry);
        }
      }
      pack.finalize();
    } catch (e) {
      pack.destroy(e as Error);
    }
  };
  const consume = async () => {
    for await (const chunk of pack as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      size += chunk.byteLength;
      for (let at = 0; at < chunk.byteLength;) at += (await fh.write(chunk, at, chunk.byteLength - at)).bytesWritten;
    }
  };
  try {
    await Promise.all([produce(), consume()]);
  } finally {
    await fh.close();
  }
  return { digest: `sha256:${hash.digest("hex")}`, size };
}

/** A size from `lo` to `hi`, log-uniform. */
const logUniform = (rnd: () => number, lo: number, hi: number) => Math.round(Math.exp(Math.log(lo) + rnd() * (Math.log(hi) - Math.log(lo))));

/**
 * A rootfs-like tree: ~40 directories up to 4 deep; 88% small files (16 B..16 KiB), 12%
 * medium (16..512 KiB), then files of 1..12 MiB until `bytes` is reached; 20 symlinks
 * and 20 hard links.
 */
function rootfsEntries(bytes: number, files: number, seed: number): GenEntry[] {
  const rnd = prng(seed);
  const dirs = ["usr", "usr/lib", "usr/bin", "usr/share", "etc", "var", "var/lib", "opt"];
  const dirCount = Math.max(12, Math.round(files / 140));
  while (dirs.length < dirCount) {
    const parent = dirs[Math.floor(rnd() * dirs.length)];
    if (parent.split("/").length >= 4) continue;
    dirs.push(`${parent}/d${dirs.length}`);
  }
  const out: GenEntry[] = dirs.map((name) => ({ type: "dir", name }));
  const regular: string[] = [];
  let total = 0;
  let n = 0;
  const add = (size: number) => {
    const dir = dirs[Math.floor(rnd() * dirs.length)];
    const name = `${dir}/f${n}`;
    out.push({ type: "file", name, size, seed: seed * 1_000_003 + n });
    regular.push(name);
    total += size;
    n++;
  };
  for (let i = 0; i < files; i++) add(rnd() < 0.88 ? logUniform(rnd, 16, 16 * KiB) : logUniform(rnd, 16 * KiB, 512 * KiB));
  while (total < bytes) add(Math.min(logUniform(rnd, MiB, 12 * MiB), Math.max(MiB, bytes - total)));
  for (let i = 0; i < 20; i++) {
    out.push({ type: "symlink", name: `${dirs[i % dirs.length]}/sym${i}`, linkname: `/${regular[Math.floor(rnd() * regular.length)]}` });
    out.push({ type: "link", name: `${dirs[(i + 3) % dirs.length]}/hard${i}`, linkname: regular[Math.floor(rnd() * regular.length)] });
  }
  return out;
}

/** A layer of `bytes`: files of 1..64 MiB (capped to what is left) in a few directories, plus 200 small files. */
function layerEntries(bytes: number, seed: number): GenEntry[] {
  const rnd = prng(seed);
  const dirs = ["data", "data/a", "data/b", "data/c", "small"];
  const out: GenEntry[] = dirs.map((name) => ({ type: "dir", name }));
  let total = 0;
  let n = 0;
  const small = Math.min(200, Math.round(bytes / (5 * MiB)));
  for (let i = 0; i < small; i++, n++) {
    const size = logUniform(rnd, 16, 64 * KiB);
    out.push({ type: "file", name: `small/s${n}`, size, seed: seed * 1_000_003 + n });
    total += size;
  }
  const top = quick ? 8 * MiB : 64 * MiB;
  while (total < bytes) {
    const size = Math.min(logUniform(rnd, MiB, top), bytes - total);
    out.push({ type: "file", name: `${dirs[1 + Math.floor(rnd() * 3)]}/f${n}`, size, seed: seed * 1_000_003 + n });
    total += size;
    n++;
  }
  return out;
}

/** Peak RSS while something runs: sampled every 50 ms (and at start and stop). */
class RssSampler {
  readonly start = process.memoryUsage().rss;
  #peak = this.start;
  readonly #timer = setInterval(() => this.#sample(), SAMPLE_MS);
  #sample(): void {
    this.#peak = Math.max(this.#peak, process.memoryUsage().rss);
  }
  /** Stops; the peak and its growth over the start. */
  stop(): { peak: number; growth: number } {
    this.#sample();
    clearInterval(this.#timer);
    return { peak: this.#peak, growth: this.#peak - this.start };
  }
}

/** An OCI layout around layer tars (hard-linked in as uncompressed layer blobs, bottom first). */
async function ociLayout(dir: string, layers: { tar: string; digest: string; size: number }[], ref: string): Promise<void> {
  const blobs = path.join(dir, "blobs", "sha256");
  await fs.mkdir(blobs, { recursive: true });
  for (const l of layers) await fs.link(l.tar, path.join(blobs, l.digest.slice(7)));
  const blob = async (value: unknown) => {
    const bytes = new TextEncoder().encode(JSON.stringify(value));
    const d = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    await fs.writeFile(path.join(blobs, d.slice(7)), bytes);
    return { digest: d, size: bytes.byteLength };
  };
  const config = await blob({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) } });
  const manifest = await blob({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: l.digest, size: l.size })),
  });
  await fs.writeFile(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await fs.writeFile(path.join(dir, "index.json"), JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [{
      mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifest,
      annotations: { "org.opencontainers.image.ref.name": ref },
      platform: { architecture: "amd64", os: "linux" },
    }],
  }));
}

// ---------------------------------------------------------------------------------------
// 1 and 2: import.

/**
 * Starts a store's I/O workers (the pool keeps one thread and starts a second when tasks
 * queue up) with a throwaway layer, removed again: a store that has done some I/O, as a
 * long-lived one has, without leaving anything in it.
 */
async function warmStore(store: ImageStore): Promise<void> {
  await store.prepare("warm-up");
  const f = store.fs("warm-up");
  const bytes = patternBytes(256 * KiB, 3);
  await Promise.all(Array.from({ length: 8 }, (_, i) => f.writeFile(`/w${i}`, bytes)));
  await Promise.all(Array.from({ length: 8 }, (_, i) => f.readFile(`/w${i}`)));
  await store.remove("warm-up");
  await store.sync();
}

/** Imports `tarball` into a fresh store at `storeDir` (warmed up, not timed), timing apply + commit; then removes the store. */
async function thinImport(storeDir: string, tarball: string): Promise<{ ms: number; data: number; meta: number; metaDu: number }> {
  const store = await ImageStore.open(storeDir, { create: true, dataSize: STORE_DATA });
  let ms: number;
  let data: number;
  let meta: number;
  try {
    await warmStore(store);
    await store.prepare("extract");
    syncAll();
    ms = await timeMs(async () => {
      await store.apply("extract", tarball);
      await store.commit("rootfs", "extract");
    });
    const st = store.pool.status();
    data = st.dataBlocks.used * st.blockSize;
    meta = st.metadataBytes.used;
  } finally {
    await store.close();
  }
  const metaDu = await diskUsage(path.join(storeDir, "metadata"));
  await fs.rm(storeDir, { recursive: true, force: true });
  return { ms, data, meta, metaDu };
}

async function importTarball(dir: string, label: string, tarball: string, stats: TarStats): Promise<void> {
  const thin: number[] = [];
  const plain: number[] = [];
  const plainSync: number[] = [];
  const ratios: number[] = [];
  const data: number[] = [];
  const meta: number[] = [];
  const metaDu: number[] = [];
  const tarDu: number[] = [];
  // One untimed import first, in this process's first store of this tarball: it pays the JIT and module loading.
  const cold = (await thinImport(path.join(dir, "store-warm"), tarball)).ms;
  progress(`import ${label}, untimed warm-up: ${(cold / 1000).toFixed(2)} s`);
  for (let r = 0; r < RUNS; r++) {
    let t = 0;
    let p = 0;
    for (const side of r % 2 ? ["tar", "thinstack"] : ["thinstack", "tar"]) {
      if (side === "thinstack") {
        const storeDir = path.join(dir, `store-${r}`);
        const got = await thinImport(storeDir, tarball);
        t = got.ms;
        data.push(got.data);
        meta.push(got.meta);
        metaDu.push(got.metaDu);
      } else {
        const target = path.join(dir, `tar-${r}`);
        await fs.mkdir(target);
        syncAll();
        let syncMs = 0;
        p = await timeMs(async () => {
          await run("tar", ["-xf", tarball, "-C", target]);
          syncMs = await timeMs(() => syncFiles(target, stats.written));
        });
        plainSync.push(syncMs);
        tarDu.push(await diskUsage(target));
        await fs.rm(target, { recursive: true, force: true });
      }
    }
    thin.push(t);
    plain.push(p);
    ratios.push(p / t);
    progress(`import ${label} ${r + 1}/${RUNS}: thinstack ${(t / 1000).toFixed(2)} s, tar ${(p / 1000).toFixed(2)} s, ` +
      `pool ${mb(data[r])} + metadata ${mb(meta[r])} for ${mb(stats.contentBytes)} of content`);
  }
  const content = stats.contentBytes;
  emit({
    bench: B, name: `import ${label}: apply + commit vs tar -x + sync of the extracted files`,
    value: mibps(content, median(thin)), unit: "MiB/s", baseline: mibps(content, median(plain)), baselineLabel: "tar -x",
    ratio: median(ratios), goal: "≥ 0.5",
    detail: `${stats.entries.toLocaleString("en")} entries, ${stats.files.toLocaleString("en")} regular files, ${mb(content)} of content (MiB/s of content); ` +
      `median of ${RUNS} runs ${(median(thin) / 1000).toFixed(2)} s vs ${(median(plain) / 1000).toFixed(2)} s ` +
      `(of which sync(1) of the ${stats.written.length.toLocaleString("en")} files and directories tar wrote: ${(median(plainSync) / 1000).toFixed(2)} s); ratio = median of per-run tar time / thinstack time; ` +
      `the untimed warm-up import before the runs took ${(cold / 1000).toFixed(2)} s`,
  });
  const used = data.map((d, i) => d + meta[i]);
  emit({
    bench: B, name: `space after import ${label}: pool data + metadata vs content bytes`,
    value: median(used) / MiB, unit: "MiB", baseline: content / MiB, baselineLabel: "content",
    ratio: median(used) / content, goal: "≤ 1.3",
    detail: `pool data ${mb(median(data))} (used blocks × block size) + metadata ${mb(median(meta))} (status().metadataBytes.used; ` +
      `du of metadata/ ${mb(median(metaDu))}); tar -x's tree takes ${mb(median(tarDu))} on disk (du)`,
  });
}

async function importSection(): Promise<void> {
  note(B, `Import: each run opens a fresh store and warms its I/O threads with a throwaway layer (not timed), then times store.apply() of the tarball into a fresh active layer plus ` +
    `store.commit() (a pool commit: data fdatasynced, metadata switched atomically); tar's side times tar -xf into a fresh ` +
    `directory plus sync(1) of exactly the regular files, hard links and directories it wrote (fsync of each, as the pool fsyncs its own files; ` +
    `sync -f, which this row used before, flushed the whole file system, other processes' writes included). A sync(1) before each side keeps one side's writeback off the other's clock. ` +
    `${RUNS} runs, sides alternating in order, after one untimed thinstack import of the same tarball (JIT, module loading). Space counts pool data blocks × block size plus metadata bytes against the sum of ` +
    `regular-file sizes; files of up to 2 KiB are kept inline in the layer's metadata, larger ones in 4 KiB pages of the layer's device.`);
  await withScratchDir(B, "import", async (dir) => {
    if (existsSync(ALPINE)) {
      const stats = await tarStats(ALPINE);
      await importTarball(dir, "alpine 3.20 minirootfs (gzip)", ALPINE, stats);
    } else {
      note(B, `The alpine row is skipped: ${ALPINE} is absent.`);
      progress(`skipping alpine: ${ALPINE} is absent`);
    }
    const tarball = path.join(dir, "rootfs.tar");
    progress(`generating a ${mb(ROOTFS_BYTES)} rootfs tarball`);
    const entries = rootfsEntries(ROOTFS_BYTES, ROOTFS_FILES, 2026);
    const { size } = await writeGenTar(tarball, entries);
    const stats = await tarStats(tarball);
    progress(`rootfs.tar: ${mb(size)}, ${stats.entries} entries, ${stats.files} regular files, ${mb(stats.contentBytes)} content`);
    await importTarball(dir, `generated rootfs (${quick ? "20" : "220"} MB)`, tarball, stats);
    await fs.rm(tarball, { force: true });
  });
}

// ---------------------------------------------------------------------------------------
// 3 and 4: diff and export of a big committed layer.

async function diffSection(): Promise<void> {
  await withScratchDir(B, "diff", async (dir) => {
    const store = await ImageStore.open(path.join(dir, "store"), { create: true, dataSize: STORE_DATA });
    try {
      const tops: Record<string, string> = {};
      for (const [name, bytes, seed] of [["big", BIG, 11], ["mid", MID, 12]] as const) {
        const entries = layerEntries(bytes, seed);
        const tar = path.join(dir, `${name}.tar`);
        progress(`generating the ${sizeLabel(bytes)} layer tarball (${entries.length} entries)`);
        const { digest, size } = await writeGenTar(tar, entries);
        const layout = path.join(dir, `${name}-oci`);
        await ociLayout(layout, [{ tar, digest, size }], name);
        syncAll();
        const ms = await timeMs(async () => {
          const { layers } = await store.importImage(layout, { name });
          tops[name] = layers[layers.length - 1];
        });
        progress(`importImage ${sizeLabel(bytes)}: ${(ms / 1000).toFixed(2)} s (${mibps(bytes, ms).toFixed(0)} MiB/s)`);
        if (name === "big") {
          emit({
            bench: B, name: `importImage of a ${sizeLabel(bytes)} single-layer OCI layout (uncompressed layer, digests checked)`,
            value: mibps(bytes, ms), unit: "MiB/s",
            detail: `${entries.length} entries; one run, includes the layer commit; setup for the rows below`,
          });
        }
        await fs.rm(layout, { recursive: true, force: true });
        await fs.rm(tar, { force: true });
      }
      const big = tops.big;
      const mid = tops.mid;

      // An image of several layers, each adding files of its own under a directory of its own;
      // for tar's side each layer's files are extracted to a directory of their own.
      const multiTrees: string[] = [];
      {
        const layers: { tar: string; digest: string; size: number }[] = [];
        for (let i = 0; i < MULTI_LAYERS; i++) {
          const top = `l${i}`;
          const entries: GenEntry[] = [{ type: "dir", name: top }, ...layerEntries(MULTI_BYTES, 20 + i).map((e) => ({ ...e, name: `${top}/${e.name}` }))];
          const tar = path.join(dir, `multi-${i}.tar`);
          layers.push({ tar, ...await writeGenTar(tar, entries) });
          const t = path.join(dir, `multi-tree-${i}`);
          await fs.mkdir(t);
          await run("tar", ["-xf", tar, "-C", t]);
          multiTrees.push(t);
        }
        const layout = path.join(dir, "multi-oci");
        await ociLayout(layout, layers, "multi");
        await store.importImage(layout, { name: "multi" });
        await fs.rm(layout, { recursive: true, force: true });
        for (const l of layers) await fs.rm(l.tar, { force: true });
        progress(`imported a ${MULTI_LAYERS}-layer image of ${sizeLabel(MULTI_LAYERS * MULTI_BYTES)}`);
      }
      const tarEach = async (parallel: boolean) => {
        await fs.mkdir(out("multi-tgz"));
        const one = (t: string, i: number) => run("tar", ["-czf", path.join(out("multi-tgz"), `${i}.tgz`), "-C", t, "."]);
        if (parallel) await Promise.all(multiTrees.map(one));
        else for (const [i, t] of multiTrees.entries()) await one(t, i);
      };

      const tree = path.join(dir, "tree");
      syncAll();
      const coMs = await timeMs(() => store.checkout(big, tree));
      progress(`checkout ${sizeLabel(BIG)}: ${(coMs / 1000).toFixed(2)} s`);
      emit({ bench: B, name: `checkout of the ${sizeLabel(BIG)} layer to a plain directory`, value: mibps(BIG, coMs), unit: "MiB/s", detail: "one run, no sync; the tree tar -cf reads below" });
      syncAll();

      const out = (n: string) => path.join(dir, n);
      type Side = { label: string; fn: () => Promise<void>; clean: string; mem?: "big" | "mid" | "oci" };
      const sides: Side[] = [
        { label: "diff", fn: async () => void await writeChunks(out("diff.tar"), store.diff(big)), clean: out("diff.tar"), mem: "big" },
        { label: "diff, own loop", fn: () => ownLoop(out("diff-own.tar"), store.diff(big)), clean: out("diff-own.tar") },
        { label: "diff-mid", fn: async () => void await writeChunks(out("diff-mid.tar"), store.diff(mid)), clean: out("diff-mid.tar"), mem: "mid" },
        { label: "oci", fn: async () => void await store.exportImage("big", out("export-oci"), { format: "oci" }), clean: out("export-oci"), mem: "oci" },
        { label: "docker", fn: async () => void await store.exportImage("big", out("export-docker.tar"), { format: "docker" }), clean: out("export-docker.tar") },
        { label: "tar -cf", fn: () => run("tar", ["-cf", out("tar.tar"), "-C", tree, "."]), clean: out("tar.tar") },
        { label: "tar -czf", fn: () => run("tar", ["-czf", out("tar.tgz"), "-C", tree, "."]), clean: out("tar.tgz") },
        { label: "oci multi", fn: async () => void await store.exportImage("multi", out("export-multi"), { format: "oci" }), clean: out("export-multi") },
        { label: "tar -czf each, at once", fn: () => tarEach(true), clean: out("multi-tgz") },
        { label: "tar -czf each, in turn", fn: () => tarEach(false), clean: out("multi-tgz") },
      ];
      const ms: Record<string, number[]> = Object.fromEntries(sides.map((s) => [s.label, []]));
      const mem: Record<string, { peak: number; growth: number }[]> = { big: [], mid: [], oci: [] };
      const sizes: Record<string, number> = {};
      for (let r = 0; r < RUNS; r++) {
        // Rotate the order of the sides from run to run.
        const order = sides.map((_, i) => sides[(i + r * 2) % sides.length]);
        if (r % 2) order.reverse();
        for (const s of order) {
          // A diff's memory is measured over a baseline taken after an untimed warm-up diff
          // (the chunk pool, the workers' buffers and the JIT already there), so what is left
          // is what grows with the layer.
          if (s.mem === "big" || s.mem === "mid") {
            await writeChunks(out("warm.tar"), store.diff(mid));
            await fs.rm(out("warm.tar"), { force: true });
            (globalThis as { gc?: () => void }).gc?.(); // bench.mjs runs Node with --expose-gc
          }
          syncAll();
          const sampler = s.mem ? new RssSampler() : undefined;
          const t = await timeMs(s.fn);
          if (sampler) mem[s.mem!].push(sampler.stop());
          ms[s.label].push(t);
          sizes[s.label] = await diskUsage(s.clean);
          await fs.rm(s.clean, { recursive: true, force: true });
        }
        progress(`diff/export ${r + 1}/${RUNS}: ` + sides.map((s) => `${s.label} ${(ms[s.label][r] / 1000).toFixed(2)} s`).join(", ") +
          `; peak RSS growth diff ${sizeLabel(BIG)} ${mb(mem.big[r].growth)}, ${sizeLabel(MID)} ${mb(mem.mid[r].growth)}`);
      }
      // diff and tar -cf each take 1-3 s and swing 2-3x from one sample to the next with the
      // page cache and writeback state the operation before left, so they get more samples:
      // extra pairs, alternating which goes first.
      const pair = { diff: [] as number[], tar: [] as number[] };
      for (let p = 0; p < PAIRS; p++) {
        const two = [["diff", sides[0]], ["tar", sides.find((s) => s.label === "tar -cf")!]] as const;
        for (const [k, s] of p % 2 ? [...two].reverse() : two) {
          syncAll();
          pair[k].push(await timeMs(s.fn));
          await fs.rm(s.clean, { recursive: true, force: true });
        }
      }
      progress(`diff/tar -cf pairs: ` + pair.diff.map((d, i) => `${(d / 1000).toFixed(2)}/${(pair.tar[i] / 1000).toFixed(2)} s`).join(", "));
      const diffMs = [...ms["diff"], ...pair.diff];
      const tarMs = [...ms["tar -cf"], ...pair.tar];
      const rate = (label: string, bytes = BIG) => mibps(bytes, median(ms[label]));
      const ratio = (base: string, thin: string) => median(ms[base].map((b, i) => b / ms[thin][i]));
      const runs = `${RUNS} runs, the order of the ${sides.length} timed operations rotating from run to run, sync(1) before each; MiB/s of layer content`;
      emit({
        bench: B, name: `diff of a ${sizeLabel(BIG)} layer streamed to a file vs tar -cf of its checkout`,
        value: mibps(BIG, median(diffMs)), unit: "MiB/s", baseline: mibps(BIG, median(tarMs)), baselineLabel: "tar -cf",
        ratio: median(tarMs.map((t, i) => t / diffMs[i])), goal: "≥ 0.8",
        detail: `${runs}, then ${PAIRS} more diff / tar -cf pairs (which goes first alternating); ratio = median of the ${diffMs.length} per-pair ratios; ` +
          `diff tar ${mb(sizes["diff"])}, tar -cf output ${mb(sizes["tar -cf"])}`,
      });
      emit({
        bench: B, name: `diff of a ${sizeLabel(BIG)} layer, written by a loop of the caller's own (chunks kept, not given back) vs tar -cf of its checkout`,
        value: rate("diff, own loop"), unit: "MiB/s", baseline: rate("tar -cf"), baselineLabel: "tar -cf", ratio: ratio("tar -cf", "diff, own loop"),
        detail: "the same diff() stream written with fs.promises FileHandle.write, one chunk at a time: every 1 MiB chunk is then a new buffer (writeChunks gives each back for reuse)",
      });
      emit({
        bench: B, name: `exportImage oci (gzip level 6) of the ${sizeLabel(BIG)} layer vs tar -cf of its checkout`,
        value: rate("oci"), unit: "MiB/s", baseline: rate("tar -cf"), baselineLabel: "tar -cf", ratio: ratio("tar -cf", "oci"),
        detail: `${runs}; the layout takes ${mb(sizes["oci"])} (the content is random, gzip saves nothing); peak RSS growth ${mb(median(mem.oci.map((m) => m.growth)))}`,
      });
      emit({
        bench: B, name: `exportImage oci (gzip level 6) of the ${sizeLabel(BIG)} layer vs tar -czf of its checkout`,
        value: rate("oci"), unit: "MiB/s", baseline: rate("tar -czf"), baselineLabel: "tar -czf", ratio: ratio("tar -czf", "oci"), goal: "≥ 0.9",
        detail: "both sides gzip at level 6 (the parallel layer gzip, 1 MiB blocks on every core, vs gzip(1) in a second process)",
      });
      const multi = MULTI_LAYERS * MULTI_BYTES;
      emit({
        bench: B, name: `exportImage oci (gzip level 6) of a ${MULTI_LAYERS}-layer image (${sizeLabel(multi)}) vs tar -czf of each layer's files, all at once`,
        value: rate("oci multi", multi), unit: "MiB/s", baseline: rate("tar -czf each, at once", multi), baselineLabel: "tar -czf × 4 at once",
        ratio: ratio("tar -czf each, at once", "oci multi"), goal: "≥ 0.9",
        detail: `layers of ${sizeLabel(MULTI_BYTES)} each (random content); thinstack gzips up to ${Math.min(PARALLEL, MULTI_LAYERS)} layers at once (one per core, up to 4); ` +
          `the baseline runs one tar -czf per layer directory, all at once (every core busy on both sides); one after the other they ran at ${rate("tar -czf each, in turn", multi).toFixed(1)} MiB/s ` +
          `(ratio ${ratio("tar -czf each, in turn", "oci multi").toFixed(2)})`,
      });
      emit({
        bench: B, name: `exportImage docker (plain tar) of the ${sizeLabel(BIG)} layer vs tar -cf of its checkout`,
        value: rate("docker"), unit: "MiB/s", baseline: rate("tar -cf"), baselineLabel: "tar -cf", ratio: ratio("tar -cf", "docker"),
        detail: `archive ${mb(sizes["docker"])}`,
      });
      const growth = (k: string) => median(mem[k].map((m) => m.growth));
      const peak = (k: string) => median(mem[k].map((m) => m.peak));
      emit({
        bench: B, name: `peak RSS of the process during diff, ${sizeLabel(BIG)} vs ${sizeLabel(MID)} layer (flat: ratio large / small)`,
        value: peak("big") / MiB, unit: "MiB", baseline: peak("mid") / MiB, baselineLabel: sizeLabel(MID),
        ratio: peak("big") / peak("mid"), goal: "≤ 1.1",
        detail: `process.memoryUsage().rss sampled every ${SAMPLE_MS} ms during each diff, right after an untimed warm-up diff of the ${sizeLabel(MID)} layer; medians of ${RUNS} runs; ` +
          `a diff that held its layer would add ~${sizeLabel(BIG - MID)} on the large side. Growth over the RSS at the diff's start: ${mb(growth("big"))} (${sizeLabel(BIG)}) and ${mb(growth("mid"))} (${sizeLabel(MID)}), ` +
          `bounded by the 8 spare 1 MiB chunks, the 2 MiB the tar writer runs ahead and the read-ahead windows; ${sizeLabel(MID)} diff at ${rate("diff-mid", MID).toFixed(0)} MiB/s`,
      });
      note(B, `Diff/export: a ${sizeLabel(BIG)} layer (files of 1 to ${quick ? 8 : 64} MiB plus small ones, random content) imported with ` +
        `importImage from an OCI layout the bench builds around a generated tar, then checked out to a plain directory for tar's side. ` +
        `diff() goes to a file through the library's own writer (src/interchange/hostio.ts), exportImage writes what it writes; ` +
        `nothing is fsynced on either side.`);
    } finally {
      await store.close();
    }
  });
}

const sections = process.env.BENCH_SECTIONS?.split(",") ?? ["import", "diff"];
progress(`interchange bench under ${runtime}${quick ? " (quick)" : ""}`);
if (sections.includes("import")) await importSection();
if (sections.includes("diff")) await diffSection();
finish("Interchange");
