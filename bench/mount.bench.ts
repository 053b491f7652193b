/**
 * Mounted layers (src/mount) against kernel overlayfs on the same disk, as programs see
 * them (issue 11). Every workload is a real program (dd, cat, tar, find, sync) in a child
 * process, the same command line on both sides; the FUSE server runs in this process, so
 * nothing here may block the event loop while a mount is up (no spawnSync, no
 * execFileSync("sync"): a sync(2) reaches the mount and waits for this very process).
 *
 * 1. 32 KiB durable write (open, write, fsync) into the middle of a 1 GiB image file
 *    from a container: thinstack's block copy-on-write vs overlayfs's copy-up of the file.
 *    Goal ≥ 100×, one 64 KiB block added.
 * 2. Sequential read of a 1 GiB image file from a container, cold (drop_caches first) and
 *    hot: goal ≥ 0.8× overlayfs.
 * 3. Sequential 1 GiB write then fsync into a container: goal ≥ 0.5× overlayfs.
 * 4. tar -x of a generated rootfs (thousands of files) into a container, then sync -f
 *    and an fsync of the directory (`sync DIR`: what commits a mount's store);
 *    find + stat of every entry, hot and cold: goal ≥ 0.5× overlayfs.
 * 5. Memory: 20 containers of one image served by one connection (LayerServer), each
 *    reading the same 100 MiB image file: page cache (/proc/meminfo Cached) + the
 *    server's RSS, against one container's. Goal ≤ 1.2 (overlayfs ~1; devicemapper
 *    keeps a copy per container, ~20).
 *
 * Needs root, /dev/fuse and overlayfs; drops the machine's page cache (a quiet machine
 * gives figures that mean something).
 *
 *   node --expose-gc --import tsx bench/mount.bench.ts     deno run -A --v8-flags=--expose-gc bench/mount.bench.ts
 *   BENCH_QUICK=1 for small sizes; BENCH_SECTIONS=cow,read,write,tar,memory picks parts.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { LayerStore } from "../src/layers/mod.ts";
import { fuseUnsupported, LayerServer, mount } from "../src/mount/mod.ts";
import { emit, finish, GiB, KiB, median, MiB, mibps, note, patternBytes, progress, quick, withScratchDir } from "./lib.ts";

const B = "mount";
const BIG = quick ? 64 * MiB : GiB;
const MID = quick ? 16 * MiB : 100 * MiB;
const CONTAINERS = quick ? 4 : 20;
const PASSES = quick ? 1 : 3;
const ROOTFS_FILES = quick ? 600 : 6000;
const sections = new Set((process.env.BENCH_SECTIONS ?? "cow,read,write,tar,memory").split(","));
const label = (n: number) => (n >= GiB ? `${n / GiB} GiB` : `${n / MiB} MiB`);

/** What a child did, and how long it took as this process saw it. */
interface Ran {
  ms: number;
  stdout: string;
}

/** Runs `sh -c script` in a child process (never synchronously: the server is this process). */
function sh(script: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn("sh", ["-ec", script], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (c) => (stdout += c));
    child.stderr!.on("data", (c) => (stderr += c));
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = performance.now() - t;
      if (code === 0) resolve({ ms, stdout });
      else reject(new Error(`failed (${code}): ${script}\n${stderr}`));
    });
  });
}

/** Writes back and drops the page cache (and dentries and inodes) of the whole machine. */
async function dropCaches(): Promise<void> {
  await sh("sync; echo 3 > /proc/sys/vm/drop_caches");
}

/** Page cache in bytes (/proc/meminfo Cached). */
function cached(): number {
  const m = /^Cached:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"));
  return Number(m![1]) * KiB;
}

/** This process's resident set after a GC (the server's memory). */
function rss(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().rss;
}

/** An overlayfs mount of `lower` with a fresh upper and work directory. */
async function overlay(base: string, lower: string, name: string): Promise<{ path: string; upper: string; unmount(): Promise<void> }> {
  const upper = path.join(base, `${name}.upper`);
  const work = path.join(base, `${name}.work`);
  const at = path.join(base, `${name}.mnt`);
  for (const d of [upper, work, at]) await fs.mkdir(d, { recursive: true });
  await sh(`mount -t overlay overlay -o lowerdir=${lower},upperdir=${upper},workdir=${work} ${at}`);
  return {
    path: at, upper,
    unmount: async () => {
      await sh(`umount ${at}`);
      await fs.rm(path.join(base, `${name}.upper`), { recursive: true, force: true });
      await fs.rm(work, { recursive: true, force: true });
    },
  };
}

