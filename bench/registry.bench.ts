/**
 * Registry benchmarks: pull and push of a multi-layer image (~200 MB of content, four
 * layers) against Debian's docker-registry on
 * loopback, side by side with skopeo and umoci (results as JSON lines, see bench/lib.ts).
 * Content: half random bytes, half binary-like (gzip halves it).
 *
 * 1. Pull into a ready-to-use layer: `store.pull()` into a fresh store (downloads,
 *    gunzips, checks digests and applies in one pass, commits) vs `skopeo copy
 *    docker://… oci:DIR` followed by `umoci unpack` (two passes). Ratio = their time /
 *    thinstack's. Goal ≥ 1.
 * 2. Push: `store.push()` (makes each layer's changeset and gzips it, level 6, as it
 *    uploads) vs `skopeo copy oci:DIR docker://…` of the same image exported beforehand
 *    (skopeo sends blobs already gzipped). Each run pushes to a fresh registry, so no
 *    side finds blobs there or mounts them. Ratio = skopeo's time / thinstack's. Goal ≥ 0.8.
 *    Measured three ways: a first push (no blob kept: it gzips as it goes), the push right
 *    after it, which sends the gzipped blobs the first one kept (PushOptions.keepBlobs),
 *    and a push of the image as another store pulled it (the registry's blobs, kept by
 *    the pull: PullOptions.keepBlobs).
 *    Also shown: gzip level 1 and plain tars, and push against its floor (the same
 *    changesets through the same gzip, level 6, three layers at once, drained: push minus
 *    the network).
 * 3. A second pull of an image sharing the base (the big image plus one layer): blob
 *    bytes counted at a loopback proxy vs the new layer's and config's sizes. Goal: only
 *    those (ratio 1).
 *
 *   node --import tsx bench/registry.bench.ts      deno run -A bench/registry.bench.ts
 *   BENCH_QUICK=1: a 20 MB image.   Skips (with a note) when docker-registry, skopeo or umoci is absent.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { gzip } from "../src/interchange/gzip.ts";
import { ImageStore } from "../src/images/mod.ts";
import { startProxy } from "../test/registry/proxy.ts";
import { run, startRegistry, type TestRegistry } from "../test/registry/registry.ts";
import { emit, finish, median, MiB, mibps, note, patternBytes, prng, progress, quick, runtime, syncAll, timeMs, withScratchDir } from "./lib.ts";

const B = "registry";
const RUNS = quick ? 2 : 3;
const TOTAL = quick ? 20e6 : 200e6;
/** Shares of the content per layer, bottom first. */
const SHARES = [0.5, 0.25, 0.15, 0.1];
const opts = { plainHttp: true };

const has = (cmd: string) => spawnSync(cmd, ["--version"], { stdio: "ignore" }).status === 0;

/**
 * Binary-like bytes: random runs and zero runs of up to 256 bytes, which gzip halves at
 * about the speed it passes random bytes (synthetic text of few words makes level 6
 * crawl, which real layers do not).
 */
function binaryBytes(n: number, seed: number): Uint8Array {
  const rnd = prng(seed);
  const noise = patternBytes(n, seed);
  const out = new Uint8Array(n);
  for (let at = 0; at < n;) {
    const run = Math.floor(rnd() * 256);
    if (rnd() < 0.5) out.set(noise.subarray(at, Math.min(n, at + run)), at);
    at += run;
  }
  return out;
}

/** Fills layer `key` with files summing to `bytes`: sizes 64 KiB to 8 MiB, half random, half binary-like. */
async function fill(store: ImageStore, key: string, bytes: number, seed: number): Promise<number> {
  const rnd = prng(seed);
  const fsx = store.fs(key);
  let done = 0;
  for (let i = 0; done < bytes; i++) {
    const size = Math.min(bytes - done, Math.floor(64 * 1024 + rnd() * rnd() * 8 * MiB));
    const dir = `/d${seed}/${i % 16}`;
    await fsx.mkdir(dir, { recursive: true });
    await fsx.writeFile(`${dir}/f${i}`, i % 2 ? patternBytes(size, seed * 1000 + i) : binaryBytes(size, seed * 1000 + i));
    done += size;
  }
  return done;
}

