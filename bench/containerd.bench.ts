/**
 * Issue 12's container benchmarks: one containerd (Debian's 1.6, runc) with a local
 * registry (the e2e harness, test/daemon/harness.ts), thinstack's snapshotter (`thinstack
 * serve` under this runtime, layers over FUSE) side by side with containerd's own
 * overlayfs snapshotter, in one run, on the same disk:
 *
 * - `ctr run --rm IMAGE ID true`, start to exit (busybox; alternating, medians);
 * - `ctr images pull` of a 5-layer image from the registry, unpack included (content and
 *   snapshots removed by `ctr images rm --sync` before each pull, so both fetch too);
 * - 20 containers of one image started together, each reading /bin/busybox (1.2 MiB)
 *   and then sleeping: the time until all 20 have read it, and the memory the 20 cost
 *   (peak growth of the containers' memory cgroups, plus, for thinstack, of the
 *   daemon's own cgroup: its heap and the page cache of its data file).
 *
 * Needs root, containerd, runc, docker-registry, skopeo and /dev/fuse; without them it
 * says so in a note and exits 0.
 *
 *   node --import tsx bench/containerd.bench.ts      deno run -A bench/containerd.bench.ts
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { ALPINE_ROOTFS, BUSYBOX, type Harness, harnessMissing, startHarness, tarLayer, writeImage } from "../test/daemon/harness.ts";
import { spreadSubdirs } from "../src/daemon/staging.ts";
import { collect, REPO } from "../test/daemon/helpers.ts";
import { runtimeCommand } from "../test/helpers/runtime.ts";
import { emit, finish, median, MiB, note, progress, quick } from "./lib.ts";

const B = "containerd";
const RUNS = quick ? 3 : 15;
const PULLS = quick ? 1 : 5;
const TOGETHER = quick ? 5 : 20;
const MEMCG = "/sys/fs/cgroup/memory";

const missing = harnessMissing() ?? (existsSync("/dev/fuse") ? undefined : "no /dev/fuse");
if (missing) {
  note(B, `skipped: ${missing}`);
  finish(B);
  process.exit(0);
}

const ms = (t0: number) => performance.now() - t0;

/** A memory cgroup of its own for the daemon (v1 hierarchy), so its page cache counts too. */
async function daemonCgroup(): Promise<string | undefined> {
  if (!existsSync(path.join(MEMCG, "memory.usage_in_bytes"))) return undefined;
  const dir = path.join(MEMCG, `thinstack-bench-${process.pid}`);
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

async function readNumber(file: string): Promise<number> {
  return Number((await fs.readFile(file, "utf8").catch(() => "0")).trim());
}

/** Starts `thinstack serve` (this runtime) in `cgroup` and waits for it to listen. */
async function startServe(store: string, socket: string, cgroup: string | undefined, extra: string[] = []) {
  const [cmd, args] = runtimeCommand(path.join(REPO, "src/cli/main.ts"), ["--root", store, "serve", "--address", socket, ...extra]);
  const quoted = [cmd, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
  const enter = cgroup ? `echo $$ > '${cgroup}/cgroup.procs'; ` : "";
  const child = spawn("sh", ["-c", `${enter}exec ${quoted}`], { cwd: REPO, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const deadline = Date.now() + 60_000;
  while (!err.includes("thinstack: serving ")) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`serve did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    stop: async () => {
      if (child.exitCode === null) process.kill(child.pid!, "SIGTERM");
      await exited;
    },
  };
}

async function ctrOk(h: Harness, ...args: string[]): Promise<string> {
  const r = await h.ctr(...args);
  if (r.code !== 0) throw new Error(`ctr ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** Waits until containerd reaches the plugin (a Prepare: ls never asks it; see e2e.test.ts). */
async function reachThinstack(h: Harness): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await h.ctr("snapshots", "--snapshotter", "thinstack", "prepare", "reach-probe");
    if (r.code === 0) return void await ctrOk(h, "snapshots", "--snapshotter", "thinstack", "rm", "reach-probe");
    if (Date.now() > deadline) throw new Error(`containerd does not reach thinstack serve: ${r.stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The pull image: alpine plus four layers of files (small ones, a 24 MiB one, an update, a deletion). */
async function multiLayerImage(h: Harness): Promise<{ ref: string; bytes: number }> {
  const work = path.join(h.dir, "multi");
  const layers: Uint8Array[] = [new Uint8Array(await fs.readFile(ALPINE_ROOTFS))];
  const layer = async (name: string, fill: (dir: string) => Promise<void>) => {
    const dir = path.join(work, name);
    await fs.mkdir(dir, { recursive: true });
    await fill(dir);
    layers.push(await tarLayer(dir));
  };
  await layer("small", async (d) => {
    for (let i = 0; i < 40; i++) {
      await fs.mkdir(path.join(d, "usr/share/small", `d${i}`), { recursive: true });
      for (let j = 0; j < 50; j++) await fs.writeFile(path.join(d, "usr/share/small", `d${i}`, `f${j}`), randomBytes(2048));
    }
  });
  await layer("large", async (d) => {
    await fs.mkdir(path.join(d, "opt"), { recursive: true });
    await fs.writeFile(path.join(d, "opt/blob"), randomBytes(24 * MiB));
  });
  await layer("update", async (d) => {
    await fs.mkdir(path.join(d, "etc"), { recursive: true });
    await fs.writeFile(path.join(d, "etc/motd"), "updated\n");
    await fs.mkdir(path.join(d, "opt"), { recursive: true });
    await fs.writeFile(path.join(d, "opt/blob2"), randomBytes(4 * MiB));
  });
  await layer("delete", async (d) => {
    await fs.mkdir(path.join(d, "usr/share/small"), { recursive: true });
    await fs.writeFile(path.join(d, "usr/share/small/.wh.d0"), "");
  });
  await writeImage(path.join(work, "oci"), "1", layers);
  await h.push(path.join(work, "oci"), "1", "multi:1");
  return { ref: `${h.registry}/multi:1`, bytes: layers.reduce((s, l) => s + l.byteLength, 0) };
}

/** Starts `n` containers at once; the time until every one has printed `ready`, and the peak memory growth. */
async function together(h: Harness, image: string, snapshotter: string[], prefix: string, cgroups: string[]): Promise<{ ms: number; bytes: number }> {
  const before = await Promise.all(cgroups.map((c) => readNumber(path.join(c, "memory.usage_in_bytes"))));
  for (const c of cgroups) await fs.writeFile(path.join(c, "memory.max_usage_in_bytes"), "0").catch(() => {});
  const t0 = performance.now();
  let ready = 0;
  let allReady = 0;
  const runs = Array.from({ length: TOGETHER }, (_, i) => {
    const child = spawn("ctr", ["--address", h.containerd, "-n", h.namespace, "run", "--rm", ...snapshotter, image, `${prefix}-${i}`,
      "sh", "-c", "cat /bin/busybox > /dev/null && echo ready && sleep 4"], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (d: Buffer) => {
      if (String(d).includes("ready") && ++ready === TOGETHER) allReady = ms(t0);
    });
    return collect(child);
  });
  const results = await Promise.all(runs);
  const failed = results.find((r) => r.code !== 0);
  if (failed) throw new Error(`a container failed: ${failed.stderr}`);
  if (ready < TOGETHER) throw new Error(`${TOGETHER - ready} containers did not get ready`);
  const peaks = await Promise.all(cgroups.map((c) => readNumber(path.join(c, "memory.max_usage_in_bytes"))));
  return { ms: allReady, bytes: peaks.reduce((s, p, i) => s + Math.max(0, p - before[i]), 0) };
}

const h = await startHarness();
const cgroup = await daemonCgroup();
let serve: Awaited<ReturnType<typeof startServe>> | undefined;
try {
  progress("images");
  await h.push(BUSYBOX, "busybox:1.38.0-musl", "busybox:1.38");
  const busybox = `${h.registry}/busybox:1.38`;
  const { ref: multi, bytes: multiBytes } = await multiLayerImage(h);
  serve = await startServe(path.join(h.dir, "thinstack"), h.thinstackSocket, cgroup);
  await reachThinstack(h);
  const thin = ["--snapshotter", "thinstack"];
  for (const s of [[], thin]) await ctrOk(h, "images", "pull", "--plain-http", ...s, busybox);

  progress(`ctr run --rm ${RUNS}x each`);
  const runTimes: Record<string, number[]> = { overlay: [], thin: [] };
  for (let i = -1; i < RUNS; i++) {
    for (const [label, s] of [["overlay", []], ["thin", thin]] as const) {
      const t0 = performance.now();
      await ctrOk(h, "run", "--rm", ...s, busybox, `run-${label}-${i + 1}`, "true");
      if (i >= 0) runTimes[label].push(ms(t0)); // the first round warms up
    }
  }
  const runThin = median(runTimes.thin);
  const runOverlay = median(runTimes.overlay);
  emit({
    bench: B, name: "ctr run --rm busybox true, start to exit", value: runThin, unit: "ms", baseline: runOverlay, baselineLabel: "overlayfs",
    ratio: runThin / runOverlay, goal: "≤ 1.5", detail: `median of ${RUNS}; ratio thinstack/overlayfs`,
  });

  // thinstack's staging root has ext4's T attribute (src/daemon/staging.ts): each staged
  // layer lands in a block group of its own, away from the inodes freed in the last 30 s,
  // which a journal-less ext4 passes over one by one. The overlayfs snapshotter's
  // directory gets the same, so that the pulls compare the two designs and not where
  // ext4 put their inodes (without it overlayfs's pull took 1.4-2.2 s here, not 0.75).
  const snapshots = path.join(h.dir, "root/io.containerd.snapshotter.v1.overlayfs/snapshots");
  if (!await spreadSubdirs(snapshots)) note(B, `chattr +T ${snapshots} failed: overlayfs's snapshots stay in their parent's block group`);
  progress(`ctr images pull (5 layers) ${PULLS}x each`);
  const pullTimes: Record<string, number[]> = { overlay: [], thin: [] };
  const pulls = async (times: Record<string, number[]>) => {
    for (let i = 0; i < PULLS; i++) {
      for (const [label, s] of [["overlay", []], ["thin", thin]] as const) {
        await h.ctr("images", "rm", "--sync", multi);
        const t0 = performance.now();
        await ctrOk(h, "images", "pull", "--plain-http", ...s, multi);
        times[label].push(ms(t0));
      }
    }
  };
  await pulls(pullTimes);
  await h.ctr("images", "rm", "--sync", multi);
  const pullThin = median(pullTimes.thin);
  const pullOverlay = median(pullTimes.overlay);
  emit({
    bench: B, name: "ctr images pull of a 5-layer image, unpack included", value: pullThin, unit: "ms", baseline: pullOverlay, baselineLabel: "overlayfs",
    ratio: pullOverlay / pullThin, goal: "≥ 0.5", detail: `${(multiBytes / MiB).toFixed(1)} MiB of gzip layers; median of ${PULLS}; ratio is speed, overlayfs time/thinstack time; containerd unpacks each layer into a staging directory (an overlay upper), applied to the layer at Commit; both snapshotters' directories carry ext4's T attribute`,
  });

  // The same pulls with containerd's unpacker writing through the layer's FUSE bind mount.
  await serve.stop();
  serve = await startServe(path.join(h.dir, "thinstack"), h.thinstackSocket, cgroup, ["--unpack-through-mount"]);
  await reachThinstack(h);
  const mountTimes: Record<string, number[]> = { overlay: [], thin: [] };
  await pulls(mountTimes);
  await h.ctr("images", "rm", "--sync", multi);
  emit({
    bench: B, name: "the same pull with serve --unpack-through-mount (the unpacker writes through the layer's FUSE bind mount)",
    value: median(mountTimes.thin), unit: "ms", baseline: median(mountTimes.overlay), baselineLabel: "overlayfs",
    ratio: median(mountTimes.overlay) / median(mountTimes.thin), detail: `median of ${PULLS}, overlayfs pulls alternating with these; ratio is speed`,
  });
  await serve.stop();
  serve = await startServe(path.join(h.dir, "thinstack"), h.thinstackSocket, cgroup);
  await reachThinstack(h);

  progress(`${TOGETHER} containers together`);
  const ns = path.join(MEMCG, h.namespace);
  const canMeasure = existsSync(path.join(MEMCG, "memory.usage_in_bytes"));
  const cgOverlay = canMeasure ? [ns] : [];
  const cgThin = canMeasure ? [ns, ...(cgroup ? [cgroup] : [])] : [];
  const o = await together(h, busybox, [], "tog-overlay", cgOverlay);
  const t = await together(h, busybox, thin, "tog-thin", cgThin);
  emit({
    bench: B, name: `${TOGETHER} containers of one image started together: all running`, value: t.ms, unit: "ms", baseline: o.ms, baselineLabel: "overlayfs",
    ratio: t.ms / o.ms, detail: "until every one has read /bin/busybox; ratio thinstack/overlayfs",
  });
  if (canMeasure) {
    emit({
      bench: B, name: `${TOGETHER} containers of one image started together: memory`, value: t.bytes / MiB, unit: "MiB", baseline: o.bytes / MiB, baselineLabel: "overlayfs",
      ratio: t.bytes / Math.max(1, o.bytes), detail: "peak growth of the containers' memory cgroups (+ thinstack serve's own); ratio thinstack/overlayfs",
    });
  }
  note(B, "One containerd 1.6 + runc and a local registry on private paths (test/daemon/harness.ts); thinstack serve runs under the column's runtime with its FUSE mount (writeback cache), overlayfs is containerd's own snapshotter on the same disk. Times are wall clock of the ctr commands, on a machine shared with other work: the lead re-runs on a quiet one.");
} finally {
  await serve?.stop().catch(() => {});
  await h.stop();
  if (cgroup) await fs.rmdir(cgroup).catch(() => {});
}
finish(B);