/** Writes `size` bytes of a pattern that differs per MiB through `write`. */
async function fill(size: number, write: (buf: Uint8Array, at: number) => Promise<unknown>): Promise<void> {
  const chunk = patternBytes(16 * MiB, 7);
  for (let at = 0; at < size; at += chunk.byteLength) {
    for (let i = 0; i < chunk.byteLength; i += MiB) chunk[i] = (at / MiB + i / MiB) & 0xff;
    await write(chunk.subarray(0, Math.min(chunk.byteLength, size - at)), at);
  }
}

/** A rootfs-like tree of `files` files (mostly small, some large) in ~200 directories, as a tar. */
async function makeRootfs(dir: string, files: number): Promise<{ tar: string; entries: number; bytes: number }> {
  const tree = path.join(dir, "rootfs-tree");
  const random = (() => {
    let x = 2026;
    return () => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32);
  })();
  const data = patternBytes(4 * MiB, 3);
  let bytes = 0;
  const dirs: string[] = [];
  for (let d = 0; d < Math.max(10, files / 30); d++) {
    const parent = dirs.length && random() < 0.7 ? dirs[Math.floor(random() * dirs.length)] : tree;
    const p = path.join(parent, `d${d}`);
    await fs.mkdir(p, { recursive: true });
    dirs.push(p);
  }
  for (let i = 0; i < files; i++) {
    const r = random();
    const size = r < 0.88 ? 16 + Math.floor(random() * 16 * KiB) : r < 0.99 ? 16 * KiB + Math.floor(random() * 256 * KiB) : MiB + Math.floor(random() * 3 * MiB);
    const at = Math.floor(random() * (data.byteLength - size));
    const p = path.join(dirs[Math.floor(random() * dirs.length)], `f${i}${r < 0.05 ? ".so" : ""}`);
    await fs.writeFile(p, data.subarray(at, at + size), { mode: random() < 0.2 ? 0o755 : 0o644 });
    bytes += size;
    if (i % 50 === 0) await fs.symlink(`f${i}`, `${p}.link`);
  }
  const tar = path.join(dir, "rootfs.tar");
  await sh(`tar -cf ${tar} -C ${tree} .`);
  const entries = Number((await sh(`tar -tf ${tar} | wc -l`)).stdout.trim());
  await fs.rm(tree, { recursive: true, force: true });
  return { tar, entries, bytes };
}