/** Runs `fn` on every item, three at a time (push's default concurrency). */
async function eachThree<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all([0, 1, 2].map(async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

async function timed(label: string, fn: () => Promise<unknown>): Promise<number> {
  syncAll();
  const ms = await timeMs(fn);
  progress(`${label}: ${(ms / 1000).toFixed(2)} s`);
  return ms;
}

async function main(): Promise<void> {
  const missing = ["docker-registry", "skopeo", "umoci"].filter((c) => !has(c));
  if (missing.length) {
    note(B, `Skipped: ${missing.join(", ")} not installed.`);
    return;
  }
  await withScratchDir(B, "all", async (dir) => {
    // The image: four layers made through the store's fs, recorded with createImage.
    const maker = await ImageStore.open(path.join(dir, "maker"), { create: true, dataSize: 4 * 2 ** 30, baseSize: 2 ** 30 });
    let content = 0;
    let parent: string | undefined;
    for (const [i, share] of SHARES.entries()) {
      await maker.prepare(`l${i}-x`, parent);
      content += await fill(maker, `l${i}-x`, TOTAL * share, i + 1);
      await maker.commit(`l${i}`, `l${i}-x`);
      parent = `l${i}`;
    }
    await maker.createImage("big", "l3", { config: { created: "2026-01-01T00:00:00Z" } });
    await maker.prepare("extra-x", "l3");
    await fill(maker, "extra-x", TOTAL * 0.05, 9);
    await maker.commit("extra", "extra-x");
    await maker.createImage("big+1", "extra", { config: { created: "2026-01-01T00:00:00Z" } });
    const layout = path.join(dir, "big-oci");
    const exported = await maker.exportImage("big", layout, { ref: "big" });
    const blobBytes = exported.layers.reduce((n, l) => n + l.size, 0);
    progress(`image: ${(content / 1e6).toFixed(0)} MB of content in ${SHARES.length} layers, ${(blobBytes / 1e6).toFixed(0)} MB gzipped`);

    // 1. Pull.
    const pulled = await ImageStore.open(path.join(dir, "pulled"), { create: true, dataSize: 4 * 2 ** 30, baseSize: 2 ** 30 });
    let reg: TestRegistry = await startRegistry();
    try {
      run("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", `oci:${layout}:big`, `docker://${reg.host}/bench/big:1`]);
      const ours: number[] = [];
      const theirs: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        const sides = [
          async () => {
            const root = path.join(dir, `pull-${r}`);
            const store = await ImageStore.open(root, { create: true, dataSize: 4 * 2 ** 30, baseSize: 2 ** 30 });
            try {
              ours.push(await timed(`thinstack pull ${r + 1}`, () => store.pull(`${reg.host}/bench/big:1`, opts)));
            } finally {
              await store.close();
              await fs.rm(root, { recursive: true, force: true });
            }
          },
          async () => {
            const oci = path.join(dir, `skopeo-${r}`);
            const bundle = path.join(dir, `bundle-${r}`);
            theirs.push(await timed(`skopeo copy + umoci unpack ${r + 1}`, () => {
              run("skopeo", ["copy", "--quiet", "--src-tls-verify=false", `docker://${reg.host}/bench/big:1`, `oci:${oci}:t`]);
              run("umoci", ["unpack", "--image", `${oci}:t`, bundle]);
              return Promise.resolve();
            }));
            await fs.rm(oci, { recursive: true, force: true });
            await fs.rm(bundle, { recursive: true, force: true });
          },
        ];
        for (const side of r % 2 ? sides.reverse() : sides) await side();
      }
      // One more pull, kept open: its blobs (kept by default) are what a push of a pulled image sends.
      await pulled.pull(`${reg.host}/bench/big:1`, { ...opts, name: "big" });
      emit({
        bench: B, name: `pull of a ${SHARES.length}-layer image (${(TOTAL / 1e6).toFixed(0)} MB) into a ready layer vs skopeo copy + umoci unpack`,
        value: mibps(content, median(ours)), unit: "MiB/s", baseline: mibps(content, median(theirs)), baselineLabel: "skopeo+umoci",
        ratio: median(theirs.map((t, i) => t / ours[i])), goal: "≥ 1",
        detail: `MiB/s of layer content; ${RUNS} runs, order alternating, sync(1) before each; ${(blobBytes / 1e6).toFixed(0)} MB of gzipped blobs on loopback; thinstack's time includes the store commit and keeping the blobs (PullOptions.keepBlobs, default on), umoci's no fsync`,
      });
    } finally {
      await reg.stop();
    }

    // 2. Push, each run and each side to a fresh registry.
    const pushOnce = async (label: string, level: number | undefined, keepBlobs = true, from = maker): Promise<number> => {
      const fresh = await startRegistry();
      try {
        return await timed(label, () =>
          level === undefined
            ? Promise.resolve(run("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", `oci:${layout}:big`, `docker://${fresh.host}/bench/big:1`]))
            : from.push("big", `${fresh.host}/bench/big:1`, { ...opts, keepBlobs, ...(level === 0 ? { gzip: false } : { gzipLevel: level }) }));
      } finally {
        await fresh.stop();
      }
    };
    // A first push: no blob kept by an earlier one (the records still name them, the files are gone).
    const dropKept = () => fs.rm(path.join(maker.pool.dir, "blobs"), { recursive: true, force: true });
    // What push does minus the network: each layer's changeset gzipped at level 6, 3 layers at once, drained.
    const layers = SHARES.map((_, i) => `l${i}`);
    const drain = async (chunks: AsyncIterable<Uint8Array>) => {
      for await (const _ of chunks);
    };
    const gzipFloor = () => eachThree(layers, (l) => drain(gzip(maker.diff(l), { level: 6 })));
    const skopeoMs: number[] = [];
    const exportMs: number[] = [];
    const floorMs: number[] = [];
    const level6: number[] = [];
    const keptMs: number[] = [];
    const pulledMs: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const pair = [
        async () => {
          // The two-pass way to the same result: export the layout, then copy it.
          const out = path.join(dir, `export-${r}`);
          exportMs.push(await timed(`exportImage oci ${r + 1}`, () => maker.exportImage("big", out, { ref: "big" })));
          await fs.rm(out, { recursive: true, force: true });
          skopeoMs.push(await pushOnce(`skopeo copy oci: docker:// ${r + 1}`, undefined));
        },
        async () => {
          floorMs.push(await timed(`changesets + gzip 6, 3 at once, drained ${r + 1}`, gzipFloor));
          await dropKept();
          level6.push(await pushOnce(`thinstack push (gzip 6) ${r + 1}`, 6));
          // That push kept its blobs: the next one sends them as they are, as skopeo sends the export's.
          keptMs.push(await pushOnce(`thinstack push (blobs kept) ${r + 1}`, 6));
          pulledMs.push(await pushOnce(`thinstack push of the pulled image ${r + 1}`, 6, true, pulled));
        },
      ];
      for (const side of r % 2 ? pair.reverse() : pair) await side();
    }
    emit({
      bench: B, name: "push (gzip level 6) vs exportImage oci + skopeo copy oci: docker:// (the same blobs in two passes)",
      value: mibps(content, median(level6)), unit: "MiB/s", baseline: mibps(content, median(exportMs.map((e, i) => e + skopeoMs[i]))),
      baselineLabel: "export+skopeo", ratio: median(exportMs.map((e, i) => (e + skopeoMs[i]) / level6[i])),
      detail: `exportImage alone: ${mibps(content, median(exportMs)).toFixed(1)} MiB/s (gzip at level 6 bounds both)`,
    });
    emit({
      bench: B, name: "push (gzip level 6) vs its floor: the same changesets gzipped at level 6, 3 layers at once, drained (no network)",
      value: mibps(content, median(level6)), unit: "MiB/s", baseline: mibps(content, median(floorMs)), baselineLabel: "diff+gzip",
      ratio: median(floorMs.map((f, i) => f / level6[i])),
      detail: `the most push can reach with level 6 gzip on this machine is ${(median(skopeoMs.map((t, i) => t / floorMs[i]))).toFixed(2)}x skopeo (floor vs skopeo, per run)`,
    });
    emit({
      bench: B, name: "first push of that image (gzip level 6, as exportImage) vs skopeo copy oci: docker:// of its export",
      value: mibps(content, median(level6)), unit: "MiB/s", baseline: mibps(content, median(skopeoMs)), baselineLabel: "skopeo",
      ratio: median(skopeoMs.map((t, i) => t / level6[i])), goal: "≥ 0.8",
      detail: `${RUNS} runs, sides alternating, a fresh registry per push, no blob kept; thinstack makes and gzips each layer as it uploads (3 layers at once), skopeo sends the blobs the export already gzipped`,
    });
    emit({
      bench: B, name: "push of that image with the blobs an earlier push kept vs skopeo copy oci: docker:// of its export (both send blobs at rest)",
      value: mibps(content, median(keptMs)), unit: "MiB/s", baseline: mibps(content, median(skopeoMs)), baselineLabel: "skopeo",
      ratio: median(skopeoMs.map((t, i) => t / keptMs[i])), goal: "≥ 0.8",
      detail: `${RUNS} runs, a fresh registry per push; each right after a first push, which kept the gzipped layers in the store (PushOptions.keepBlobs, default on)`,
    });
    emit({
      bench: B, name: "push of that image as pulled from a registry (the blobs its pull kept) vs skopeo copy oci: docker:// of its export",
      value: mibps(content, median(pulledMs)), unit: "MiB/s", baseline: mibps(content, median(skopeoMs)), baselineLabel: "skopeo",
      ratio: median(skopeoMs.map((t, i) => t / pulledMs[i])), goal: "≥ 0.8",
      detail: `${RUNS} runs, a fresh registry per push; the image pulled into another store (PullOptions.keepBlobs, default on), which pushes the registry's own bytes`,
    });
    for (const [label, level] of [["gzip level 1", 1], ["plain tar layers", 0]] as const) {
      const ms: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        await dropKept();
        ms.push(await pushOnce(`thinstack push (${label}) ${r + 1}`, level, false));
      }
      emit({
        bench: B, name: `push with ${label} vs skopeo copy oci: docker://`, value: mibps(content, median(ms)), unit: "MiB/s",
        baseline: mibps(content, median(skopeoMs)), baselineLabel: "skopeo", ratio: median(skopeoMs) / median(ms),
        detail: level ? "PushOptions.gzipLevel 1 (other digests than exportImage's), no blob kept; ratio of medians" : "PushOptions.gzip false: the changeset alone; ratio of medians",
      });
    }

    // 3. A second pull of an image sharing the base: what moves.
    reg = await startRegistry();
    const proxy = await startProxy(reg.host);
    try {
      await maker.push("big", `${reg.host}/bench/big:1`, opts);
      await maker.push("big+1", `${reg.host}/bench/big1:1`, opts);
      const store = await ImageStore.open(path.join(dir, "second"), { create: true, dataSize: 4 * 2 ** 30, baseSize: 2 ** 30 });
      try {
        await store.pull(`${proxy.host}/bench/big:1`, opts);
        const res = await fetch(`http://${reg.host}/v2/bench/big1/manifests/1`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } });
        const m = await res.json() as { config: { size: number }; layers: { size: number }[] };
        const expected = m.config.size + m.layers[m.layers.length - 1].size;
        const before = proxy.blobBytes;
        const second = await store.pull(`${proxy.host}/bench/big1:1`, opts);
        const moved = proxy.blobBytes - before;
        emit({
          bench: B, name: "second pull of an image sharing the base: blob bytes moved vs its new layer + config",
          value: moved / MiB, unit: "MiB", baseline: expected / MiB, baselineLabel: "new layer + config", ratio: moved / expected, goal: "≤ 1",
          detail: `${second.skipped} of ${second.layers.length} layers skipped; the image is ${(m.layers.reduce((a, l) => a + l.size, 0) / MiB).toFixed(1)} MiB of blobs; counted at a loopback proxy`,
        });
      } finally {
        await store.close();
      }
    } finally {
      await proxy.stop();
      await reg.stop();
    }
    await maker.close();
    await pulled.close();
    note(B, `Registry: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with filesystem storage on the same disk; the image has ${(content / 1e6).toFixed(0)} MB of content ` +
      `in ${SHARES.length} layers (files of 64 KiB to 8 MiB, half random bytes, half binary-like runs of random bytes and zeros), ${(blobBytes / 1e6).toFixed(0)} MB gzipped; runtime ${runtime}.`);
  });
}

await main();
finish("Registry");
