/**
 * The write caching mode of active layers' mounts (src/mount, issue 11): the kernel's
 * writeback cache (FUSE_WRITEBACK_CACHE, the default: writes land in the page cache and
 * reach the server in large WRITE requests) against write-through (`writeback: false`:
 * every write(2) is a request, answered after the store has it), side by side in one run
 * on the same disk. Each workload is a real program in a child process on a fresh
 * active layer mounted alone, and ends with an fsync, so both modes are timed until the
 * data is in the store and committed:
 *
 * - dd of 256 MiB into a new file with bs=4k, 64k and 1M, conv=fsync;
 * - 8,192 random 4 KiB pwrites (perl) into a 64 MiB file written before, then fsync;
 * - 2,000 files of 1–8 KiB written by one process (perl), then a syncfs of the mount.
 *
 * The ratio is writeback / write-through throughput (above 1: writeback is faster).
 *
 *   node --import tsx bench/mountcache.bench.ts     deno run -A bench/mountcache.bench.ts
 *   BENCH_QUICK=1 for small sizes.
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { LayerStore } from "../src/layers/mod.ts";
import { fuseUnsupported, mount } from "../src/mount/mod.ts";
import { emit, finish, GiB, KiB, median, MiB, mibps, note, opsps, progress, quick, withScratchDir } from "./lib.ts";

const B = "mountcache";
const SIZE = quick ? 16 * MiB : 256 * MiB;
const RANDOM_FILE = quick ? 16 * MiB : 64 * MiB;
const RANDOM_WRITES = quick ? 1024 : 8192;
const FILES = quick ? 200 : 2000;
const PASSES = quick ? 1 : 3;

/** Runs `sh -c script` in a child process and times it (never synchronously: this process serves the mount). */
function sh(script: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn("sh", ["-ec", script], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (c) => (stderr += c));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(performance.now() - t) : reject(new Error(`${script}: exit ${code}: ${stderr}`))));
  });
}

const RANDOM = `
use Fcntl; use IO::Handle;
my ($path, $size, $n) = @ARGV;
sysopen(my $f, $path, O_WRONLY) or die "$path: $!";
my $buf = "r" x 4096; my $x = 12345;
for (1..$n) { $x = ($x * 1103515245 + 12345) % 2147483648; my $at = ($x % ($size / 4096)) * 4096; sysseek($f, $at, 0); syswrite($f, $buf) == 4096 or die "write: $!"; }
$f->sync or die "fsync: $!"; close($f);`;

const FILES_SCRIPT = `
my ($dir, $n) = @ARGV; my $x = 7;
for my $i (1..$n) { $x = ($x * 1103515245 + 12345) % 2147483648; my $len = 1024 + $x % 7168;
  open(my $f, ">", "$dir/f$i") or die "$dir/f$i: $!"; print $f ("d" x $len); close($f) or die "close: $!"; }`;

interface Workload {
  name: string;
  /** Bytes or operations the timed part does, and its unit. */
  amount: number;
  unit: "MiB/s" | "op/s" | "files/s";
  /** Untimed preparation in the mount. */
  setup?: (m: string) => Promise<unknown>;
  run: (m: string) => Promise<number>;
}

const workloads: Workload[] = [
  ...[4 * KiB, 64 * KiB, MiB].map((bs): Workload => ({
    name: `dd of ${SIZE / MiB} MiB into a new file, bs=${bs >= MiB ? "1M" : `${bs / KiB}k`}, conv=fsync`,
    amount: SIZE, unit: "MiB/s",
    run: (m) => sh(`dd if=/dev/zero of=${m}/seq bs=${bs} count=${SIZE / bs} conv=fsync status=none`),
  })),
  {
    name: `${RANDOM_WRITES} random 4 KiB pwrites into a ${RANDOM_FILE / MiB} MiB file, then fsync`,
    amount: RANDOM_WRITES, unit: "op/s",
    setup: (m) => sh(`dd if=/dev/zero of=${m}/rand bs=1M count=${RANDOM_FILE / MiB} conv=fsync status=none`),
    run: (m) => sh(`perl -e '${RANDOM}' ${m}/rand ${RANDOM_FILE} ${RANDOM_WRITES}`),
  },
  {
    name: `${FILES} files of 1-8 KiB written by one process, then sync -f`,
    amount: FILES, unit: "files/s",
    setup: (m) => sh(`mkdir ${m}/many`),
    run: (m) => sh(`perl -e '${FILES_SCRIPT}' ${m}/many ${FILES}; sync -f ${m}/many`),
  },
];

let runs = 0;

async function measure(dir: string, w: Workload, writeback: boolean): Promise<number> {
  const n = runs++;
  const store = await LayerStore.open(path.join(dir, `s${n}`), { create: true, dataSize: 4 * GiB, baseSize: GiB });
  try {
    await store.prepare("ctr");
    const mnt = path.join(dir, `m${n}`);
    await fs.mkdir(mnt);
    const m = await mount(store, "ctr", mnt, { writeback });
    try {
      await w.setup?.(m.path);
      return await w.run(m.path);
    } finally {
      await m.unmount();
    }
  } finally {
    await store.close();
    await fs.rm(path.join(dir, `s${n}`), { recursive: true, force: true });
  }
}

const why = fuseUnsupported();
if (why) {
  progress(`mountcache: skipped: ${why}`);
} else {
  await withScratchDir(B, "cache", async (dir) => {
    note(B, `Each workload on a fresh active layer mounted alone (one connection), 64 KiB pool blocks, median of ${PASSES} passes per mode, the modes alternating; timed from the program's start to its exit (fsync or syncfs included, so the data is committed in the store). ratio = writeback / write-through.`);
    for (const w of workloads) {
      const times: Record<"on" | "off", number[]> = { on: [], off: [] };
      for (let pass = 0; pass < PASSES; pass++) {
        for (const writeback of [true, false]) {
          progress(`${B}: ${w.name}, writeback ${writeback ? "on" : "off"}, pass ${pass + 1}`);
          times[writeback ? "on" : "off"].push(await measure(dir, w, writeback));
        }
      }
      const rate = (ms: number) => (w.unit === "MiB/s" ? mibps(w.amount, ms) : opsps(w.amount, ms));
      const on = rate(median(times.on));
      const off = rate(median(times.off));
      emit({ bench: B, name: w.name, value: on, unit: w.unit, baseline: off, baselineLabel: "write-through", ratio: on / off });
    }
  });
}
finish("Mount write caching: writeback cache vs write-through");