async function main(dir: string): Promise<void> {
  const store = await LayerStore.open(path.join(dir, "store"), { create: true, dataSize: 16 * GiB, baseSize: 8 * GiB });
  const lower = path.join(dir, "lower");
  await fs.mkdir(lower);
  const mnt = (name: string) => fs.mkdir(path.join(dir, name), { recursive: true }).then(() => path.join(dir, name));
  try {
    progress(`image: a ${label(BIG)} file and a ${label(MID)} file, in a committed layer and in overlayfs's lower directory`);
    await store.prepare("img-x");
    for (const [name, size] of [["big", BIG], ["mid", MID]] as const) {
      const h = await store.fs("img-x").open(`/${name}`, "w");
      await fill(size, (b, at) => h.write(b, 0, b.byteLength, at));
      await h.close();
      const fh = await fs.open(path.join(lower, name), "w");
      await fill(size, (b, at) => fh.write(b, 0, b.byteLength, at));
      await fh.sync();
      await fh.close();
    }
    await store.commit("img", "img-x");
    let n = 0;
    const container = async () => {
      const key = `ctr-${n++}`;
      await store.prepare(key, "img");
      const m = await mount(store, key, await mnt(`${key}.mnt`));
      return { key, path: m.path, unmount: async () => {
        await m.unmount();
        await store.remove(key);
      } };
    };
    note(B, `Both sides on the same disk (ext4), the same programs with the same arguments in child processes; thinstack's FUSE server runs in the benchmark's process (Node or Deno), overlayfs is the kernel's. 64 KiB pool blocks, writeback cache on.`);

    if (sections.has("cow")) {
      // 1. 32 KiB durable write into the middle of the big file.
      const patch = path.join(dir, "patch");
      await fs.writeFile(patch, patternBytes(32 * KiB, 99));
      const seek = BIG / 2 / (32 * KiB) + 3;
      // The write as the program sees it: open, write, fsync, close timed inside the process
      // (perl), so process start-up is not counted; the dd process's whole time is shown too.
      const write = (target: string) => sh(`perl -MTime::HiRes=time -MIO::Handle -MFcntl -e '
        open(my $in, "<", $ARGV[0]) or die; read($in, my $buf, 32768) == 32768 or die;
        my $t = time; sysopen(my $f, $ARGV[1], O_WRONLY) or die "open: $!"; sysseek($f, $ARGV[2], 0) or die;
        syswrite($f, $buf) == 32768 or die "write: $!"; $f->sync or die "fsync: $!"; close($f) or die;
        printf "%.3f\\n", (time - $t) * 1000' ${patch} ${target}/big ${seek * 32 * KiB}`).then((r) => Number(r.stdout));
      const dd = (target: string) => sh(`dd if=${patch} of=${target}/big bs=32K count=1 seek=${seek + 2} conv=notrunc,fsync status=none`).then((r) => r.ms);
      const ts: number[] = [];
      const ov: number[] = [];
      const tsDd: number[] = [];
      const ovDd: number[] = [];
      const added: number[] = [];
      const copied: number[] = [];
      for (let c = 0; c < 5; c++) {
        const ctr = await container();
        const before = store.pool.status().dataBlocks.used;
        ts.push(await write(ctr.path));
        added.push((store.pool.status().dataBlocks.used - before) * store.pool.blockSize);
        tsDd.push(await dd(ctr.path));
        await ctr.unmount();
        const o = await overlay(dir, lower, `cow${c}`);
        ov.push(await write(o.path));
        copied.push(Number((await sh(`du -sb ${o.upper}`)).stdout.split("\t")[0]));
        await o.unmount();
        const o2 = await overlay(dir, lower, `cowdd${c}`);
        ovDd.push(await dd(o2.path));
        await o2.unmount();
      }
      const t = median(ts);
      const o = median(ov);
      emit({ bench: B, name: `32 KiB durable write (open, write, fsync, close) into the middle of a ${label(BIG)} image file from a container: thinstack vs overlayfs copy-up (speed-up)`, value: t, unit: "ms", baseline: o, baselineLabel: "overlayfs", ratio: o / t, goal: "≥ 100", detail: "median of 5 containers each side, timed inside the writing process (perl); the first write to the file, so overlayfs copies it up" });
      emit({ bench: B, name: "the same as a whole dd conv=notrunc,fsync process (start-up included)", value: median(tsDd), unit: "ms", baseline: median(ovDd), baselineLabel: "overlayfs", ratio: median(ovDd) / median(tsDd), detail: "thinstack's dd writes a file it already copied up; overlayfs's copies it up" });
      emit({ bench: B, name: "bytes that write adds: thinstack pool vs overlayfs upper", value: Math.max(...added) / KiB, unit: "KiB", baseline: median(copied) / KiB, baselineLabel: "overlayfs", met: Math.max(...added) === store.pool.blockSize, goal: "one block" });
    }

    if (sections.has("read")) {
      // 2. Sequential read of the big file, cold and hot, sides alternating.
      const ctr = await container();
      const o = await overlay(dir, lower, "read");
      const read = (p: string) => sh(`dd if=${p}/big of=/dev/null bs=1M status=none`);
      const cold = [[], []] as number[][];
      const hot = [[], []] as number[][];
      for (let pass = 0; pass < PASSES; pass++) {
        for (const [side, p] of (pass % 2 ? [[1, o.path], [0, ctr.path]] : [[0, ctr.path], [1, o.path]]) as [number, string][]) {
          await dropCaches();
          cold[side].push(mibps(BIG, (await read(p)).ms));
          await read(p);
          hot[side].push(mibps(BIG, (await read(p)).ms));
        }
      }
      const [tc, oc] = cold.map(median);
      const [th, oh] = hot.map(median);
      emit({ bench: B, name: `sequential read of a ${label(BIG)} image file from a container, cold (drop_caches)`, value: tc, unit: "MiB/s", baseline: oc, baselineLabel: "overlayfs", ratio: tc / oc, goal: "≥ 0.8", detail: `dd bs=1M; median of ${PASSES} passes each side` });
      emit({ bench: B, name: `sequential read of a ${label(BIG)} image file from a container, hot`, value: th, unit: "MiB/s", baseline: oh, baselineLabel: "overlayfs", ratio: th / oh, goal: "≥ 0.8", detail: "the third read of the file; the first two after drop_caches warm it" });
      await o.unmount();
      await ctr.unmount();
    }

    if (sections.has("write")) {
      // 3. Sequential write + fsync of a new file; the source is in tmpfs.
      const src = `/dev/shm/thinstack-bench-${process.pid}`;
      const srcFile = await fs.open(src, "w");
      await fill(BIG, (b, at) => srcFile.write(b, 0, b.byteLength, at));
      await srcFile.close();
      try {
        const w = [[], []] as number[][];
        for (let pass = 0; pass < PASSES; pass++) {
          for (const side of pass % 2 ? [1, 0] : [0, 1]) {
            const target = side === 0 ? await container() : await overlay(dir, lower, `write${pass}`);
            await sh("sync");
            w[side].push(mibps(BIG, (await sh(`dd if=${src} of=${target.path}/new bs=1M conv=fsync status=none`)).ms));
            await target.unmount();
          }
        }
        const [t, o] = w.map(median);
        emit({ bench: B, name: `sequential write of ${label(BIG)} into a new file of a container, then fsync`, value: t, unit: "MiB/s", baseline: o, baselineLabel: "overlayfs", ratio: t / o, goal: "≥ 0.5", detail: `dd bs=1M conv=fsync from a file in /dev/shm; median of ${PASSES} passes each side, a fresh container / upper each` });
      } finally {
        await fs.rm(src, { force: true });
      }
    }

    if (sections.has("tar")) {
      // 4. tar -x + sync -f of a generated rootfs; find + stat of the result.
      progress(`generating a rootfs of ${ROOTFS_FILES} files`);
      const rootfs = await makeRootfs(dir, ROOTFS_FILES);
      const x = [[], []] as number[][];
      const findHot = [[], []] as number[][];
      const findCold = [[], []] as number[][];
      const find = (p: string) => sh(`find ${p} -printf '%s %m %U %G %T@ %n\\n' | wc -l`);
      for (let pass = 0; pass < PASSES; pass++) {
        const targets = [await container(), await overlay(dir, lower, `tar${pass}`)];
        try {
          for (const side of pass % 2 ? [1, 0] : [0, 1]) {
            await sh("sync");
            // syncfs writes the pages back; thinstack commits at the fsync of the directory
            // (this kernel sends FUSE_SYNCFS to virtiofs only), which costs overlayfs nothing more.
            x[side].push((await sh(`tar -xf ${rootfs.tar} -C ${targets[side].path}; sync -f ${targets[side].path}; sync ${targets[side].path}`)).ms);
          }
          for (const side of pass % 2 ? [1, 0] : [0, 1]) {
            await dropCaches();
            findCold[side].push((await find(targets[side].path)).ms);
            await find(targets[side].path);
            findHot[side].push((await find(targets[side].path)).ms);
          }
        } finally {
          for (const t of targets) await t.unmount();
        }
      }
      const [t, o] = x.map(median);
      const what = `${rootfs.entries} entries, ${(rootfs.bytes / MiB).toFixed(0)} MiB`;
      emit({ bench: B, name: "tar -x of a generated rootfs into a container, then sync -f and sync of the directory (entries/s)", value: rootfs.entries / (t / 1000), unit: "entries/s", baseline: rootfs.entries / (o / 1000), baselineLabel: "overlayfs", ratio: o / t, goal: "≥ 0.5", detail: `${what}; median of ${PASSES} passes each side, a fresh container / upper each` });
      const [fc, oc] = findCold.map(median);
      const [fh, oh] = findHot.map(median);
      emit({ bench: B, name: "find + stat of every entry of that rootfs, cold (drop_caches)", value: fc, unit: "ms", baseline: oc, baselineLabel: "overlayfs", ratio: oc / fc, goal: "≥ 0.5", detail: "find -printf of size, mode, owner, mtime, links (an lstat each); ratio = overlayfs time / thinstack time" });
      emit({ bench: B, name: "find + stat of every entry of that rootfs, hot", value: fh, unit: "ms", baseline: oh, baselineLabel: "overlayfs", ratio: oh / fh, goal: "≥ 0.5", detail: "the third find after drop_caches" });
    }

    if (sections.has("memory")) {
      // 5. 20 containers of one image, one connection, each reading the same file.
      const keys = Array.from({ length: CONTAINERS }, (_, i) => `mem-${i}`);
      for (const k of keys) await store.prepare(k, "img");
      const server = await LayerServer.start(store, await mnt("served"));
      const binds = [];
      for (const k of keys) binds.push(await server.bind(k, await mnt(`${k}.mnt`)));
      const overlays = [];
      for (let i = 0; i < CONTAINERS; i++) overlays.push(await overlay(dir, lower, `mem${i}`));
      try {
        // Each read's page cache growth is taken around that read alone, so what the rest of
        // the machine does between reads is not counted; the median of PASSES passes.
        const measure = async (paths: string[], withRss: boolean) => {
          const passes: { one: number; all: number }[] = [];
          for (let pass = 0; pass < PASSES; pass++) {
            await dropCaches();
            const r0 = withRss ? rss() : 0;
            let one = 0;
            let all = 0;
            for (const [i, p] of paths.entries()) {
              const c0 = cached();
              await sh(`cat ${p}/mid > /dev/null`);
              all += cached() - c0;
              if (i === 0) one = all + (withRss ? rss() - r0 : 0);
            }
            passes.push({ one, all: all + (withRss ? rss() - r0 : 0) });
          }
          const ratios = passes.map((x) => x.all / x.one);
          return passes[ratios.indexOf(median(ratios))] ?? passes[0];
        };
        const t = await measure(binds.map((b) => b.path), true);
        const o = await measure(overlays.map((m) => m.path), false);
        // Without shared nodes every container has a node (and page cache) of its own, as
        // devicemapper's containers each have a file system on a device of their own.
        const unshared = await LayerServer.start(store, await mnt("unshared"), { share: false });
        let u: { one: number; all: number };
        try {
          const ubinds = [];
          for (const k of keys) ubinds.push(await unshared.bind(k, await mnt(`${k}.unshared`)));
          u = await measure(ubinds.map((b) => b.path), true);
          for (const b of ubinds) await b.unmount();
        } finally {
          await unshared.unmount();
        }
        emit({ bench: B, name: `memory of ${CONTAINERS} containers of one image each reading the same ${label(MID)} file, vs one container (page cache + server RSS)`, value: t.all / MiB, unit: "MiB", baseline: t.one / MiB, baselineLabel: "one container", ratio: t.all / t.one, goal: "≤ 1.2", detail: "/proc/meminfo Cached delta after drop_caches plus the server's RSS delta; one LayerServer connection, each container bind-mounted. The one-container figure holds the file twice: the FUSE page cache and the pool data file's" });
        emit({ bench: B, name: `the same on overlayfs (${CONTAINERS} overlay mounts of one lower directory)`, value: o.all / MiB, unit: "MiB", baseline: o.one / MiB, baselineLabel: "one container", ratio: o.all / o.one, detail: "devicemapper (not in this kernel) keeps one copy per container's thin device: about 20" });
        emit({ bench: B, name: `the same without shared nodes (LayerServer share: false, a page cache per container as devicemapper has)`, value: u.all / MiB, unit: "MiB", baseline: u.one / MiB, baselineLabel: "one container", ratio: u.all / u.one, detail: "what the shared nodes save; devicemapper itself (not in this kernel) would hold about 20 copies" });
        emit({ bench: B, name: `memory of the ${CONTAINERS} containers, thinstack vs overlayfs`, value: t.all / MiB, unit: "MiB", baseline: o.all / MiB, baselineLabel: "overlayfs", ratio: t.all / o.all, detail: "thinstack holds the file twice (the mount's pages and the pool data file's), overlayfs once" });
      } finally {
        for (const m of overlays) await m.unmount();
        for (const b of binds) await b.unmount();
        await server.unmount();
      }
    }
  } finally {
    await store.close();
  }
}

const why = fuseUnsupported();
if (why) {
  note(B, `skipped: ${why}`);
} else {
  await withScratchDir(B, "run", main);
}
finish("Mounted layers vs overlayfs");
